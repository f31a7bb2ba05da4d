package translate_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/translate"
)

// decodeName decodes b as the sidecar's decoder of typeURL does.
func decodeName(typeURL string, b []byte) (name string, err error) {
	switch typeURL {
	case xdsresource.ClusterType:
		name, _, err = xdsresource.ClusterResource.Decode(b)
	case xdsresource.EndpointType:
		name, _, err = xdsresource.EndpointResource.Decode(b)
	case xdsresource.ListenerType:
		name, _, err = xdsresource.ListenerResource.Decode(b)
	case xdsresource.RouteType:
		name, _, err = xdsresource.RouteResource.Decode(b)
	default:
		panic("no decoder for " + typeURL)
	}
	return name, err
}

// refusals decodes every resource of r with the sidecar's decoders and
// returns what they refuse.
func refusals(t *testing.T, r *translate.Resources) []string {
	t.Helper()
	var out []string
	check := func(typeURL string, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if name, err := decodeName(typeURL, b); err != nil {
			out = append(out, typeURL[strings.LastIndexByte(typeURL, '.')+1:]+" "+name+": "+err.Error())
		}
	}
	for _, x := range r.Clusters {
		check(xdsresource.ClusterType, x)
	}
	for _, x := range r.Endpoints {
		check(xdsresource.EndpointType, x)
	}
	for _, x := range r.Listeners {
		check(xdsresource.ListenerType, x)
	}
	for _, x := range r.Routes {
		check(xdsresource.RouteType, x)
	}
	return out
}

// hugeConnectTimeout is accepted by validation (a whole number of
// milliseconds, at least 1ms) but longer than the sidecar's decoder takes
// (time.Duration's range): a real DestinationRule the sidecar refuses.
const hugeConnectTimeout = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {connectTimeout: 9223372036s}}
  subsets:
  - {name: v1, labels: {version: v1}}
`

// A cluster the sidecar would refuse with its DestinationRule's policy is
// served without that policy (default connect timeout and load balancer),
// subsets included, instead of getting the whole CDS update NACKed; the
// problem names the rule and the section that made the sidecar refuse.
func TestRefusedPolicyServedWithout(t *testing.T) {
	w := world(t, "testdata/mesh", hugeConnectTimeout)
	var logged strings.Builder
	r := translate.ForProxy(w, sidecarProxy, slog.New(slog.NewTextHandler(&logged, nil)))
	if got := refusals(t, r); len(got) != 0 {
		t.Fatalf("the sidecar would refuse: %q", got)
	}
	if l := logged.String(); strings.Count(l, "code=TRL0009") != 1 || !strings.Contains(l, `object="DestinationRule default/ratings" path=spec.trafficPolicy.connectionPool`) {
		t.Errorf("log %q, want one TRL0009 line naming the rule and the section", l)
	}
	for _, name := range []string{"outbound|9080||ratings.default.svc.cluster.local", "outbound|9080|v1|ratings.default.svc.cluster.local"} {
		c := findCluster(r, name)
		if c == nil {
			t.Fatalf("no cluster %s: the service must stay reachable", name)
		}
		if got := c.GetConnectTimeout().AsDuration(); got != 10*time.Second {
			t.Errorf("%s connect timeout %s, want the mesh default 10s", name, got)
		}
		if c.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST {
			t.Errorf("%s lb policy %v, want LEAST_REQUEST (the rule's policy is left out whole)", name, c.GetLbPolicy())
		}
		if findCLA(r, name) == nil {
			t.Errorf("%s has no endpoints", name)
		}
	}
	// Services the rule does not touch keep theirs.
	if findCluster(r, "outbound|9080||reviews.default.svc.cluster.local") == nil {
		t.Error("reviews lost its cluster")
	}
	problems := translate.PolicyProblems(w)
	if len(problems) != 1 {
		t.Fatalf("problems %v, want one", problems)
	}
	p := problems[0]
	if p.Object.ID() != "DestinationRule default/ratings" || p.Path != "spec.trafficPolicy.connectionPool" ||
		!strings.Contains(p.Detail, "ratings.default.svc.cluster.local:9080") || !strings.Contains(p.Detail, "connect_timeout: 9223372036s is too long") {
		t.Errorf("problem %v, want DestinationRule default/ratings spec.trafficPolicy.connectionPool quoting the connect_timeout refusal", p)
	}
}

// The section reported is the one mergePolicy took: a subset's own, and a
// port-level setting over the policy it sits in.
func TestRefusedPolicyPath(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    portLevelSettings:
    - port: {number: 9080}
      connectionPool: {tcp: {connectTimeout: 9223372036s}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {http: {idleTimeout: 9223372036s}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
`)
	var got []string
	for _, p := range translate.PolicyProblems(w) {
		got = append(got, p.Path)
	}
	want := []string{"spec.trafficPolicy.portLevelSettings[0].connectionPool", "spec.subsets[0].trafficPolicy.connectionPool"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problem paths (-want +got):\n%s", d)
	}
	r := translate.ForProxy(w, sidecarProxy, nil)
	if got := refusals(t, r); len(got) != 0 {
		t.Fatalf("the sidecar would refuse: %q", got)
	}
	// v2's own section is fine; only the port-level connection pool it
	// inherits is refused, so it too is served without the rule's policy.
	if c := findCluster(r, "outbound|9080|v2|ratings.default.svc.cluster.local"); c.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST {
		t.Errorf("v2 lb policy %v, want LEAST_REQUEST", c.GetLbPolicy())
	}
}

// sniTrailingDot spells one server name two ways: validation takes
// "db.example.com." as a host and an SNI host, and the sidecar matches names
// in lower case without the trailing dot, as Envoy's SNI matching does.
const sniTrailingDot = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-db}
spec:
  hosts: [db.example.com]
  addresses: [240.0.0.5]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext-db}
spec:
  hosts: [db.example.com, db.example.com.]
  tls:
  - match: [{sniHosts: [db.example.com]}, {sniHosts: [db.example.com.]}]
    route: [{destination: {host: db.example.com}}]
`

// Spellings of one server name become one chain (two chains for one name
// are a listener the sidecar refuses, and the guard used to drop the
// VirtualService's routes for it); nothing is reported.
func TestSNISpellingsShareAChain(t *testing.T) {
	w := world(t, "testdata/mesh", sniTrailingDot)
	r := translate.ForProxy(w, sidecarProxy, nil)
	if got := refusals(t, r); len(got) != 0 {
		t.Fatalf("the sidecar would refuse: %q", got)
	}
	if d := cmp.Diff([]string{"ext-db.default.tls[0].match[0] [db.example.com] -> outbound|443||db.example.com"}, chains(t, r, "240.0.0.5_443")); d != "" {
		t.Errorf("chains (-want +got):\n%s", d)
	}
	if problems := translate.RouteProblems(w); len(problems) != 0 {
		t.Errorf("problems %v, want none", problems)
	}
}

// Everything the translator makes of the examples and the test mesh, for
// every proxy they run and one per namespace, is taken by the sidecar's
// decoders: a mismatch between the two fails here before a proxy NACKs.
func TestAllOutputDecodes(t *testing.T) {
	dirs := []string{"testdata/mesh"}
	for _, pattern := range []string{"../../examples/*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range m {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	if len(dirs) < 4 {
		t.Fatalf("found only %v", dirs)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			files, err := config.Load([]string{dir}, false)
			if err != nil {
				t.Fatal(err)
			}
			st := store.New(slog.New(slog.DiscardHandler))
			for _, f := range files {
				st.ApplyFile(f)
			}
			w := translate.NewWorld(st.Snapshot())
			proxies := map[string]*translate.Proxy{"ns-default": {ID: "ns-default", Namespace: "default", InterceptionMode: "NONE"}}
			for _, svc := range w.Reg.Services() {
				ns := &translate.Proxy{ID: "ns-" + svc.Namespace, Namespace: svc.Namespace, InterceptionMode: "NONE"}
				proxies[ns.ID] = ns
				for _, ins := range svc.Instances {
					for _, in := range ins {
						for _, mode := range []string{"NONE", "REDIRECT"} {
							p := &translate.Proxy{ID: in.Address + mode, IP: in.Address, Namespace: in.Namespace, Labels: in.Labels, InterceptionMode: mode}
							proxies[p.ID] = p
						}
					}
				}
			}
			for _, p := range proxies {
				if got := refusals(t, translate.ForProxy(w, p, nil)); len(got) != 0 {
					t.Errorf("proxy %s: the sidecar would refuse %q", p.ID, got)
				}
			}
		})
	}
}
