package cli

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	security "istio.io/api/security/v1beta1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/demo"
	"github.com/trellismesh/trellis/internal/registry"
)

// shopDir is the demo mesh that `trellis up examples/shop` runs.
var shopDir = filepath.Join(repoRoot, "examples", "shop")

// loadShop loads examples/shop as `trellis validate examples/shop` reads it
// (TestExamples checks that it is valid).
func loadShop(t *testing.T) []*config.Object {
	t.Helper()
	files, err := config.Load([]string{shopDir}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		for _, e := range f.Errors {
			t.Error(e)
		}
	}
	return config.Objects(files)
}

// TestShopDeploymentsRunDemoServices checks that every pod of the shop demo
// runs a demo service the way docs/demo.md says a pod template should, and
// that every demo service runs.
func TestShopDeploymentsRunDemoServices(t *testing.T) {
	objs := loadShop(t)
	accounts := map[string]bool{}
	for _, o := range objs {
		if o.GroupKind == config.ServiceAccount {
			accounts[o.Namespace+"/"+o.Name] = true
		}
	}
	running := map[string]bool{}
	reviewsVersions := map[string]bool{}
	for _, o := range objs {
		if o.GroupKind != config.Deployment {
			continue
		}
		d := o.Spec.(*appsv1.Deployment)
		pod := d.Spec.Template
		id := o.ID()
		app, version := pod.Labels["app"], pod.Labels["version"]
		if app == "" || version == "" {
			t.Errorf("%s: pod labels %v want app and version", id, pod.Labels)
		}
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			t.Errorf("%s: no serviceAccountName", id)
		} else if !accounts[o.Namespace+"/"+sa] {
			t.Errorf("%s: service account %q is not in examples/shop", id, sa)
		}
		if len(pod.Spec.Containers) != 1 {
			t.Errorf("%s: %d containers, want the demo service alone", id, len(pod.Spec.Containers))
			continue
		}
		c := pod.Spec.Containers[0]
		if len(c.Command) != 3 || c.Command[0] != "trellis" || c.Command[1] != "demo" {
			t.Errorf("%s: command %q, want [trellis demo SERVICE]", id, c.Command)
			continue
		}
		svc, ok := demo.Lookup(c.Command[2])
		if !ok {
			t.Errorf("%s: %q is not a demo service (%s)", id, c.Command[2], strings.Join(demo.Names(), ", "))
			continue
		}
		running[svc.Name] = true
		if app != svc.Name {
			t.Errorf("%s: app label %q, want the service's name %q", id, app, svc.Name)
		}
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		if svc.Name == "reviews" {
			v := env["VERSION"].Value
			if v != version {
				t.Errorf("%s: VERSION %q, want the version label %q", id, v, version)
			}
			reviewsVersions[v] = true
		}
		if !svc.Serves {
			if c.ReadinessProbe != nil {
				t.Errorf("%s: %s opens no port, so it can have no readiness probe", id, svc.Name)
			}
			continue
		}
		if e := env["POD_IP"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
			t.Errorf("%s: POD_IP must come from fieldRef status.podIP (the service binds $POD_IP:9080)", id)
		}
		p := c.ReadinessProbe
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.IntValue() != 9080 {
			t.Errorf("%s: readinessProbe %+v, want httpGet /healthz on 9080", id, p)
		}
	}
	for _, name := range demo.Names() {
		if !running[name] {
			t.Errorf("no Deployment runs trellis demo %s", name)
		}
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if !reviewsVersions[v] {
			t.Errorf("no reviews Deployment runs VERSION %s", v)
		}
	}
}

// TestShopServicesSelectPods checks that every Service of the shop demo
// selects pods of some Deployment on the demo's port.
func TestShopServicesSelectPods(t *testing.T) {
	objs := loadShop(t)
	var pods []*config.Object
	for _, o := range objs {
		if o.GroupKind == config.Deployment {
			pods = append(pods, o)
		}
	}
	services := 0
	for _, o := range objs {
		if o.GroupKind != config.Service {
			continue
		}
		services++
		s := o.Spec.(*corev1.Service)
		if len(s.Spec.Selector) == 0 {
			t.Errorf("%s: no selector", o.ID())
			continue
		}
		if !slices.ContainsFunc(pods, func(d *config.Object) bool {
			return d.Namespace == o.Namespace && registry.Selects(s.Spec.Selector, d.Spec.(*appsv1.Deployment).Spec.Template.Labels)
		}) {
			t.Errorf("%s: selector %v matches no Deployment's pods", o.ID(), s.Spec.Selector)
		}
		if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != 9080 || s.Spec.Ports[0].Name != "http" {
			t.Errorf("%s: ports %+v, want one port 9080 named http", o.ID(), s.Spec.Ports)
		}
	}
	if services == 0 {
		t.Fatal("examples/shop has no Services")
	}
}

// TestShopPolicyPrincipalsExist checks that the service accounts the
// AuthorizationPolicies allow are ones the demo's pods run as.
func TestShopPolicyPrincipalsExist(t *testing.T) {
	objs := loadShop(t)
	used := map[string]bool{}
	for _, o := range objs {
		if o.GroupKind == config.Deployment {
			used["cluster.local/ns/"+o.Namespace+"/sa/"+o.Spec.(*appsv1.Deployment).Spec.Template.Spec.ServiceAccountName] = true
		}
	}
	policies := 0
	for _, o := range objs {
		if o.GroupKind != config.AuthorizationPolicy {
			continue
		}
		policies++
		for _, r := range o.Spec.(*security.AuthorizationPolicy).GetRules() {
			for _, f := range r.GetFrom() {
				for _, p := range f.GetSource().GetPrincipals() {
					if !used[p] {
						t.Errorf("%s: principal %q is no pod's service account", o.ID(), p)
					}
				}
			}
		}
	}
	if policies == 0 {
		t.Error("examples/shop has no AuthorizationPolicy (the seed's payment-policy.yaml)")
	}
}
