package translate

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/store"
)

func guardWorld(t *testing.T, extra string) *World {
	t.Helper()
	files, err := config.Load([]string{"testdata/mesh"}, false)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(slog.New(slog.DiscardHandler))
	for _, f := range files {
		st.ApplyFile(f)
	}
	if extra != "" {
		f := config.ParseFile("extra.yaml", []byte(extra))
		if len(f.Errors) > 0 {
			t.Fatalf("extra config invalid: %v", f.Errors)
		}
		st.ApplyFile(f)
	}
	return NewWorld(st.Snapshot())
}

var guardProxy = &Proxy{ID: "p", IP: "127.10.0.11", Namespace: "default", Labels: map[string]string{"app": "reviews", "version": "v1"}, InterceptionMode: "NONE"}

// strictDecoders makes the guard's decoders also refuse what refuse
// names, for refusals that no valid config produces today (they would
// be bugs); the verdicts kept across Worlds are forgotten around it.
func strictDecoders(t *testing.T, refuse func(kind, name string) bool) {
	t.Helper()
	saved := guardDecoders
	resetLasting := func() {
		lasting.Lock()
		lasting.m = nil
		lasting.Unlock()
	}
	resetLasting()
	t.Cleanup(func() { guardDecoders = saved; resetLasting() })
	injected := errors.New("injected refusal")
	guardDecoders.cluster = func(b []byte) error {
		c, err := xdsresource.DecodeCluster(b)
		if err == nil && refuse("cluster", c.Name) {
			return injected
		}
		return err
	}
	guardDecoders.cla = func(b []byte) error {
		c, err := xdsresource.DecodeClusterLoadAssignment(b)
		if err == nil && refuse("cla", c.ClusterName) {
			return injected
		}
		return err
	}
	guardDecoders.listener = func(b []byte) error {
		l, err := xdsresource.DecodeListener(b)
		if err == nil && refuse("listener", l.Name) {
			return injected
		}
		return err
	}
}

func names[T any](items []T, name func(T) string) []string {
	var out []string
	for _, x := range items {
		out = append(out, name(x))
	}
	return out
}

// What the sidecar refuses without any user object to blame (a Trellis
// bug) is dropped alone: the other resources of each type still go out.
func TestGuardDropsRefusedResources(t *testing.T) {
	strictDecoders(t, func(kind, name string) bool {
		switch kind {
		case "cluster":
			return name == "outbound|9080||ratings.default.svc.cluster.local"
		case "cla":
			return name == "outbound|9080||reviews.default.svc.cluster.local"
		case "listener":
			return name == "10.96.0.20_5432" || name == VirtualInbound
		}
		return false
	})
	w := guardWorld(t, "")
	r := ForProxy(w, guardProxy, nil)
	clusters := names(r.Clusters, func(c *clusterv3.Cluster) string { return c.GetName() })
	if slices.Contains(clusters, "outbound|9080||ratings.default.svc.cluster.local") {
		t.Error("refused cluster kept")
	}
	if !slices.Contains(clusters, "outbound|9080||reviews.default.svc.cluster.local") {
		t.Error("reviews cluster dropped with ratings'")
	}
	clas := names(r.Endpoints, func(c *endpointv3.ClusterLoadAssignment) string { return c.GetClusterName() })
	if slices.Contains(clas, "outbound|9080||reviews.default.svc.cluster.local") || slices.Contains(clas, "outbound|9080||ratings.default.svc.cluster.local") {
		t.Errorf("load assignments %v: want the refused one and the dropped cluster's left out", clas)
	}
	if !slices.Contains(clas, "outbound|9080|v1|reviews.default.svc.cluster.local") {
		t.Errorf("load assignments %v: the subsets' must stay", clas)
	}
	listeners := names(r.Listeners, func(l *listenerv3.Listener) string { return l.GetName() })
	want := []string{"0.0.0.0_7070", "0.0.0.0_9080", VirtualOutbound}
	if !slices.Equal(listeners, want) {
		t.Errorf("listeners %v, want %v", listeners, want)
	}
}

// A DestinationRule section the sidecar refuses is reported where it was
// written, and the rest of the cluster set survives; an injected refusal
// of MAGLEV stands for any rule the validator does not know.
func TestGuardInjectedPolicyRefusal(t *testing.T) {
	strictDecoders(t, func(kind, name string) bool { return false })
	plain := guardDecoders.cluster
	guardDecoders.cluster = func(b []byte) error {
		c, err := xdsresource.DecodeCluster(b)
		if err == nil && c.LBPolicy == xdsresource.LBMaglev {
			return errors.New("lb_policy: injected refusal")
		}
		return plain(b)
	}
	w := guardWorld(t, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 7}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 9080}
        loadBalancer: {consistentHash: {maglev: {tableSize: 65537}, httpHeaderName: x-user}}
`)
	r := ForProxy(w, guardProxy, nil)
	for _, c := range r.Clusters {
		switch c.GetName() {
		case "outbound|9080||ratings.default.svc.cluster.local":
			if maxConnections(c) != 7 {
				t.Error("the default cluster lost the rule's accepted policy")
			}
		case "outbound|9080|v1|ratings.default.svc.cluster.local":
			if maxConnections(c) != 0 || c.GetLbPolicy().String() != "LEAST_REQUEST" {
				t.Errorf("v1 cluster %v, want it built without the rule's policy", c)
			}
		}
	}
	problems := PolicyProblems(w)
	if len(problems) != 1 || problems[0].Path != "spec.subsets[0].trafficPolicy.portLevelSettings[0].loadBalancer" || !strings.Contains(problems[0].Detail, "injected refusal") {
		t.Errorf("problems %v, want one at spec.subsets[0].trafficPolicy.portLevelSettings[0].loadBalancer", problems)
	}
}

// Load assignment verdicts are kept across Worlds by fingerprint, so the
// fingerprint must read every field the translator sets, or two load
// assignments differing only there would share a verdict.
func TestCLAFingerprintCoversOutput(t *testing.T) {
	w := guardWorld(t, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [ext.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.1, locality: us/east/a, weight: 3, labels: {security.istio.io/tlsMode: istio}}
`)
	r := ForProxy(w, guardProxy, nil)
	covered := map[string]bool{}
	for _, f := range claFingerprintFields {
		covered[f] = true
	}
	set := map[string]bool{}
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			set[string(fd.FullName())] = true
			switch {
			case fd.IsMap():
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { walk(mv.Message()); return true })
				}
			case fd.IsList():
				if fd.Kind() == protoreflect.MessageKind {
					for i := range v.List().Len() {
						walk(v.List().Get(i).Message())
					}
				}
			case fd.Kind() == protoreflect.MessageKind:
				walk(v.Message())
			}
			return true
		})
	}
	for _, cla := range r.Endpoints {
		walk(cla.ProtoReflect())
	}
	for f := range set {
		if !covered[f] {
			t.Errorf("the translator sets %s, which claFingerprint does not read", f)
		}
	}
	for _, f := range []string{"envoy.config.core.v3.Locality.zone", "google.protobuf.Value.string_value"} {
		if !set[f] {
			t.Errorf("test output lacks %s: the check above saw too little", f)
		}
	}
	// And the fingerprint tells content apart.
	a := r.Endpoints[0]
	b := proto.Clone(a).(*endpointv3.ClusterLoadAssignment)
	b.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().Address = "10.9.9.9"
	sa, _ := claFingerprint(a)
	sb, _ := claFingerprint(b)
	if sa == sb {
		t.Error("different addresses, same fingerprint")
	}
}

// maxConnections is the cluster's connection limit, 0 when unset.
func maxConnections(c *clusterv3.Cluster) uint32 {
	for _, th := range c.GetCircuitBreakers().GetThresholds() {
		return th.GetMaxConnections().GetValue()
	}
	return 0
}
