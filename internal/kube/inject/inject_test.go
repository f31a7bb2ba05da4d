package inject

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trellismesh/trellis/internal/proxy/apphealth"
)

func pod(ann, labels map[string]string) (*corev1.PodSpec, *metav1.ObjectMeta) {
	return &corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "a"}}},
		&metav1.ObjectMeta{Name: "p", Annotations: ann, Labels: labels}
}

func env(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func TestOptOut(t *testing.T) {
	for name, tc := range map[string]struct{ ann, labels map[string]string }{
		"label":      {labels: map[string]string{InjectKey: "false"}},
		"annotation": {ann: map[string]string{InjectKey: "false"}},
	} {
		t.Run(name, func(t *testing.T) {
			spec, meta := pod(tc.ann, tc.labels)
			before, beforeMeta := spec.DeepCopy(), meta.DeepCopy()
			changed, err := Pod(spec, meta, Options{NativeSidecars: true})
			if err != nil || changed {
				t.Fatalf("Pod = %v, %v; want false, nil", changed, err)
			}
			if diff := cmp.Diff(before, spec); diff != "" {
				t.Errorf("opted-out spec changed:\n%s", diff)
			}
			if diff := cmp.Diff(beforeMeta, meta); diff != "" {
				t.Errorf("opted-out metadata changed:\n%s", diff)
			}
		})
	}
}

func TestIdempotent(t *testing.T) {
	for _, native := range []bool{true, false} {
		spec, meta := pod(nil, nil)
		if changed, err := Pod(spec, meta, Options{NativeSidecars: native}); err != nil || !changed {
			t.Fatalf("first injection = %v, %v", changed, err)
		}
		once, onceMeta := spec.DeepCopy(), meta.DeepCopy()
		// Even with the other layout asked for, an injected pod is left alone.
		if changed, err := Pod(spec, meta, Options{NativeSidecars: !native}); err != nil || changed {
			t.Fatalf("second injection = %v, %v; want false, nil", changed, err)
		}
		if diff := cmp.Diff(once, spec); diff != "" {
			t.Errorf("native=%v: second injection changed the spec:\n%s", native, diff)
		}
		if diff := cmp.Diff(onceMeta, meta); diff != "" {
			t.Errorf("native=%v: second injection changed metadata:\n%s", native, diff)
		}
	}
}

func TestLayouts(t *testing.T) {
	spec, meta := pod(nil, nil)
	spec.InitContainers = []corev1.Container{{Name: "migrate"}}
	if _, err := Pod(spec, meta, Options{NativeSidecars: true}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range spec.InitContainers {
		names = append(names, c.Name)
	}
	// Capture first, then the proxy, then the user's init containers, so
	// those already have the mesh.
	if diff := cmp.Diff([]string{InitName, ProxyName, "migrate"}, names); diff != "" {
		t.Errorf("native init containers (-want +got):\n%s", diff)
	}
	if rp := spec.InitContainers[1].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		t.Errorf("native sidecar restartPolicy = %v, want Always", rp)
	}
	if p := spec.InitContainers[1].StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Port.IntVal != 15021 || p.HTTPGet.Path != "/healthz/ready" {
		t.Errorf("native sidecar startupProbe = %+v", p)
	}

	spec, meta = pod(nil, nil)
	if _, err := Pod(spec, meta, Options{}); err != nil {
		t.Fatal(err)
	}
	if spec.Containers[0].Name != ProxyName || spec.Containers[1].Name != "app" {
		t.Errorf("classic: proxy is not the first container: %v, %v", spec.Containers[0].Name, spec.Containers[1].Name)
	}
	if l := spec.Containers[0].Lifecycle; l == nil || l.PostStart == nil || l.PostStart.Exec == nil {
		t.Errorf("classic: no postStart hook holding the app: %+v", l)
	}
	if spec.InitContainers[0].Name != InitName || spec.InitContainers[0].RestartPolicy != nil {
		t.Errorf("classic init containers: %+v", spec.InitContainers)
	}
	caps := spec.InitContainers[0].SecurityContext.Capabilities
	if diff := cmp.Diff([]corev1.Capability{"NET_ADMIN", "NET_RAW"}, caps.Add); diff != "" {
		t.Errorf("init capabilities (-want +got):\n%s", diff)
	}
	var st status
	if err := json.Unmarshal([]byte(meta.Annotations[StatusAnnotation]), &st); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(status{InitContainers: []string{InitName}, Containers: []string{ProxyName}, Volumes: []string{TokenVolume}, Revision: "default"}, st); diff != "" {
		t.Errorf("status annotation (-want +got):\n%s", diff)
	}
}

func TestProbeRewriting(t *testing.T) {
	svc := "health"
	spec := &corev1.PodSpec{Containers: []corev1.Container{{
		Name:  "web",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/ready", Port: intstr.FromString("http"), HTTPHeaders: []corev1.HTTPHeader{{Name: "X", Value: "1"}},
		}}, PeriodSeconds: 7, TimeoutSeconds: 2},
		LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
		StartupProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090, Service: &svc}}},
	}, {
		Name:           "side",
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}},
	}}}
	meta := &metav1.ObjectMeta{}
	if _, err := Pod(spec, meta, Options{NativeSidecars: true}); err != nil {
		t.Fatal(err)
	}
	web := spec.Containers[0]
	for path, p := range map[string]*corev1.Probe{"/app-health/web/readyz": web.ReadinessProbe, "/app-health/web/livez": web.LivenessProbe, "/app-health/web/startupz": web.StartupProbe} {
		want := &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(15020), Scheme: corev1.URISchemeHTTP}
		if diff := cmp.Diff(want, p.HTTPGet); diff != "" || p.TCPSocket != nil || p.GRPC != nil {
			t.Errorf("%s rewritten probe (-want +got):\n%s", path, diff)
		}
	}
	if web.ReadinessProbe.PeriodSeconds != 7 || web.ReadinessProbe.TimeoutSeconds != 2 {
		t.Errorf("timings not kept: %+v", web.ReadinessProbe)
	}
	if spec.Containers[1].ReadinessProbe.Exec == nil {
		t.Errorf("exec probe was rewritten: %+v", spec.Containers[1].ReadinessProbe)
	}
	raw, ok := env(spec.InitContainers[1], apphealth.EnvName)
	if !ok {
		t.Fatal("no ISTIO_KUBE_APP_PROBERS on the proxy")
	}
	// The proxy's own parser accepts it: the contract is shared.
	got, err := apphealth.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := apphealth.Probers{
		"/app-health/web/readyz":   {HTTPGet: &apphealth.HTTPGetAction{Path: "/ready", Port: 8080, HTTPHeaders: []apphealth.HTTPHeader{{Name: "X", Value: "1"}}}, TimeoutSeconds: 2},
		"/app-health/web/livez":    {TCPSocket: &apphealth.TCPSocketAction{Port: 8080}},
		"/app-health/web/startupz": {GRPC: &apphealth.GRPCAction{Port: 9090, Service: &svc}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ISTIO_KUBE_APP_PROBERS (-want +got):\n%s", diff)
	}
}

func TestAnnotationsInForce(t *testing.T) {
	spec, meta := pod(map[string]string{
		annIncludeOutbound: "10.0.0.0/8, 192.168.0.0/16",
		annExcludeOutbound: "10.1.0.0/16",
		annExcludeInPorts:  "8081",
		annExcludeOutPorts: "5432,6379",
		annCPU:             "200m", annMemoryLimit: "1Gi",
		annProxyConfig: "holdApplicationUntilProxyStarts: true\n",
	}, map[string]string{"app": "web"})
	if _, err := Pod(spec, meta, Options{NativeSidecars: true, Version: "1.2.3"}); err != nil {
		t.Fatal(err)
	}
	wantArgs := []string{"init", "--mode=REDIRECT", "--proxy-uid=1337",
		"--include-outbound-ip-ranges=10.0.0.0/8,192.168.0.0/16", "--exclude-outbound-ip-ranges=10.1.0.0/16",
		"--exclude-inbound-ports=15020,15021,15090,8081", "--exclude-outbound-ports=5432,6379"}
	if diff := cmp.Diff(wantArgs, spec.InitContainers[0].Args); diff != "" {
		t.Errorf("init args (-want +got):\n%s", diff)
	}
	proxy := spec.InitContainers[1]
	if proxy.Image != "ghcr.io/trellismesh/trellis-proxy:1.2.3" {
		t.Errorf("image = %s", proxy.Image)
	}
	r := proxy.Resources
	if r.Requests.Cpu().String() != "200m" || r.Requests.Memory().String() != "128Mi" || r.Limits.Memory().String() != "1Gi" || !r.Limits.Cpu().IsZero() {
		t.Errorf("resources = %+v", r)
	}
	if v, _ := env(proxy, "PROXY_CONFIG"); v != "holdApplicationUntilProxyStarts: true\n" {
		t.Errorf("PROXY_CONFIG = %q", v)
	}
	if v, _ := env(proxy, "POD_LABELS"); v != "app=web" {
		t.Errorf("POD_LABELS = %q", v)
	}

	// NONE: no capture, so no init container.
	spec, meta = pod(map[string]string{annInterception: "NONE"}, nil)
	if _, err := Pod(spec, meta, Options{NativeSidecars: true}); err != nil {
		t.Fatal(err)
	}
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != ProxyName {
		t.Errorf("NONE: init containers %+v", spec.InitContainers)
	}
	if v, _ := env(spec.InitContainers[0], "INTERCEPTION_MODE"); v != "NONE" {
		t.Errorf("INTERCEPTION_MODE = %q", v)
	}
}

func TestBadAnnotations(t *testing.T) {
	for key, tc := range map[string]struct{ value, want string }{
		annExcludeInPorts:  {"x", `metadata.annotations["traffic.sidecar.istio.io/excludeInboundPorts"]: "x" is not a port (1-65535)`},
		annExcludeOutPorts: {"80,70000", `metadata.annotations["traffic.sidecar.istio.io/excludeOutboundPorts"]: "70000" is not a port (1-65535)`},
		annIncludeOutbound: {"10.0.0.0/33", `metadata.annotations["traffic.sidecar.istio.io/includeOutboundIPRanges"]: "10.0.0.0/33" is not a CIDR (e.g. 10.0.0.0/8)`},
		annExcludeOutbound: {"*", `metadata.annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"]: "*" is not a CIDR (e.g. 10.0.0.0/8)`},
		annInterception:    {"TPROXY", `metadata.annotations["sidecar.istio.io/interceptionMode"]: "TPROXY" is not supported yet: use REDIRECT (the default) or NONE`},
		annMemory:          {"lots", `metadata.annotations["sidecar.istio.io/proxyMemory"]: "lots" is not a quantity (e.g. 100m, 128Mi)`},
		annProxyConfig:     {"[1", `metadata.annotations["proxy.istio.io/config"]: "[1" is not a ProxyConfig (YAML or JSON object)`},
	} {
		spec, meta := pod(map[string]string{key: tc.value}, nil)
		before := spec.DeepCopy()
		_, err := Pod(spec, meta, Options{NativeSidecars: true})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s=%q: error %v\nwant %s", key, tc.value, err, tc.want)
		}
		if diff := cmp.Diff(before, spec); diff != "" {
			t.Errorf("%s: spec changed on error:\n%s", key, diff)
		}
	}
	spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "web", ReadinessProbe: &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("nope")}},
	}}}}
	_, err := Pod(spec, &metav1.ObjectMeta{}, Options{})
	if want := `spec.containers[0].readinessProbe.httpGet.port: port "nope" is not a port of container "web"`; err == nil || err.Error() != want {
		t.Errorf("named port error %v\nwant %s", err, want)
	}
}
