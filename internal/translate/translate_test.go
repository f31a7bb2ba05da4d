package translate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/translate"
)

var update = flag.Bool("update", false, "rewrite golden files")

func world(t *testing.T, dir string, extra ...string) *translate.World {
	t.Helper()
	files, err := config.Load([]string{dir}, false)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(slog.New(slog.DiscardHandler))
	for _, f := range files {
		if len(f.Errors) > 0 {
			t.Fatalf("test config invalid: %v", f.Errors)
		}
		st.ApplyFile(f)
	}
	for i, y := range extra {
		f := config.ParseFile(filepath.Join("extra", string(rune('a'+i))+".yaml"), []byte(y))
		if len(f.Errors) > 0 {
			t.Fatalf("extra config invalid: %v", f.Errors)
		}
		st.ApplyFile(f)
	}
	return translate.NewWorld(st.Snapshot())
}

var (
	sidecarProxy = &translate.Proxy{ID: "sidecar~127.10.0.11~reviews-v1-0.default~default.svc.cluster.local", IP: "127.10.0.11", Pod: "reviews-v1-0", Namespace: "default", Labels: map[string]string{"app": "reviews", "version": "v1"}, InterceptionMode: "NONE"}
	grpcProxy    = &translate.Proxy{ID: "sidecar~127.10.0.30~client-0.default~default.svc.cluster.local", IP: "127.10.0.30", Pod: "client-0", Namespace: "default", Generator: translate.GeneratorGRPC}
)

// render gives a stable, reviewable text form of resources.
func render(t *testing.T, r *translate.Resources) []byte {
	t.Helper()
	var msgs []proto.Message
	for _, x := range r.Listeners {
		msgs = append(msgs, x)
	}
	for _, x := range r.Routes {
		msgs = append(msgs, x)
	}
	for _, x := range r.Clusters {
		msgs = append(msgs, x)
	}
	for _, x := range r.Endpoints {
		msgs = append(msgs, x)
	}
	var out bytes.Buffer
	for _, m := range msgs {
		b, err := protojson.MarshalOptions{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		// protojson's whitespace is deliberately unstable; normalise it.
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			t.Fatal(err)
		}
		if err := json.Indent(&out, c.Bytes(), "", "  "); err != nil {
			t.Fatal(err)
		}
		out.WriteString("\n")
	}
	return out.Bytes()
}

func TestGolden(t *testing.T) {
	w := world(t, "testdata/mesh")
	for name, p := range map[string]*translate.Proxy{"sidecar": sidecarProxy, "grpc": grpcProxy} {
		t.Run(name, func(t *testing.T) {
			got := render(t, translate.ForProxy(w, p, nil))
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/translate -update to create it)", err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Fatalf("rendered resources differ from %s (-want +got; rerun with -update if intended):\n%s", path, d)
			}
			// Translation is deterministic: a second run renders the same bytes.
			if again := render(t, translate.ForProxy(w, p, nil)); !bytes.Equal(again, got) {
				t.Fatal("translation is not deterministic")
			}
		})
	}
}

func findRoute(t *testing.T, r *translate.Resources, name string) *routev3.RouteConfiguration {
	t.Helper()
	for _, rc := range r.Routes {
		if rc.Name == name {
			return rc
		}
	}
	t.Fatalf("no route configuration %q", name)
	return nil
}

func findCluster(r *translate.Resources, name string) *clusterv3.Cluster {
	for _, c := range r.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func findCLA(r *translate.Resources, name string) *endpointv3.ClusterLoadAssignment {
	for _, c := range r.Endpoints {
		if c.ClusterName == name {
			return c
		}
	}
	return nil
}

func vhost(t *testing.T, rc *routev3.RouteConfiguration, name string) *routev3.VirtualHost {
	t.Helper()
	for _, vh := range rc.VirtualHosts {
		if vh.Name == name {
			return vh
		}
	}
	t.Fatalf("route %s has no virtual host %q", rc.Name, name)
	return nil
}

type wc struct {
	Name   string
	Weight uint32
}

func weights(r *routev3.Route) []wc {
	var out []wc
	if c := r.GetRoute().GetCluster(); c != "" {
		return []wc{{c, 1}}
	}
	for _, c := range r.GetRoute().GetWeightedClusters().GetClusters() {
		out = append(out, wc{c.GetName(), c.GetWeight().GetValue()})
	}
	return out
}

// The user's reviews VirtualService: a header route to v2, then 90/10.
func TestVirtualServiceRoutes(t *testing.T) {
	r := translate.ForProxy(world(t, "testdata/mesh"), sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "reviews.default.svc.cluster.local:9080")
	if len(vh.Routes) != 2 {
		t.Fatalf("want 2 routes, got %d", len(vh.Routes))
	}
	h := vh.Routes[0].GetMatch().GetHeaders()
	if len(h) != 1 || h[0].GetName() != "user" || h[0].GetStringMatch().GetExact() != "test-user" {
		t.Fatalf("header match: %v", h)
	}
	if d := cmp.Diff([]wc{{"outbound|9080|v2|reviews.default.svc.cluster.local", 1}}, weights(vh.Routes[0])); d != "" {
		t.Fatal(d)
	}
	want := []wc{{"outbound|9080|v1|reviews.default.svc.cluster.local", 90}, {"outbound|9080|v2|reviews.default.svc.cluster.local", 10}}
	if d := cmp.Diff(want, weights(vh.Routes[1])); d != "" {
		t.Fatal(d)
	}
	// Short names resolve from the proxy's own namespace only.
	if !contains(vh.Domains, "reviews") || !contains(vh.Domains, "reviews:9080") || !contains(vh.Domains, "reviews.default.svc.cluster.local:9080") {
		t.Fatalf("domains %v", vh.Domains)
	}
}

// Subset clusters carry only the endpoints their labels select, with the
// WorkloadEntry's weight and locality; ports come from the entry's map.
func TestSubsetEndpoints(t *testing.T) {
	r := translate.ForProxy(world(t, "testdata/mesh"), sidecarProxy, nil)
	addrs := func(name string) []string {
		cla := findCLA(r, name)
		if cla == nil {
			t.Fatalf("no CLA %s", name)
		}
		var out []string
		for _, l := range cla.Endpoints {
			for _, e := range l.LbEndpoints {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, sa.GetAddress()+":"+itoa(sa.GetPortValue())+" w"+itoa(e.GetLoadBalancingWeight().GetValue())+" "+l.GetLocality().GetRegion())
			}
		}
		return out
	}
	if d := cmp.Diff([]string{"127.10.0.11:9080 w1 ", "127.10.0.12:9080 w3 us-east"}, addrs("outbound|9080||reviews.default.svc.cluster.local")); d != "" {
		t.Fatal(d)
	}
	if d := cmp.Diff([]string{"127.10.0.12:9080 w3 us-east"}, addrs("outbound|9080|v2|reviews.default.svc.cluster.local")); d != "" {
		t.Fatal(d)
	}
	if d := cmp.Diff([]string{"127.10.0.13:19080 w1 "}, addrs("outbound|9080||ratings.default.svc.cluster.local")); d != "" {
		t.Fatal(d)
	}
}

// Endpoints of workloads labelled security.istio.io/tlsMode: istio carry
// tlsMode: istio in the trellis metadata and in Envoy's
// envoy.transport_socket_match, as istiod does; others carry neither.
func TestEndpointTLSMode(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-off}
spec: {address: 127.10.0.16, labels: {app: ratings, security.istio.io/tlsMode: disabled}, ports: {http: 19080}}
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	modes := func(name string) map[string][2]string {
		cla := findCLA(r, name)
		if cla == nil {
			t.Fatalf("no CLA %s", name)
		}
		out := map[string][2]string{}
		for _, l := range cla.Endpoints {
			for _, e := range l.LbEndpoints {
				fm := e.GetMetadata().GetFilterMetadata()
				out[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = [2]string{
					fm[translate.MetadataNamespace].GetFields()["tlsMode"].GetStringValue(),
					fm[translate.TransportSocketMatchNamespace].GetFields()["tlsMode"].GetStringValue(),
				}
			}
		}
		return out
	}
	want := map[string][2]string{"127.10.0.11": {}, "127.10.0.12": {"istio", "istio"}}
	if d := cmp.Diff(want, modes("outbound|9080||reviews.default.svc.cluster.local")); d != "" {
		t.Errorf("reviews (-want +got):\n%s", d)
	}
	want = map[string][2]string{"127.10.0.13": {}, "127.10.0.16": {}}
	if d := cmp.Diff(want, modes("outbound|9080||ratings.default.svc.cluster.local")); d != "" {
		t.Errorf("ratings (-want +got):\n%s", d)
	}
	for _, l := range findCLA(r, "outbound|9080||ratings.default.svc.cluster.local").Endpoints {
		for _, e := range l.LbEndpoints {
			if _, ok := e.GetMetadata().GetFilterMetadata()[translate.TransportSocketMatchNamespace]; ok {
				t.Errorf("%v: unlabelled endpoint has transport socket match metadata", e.GetEndpoint().GetAddress())
			}
		}
	}
}

// DestinationRule ROUND_ROBIN and h2UpgradePolicy UPGRADE (the user's
// reviews DR) reach the cluster; LEAST_REQUEST is the default elsewhere.
func TestDestinationRulePolicies(t *testing.T) {
	r := translate.ForProxy(world(t, "testdata/mesh"), sidecarProxy, nil)
	c := findCluster(r, "outbound|9080|v1|reviews.default.svc.cluster.local")
	if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		t.Fatalf("lb policy %v", c.GetLbPolicy())
	}
	var opts upstreamhttp.HttpProtocolOptions
	if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&opts); err != nil {
		t.Fatalf("no HTTP protocol options: %v", err)
	}
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Fatal("h2UpgradePolicy UPGRADE did not select HTTP/2 upstream")
	}
	if got := findCluster(r, "outbound|9080||ratings.default.svc.cluster.local").GetLbPolicy(); got != clusterv3.Cluster_LEAST_REQUEST {
		t.Fatalf("default lb policy %v, want LEAST_REQUEST", got)
	}
	if got := findCluster(r, "outbound|7070|v1|greeter.default.svc.cluster.local").GetLbPolicy(); got != clusterv3.Cluster_RANDOM {
		t.Fatalf("sidecar RANDOM became %v", got)
	}
}

// trellis.io/load-balancer: PEAK_EWMA on a DestinationRule puts lb:
// PEAK_EWMA in every cluster's trellis metadata, subsets included, for
// sidecars only; clusters of other rules carry no metadata.
func TestPeakEWMAMetadata(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, annotations: {trellis.io/load-balancer: PEAK_EWMA}}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`)
	lb := func(c *clusterv3.Cluster) string {
		return c.GetMetadata().GetFilterMetadata()[translate.MetadataNamespace].GetFields()[translate.ClusterLBKey].GetStringValue()
	}
	r := translate.ForProxy(w, sidecarProxy, nil)
	for _, name := range []string{
		"outbound|9080||reviews.default.svc.cluster.local",
		"outbound|9080|v1|reviews.default.svc.cluster.local",
		"outbound|9080|v2|reviews.default.svc.cluster.local",
		"outbound|9080||ratings.default.svc.cluster.local", // testdata/mesh/ratings-dr.yaml
	} {
		c := findCluster(r, name)
		if c.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST || lb(c) != translate.LBPeakEWMA {
			t.Errorf("%s: lb policy %v, metadata lb %q; want LEAST_REQUEST and %s", name, c.GetLbPolicy(), lb(c), translate.LBPeakEWMA)
		}
	}
	for _, name := range []string{"outbound|7070|v1|greeter.default.svc.cluster.local", "outbound|9080||reviews-v1.default.svc.cluster.local"} {
		if md := findCluster(r, name).GetMetadata(); md != nil {
			t.Errorf("%s: metadata %v, want none", name, md)
		}
	}
	for _, c := range translate.ForProxy(w, grpcProxy, nil).Clusters {
		if c.GetMetadata() != nil {
			t.Errorf("proxyless %s: metadata %v, want none (grpc-go has no peak EWMA)", c.Name, c.GetMetadata())
		}
	}
}

// grpc-go has no RANDOM balancer: proxyless clients get ROUND_ROBIN, and
// listeners for every name a client may use.
func TestGRPCShape(t *testing.T) {
	r := translate.ForProxy(world(t, "testdata/mesh"), grpcProxy, nil)
	if got := findCluster(r, "outbound|7070|v1|greeter.default.svc.cluster.local").GetLbPolicy(); got != clusterv3.Cluster_ROUND_ROBIN {
		t.Fatalf("grpc RANDOM mapped to %v, want ROUND_ROBIN", got)
	}
	var names []string
	for _, l := range r.Listeners {
		if l.GetApiListener() == nil {
			t.Fatalf("listener %s is not an api_listener", l.Name)
		}
		names = append(names, l.Name)
	}
	for _, n := range []string{"greeter:7070", "greeter.default:7070", "greeter.default.svc:7070", "greeter.default.svc.cluster.local:7070"} {
		if !contains(names, n) {
			t.Fatalf("no listener %s in %v", n, names)
		}
	}
	vh := findRoute(t, r, "greeter.default.svc.cluster.local:7070").VirtualHosts[0]
	want := []wc{{"outbound|7070|v1|greeter.default.svc.cluster.local", 80}, {"outbound|7070|v2|greeter.default.svc.cluster.local", 20}}
	if d := cmp.Diff(want, weights(vh.Routes[1])); d != "" {
		t.Fatal(d)
	}
}

// SMI TrafficSplit weights 900m/100m become 9/1 to the backend services;
// a VirtualService for the same host takes precedence, so the split shows
// once the VirtualService is gone.
func TestTrafficSplit(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"services.yaml", "workloads.yaml", "split.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata/mesh", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := translate.ForProxy(world(t, dir), sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "reviews.default.svc.cluster.local:9080")
	want := []wc{{"outbound|9080||reviews-v1.default.svc.cluster.local", 9}, {"outbound|9080||reviews-v2.default.svc.cluster.local", 1}}
	if d := cmp.Diff(want, weights(vh.Routes[0])); d != "" {
		t.Fatal(d)
	}
}

// GAMMA HTTPRoute on ratings: PathPrefix /v2 with a header filter first,
// the catch-all second, by Gateway API precedence.
func TestHTTPRoute(t *testing.T) {
	r := translate.ForProxy(world(t, "testdata/mesh"), sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "ratings.default.svc.cluster.local:9080")
	if len(vh.Routes) != 2 {
		t.Fatalf("want 2 routes, got %d", len(vh.Routes))
	}
	if got := vh.Routes[0].GetMatch().GetPathSeparatedPrefix(); got != "/v2" {
		t.Fatalf("first route matches %v", vh.Routes[0].GetMatch())
	}
	if h := vh.Routes[0].GetRequestHeadersToAdd(); len(h) != 1 || h[0].GetHeader().GetKey() != "x-ratings-api" {
		t.Fatalf("header filter: %v", h)
	}
	if vh.Routes[1].GetMatch().GetPrefix() != "/" {
		t.Fatalf("second route matches %v", vh.Routes[1].GetMatch())
	}
}

// Zero weights send nothing (Istio); consistentHash on a header reaches
// the route as a hash policy and the cluster as RING_HASH.
func TestWeightsAndHashing(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: reviews}
      weight: 0
    - destination: {host: ratings}
      weight: 100
`, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "ratings.default.svc.cluster.local:9080")
	if d := cmp.Diff([]wc{{"outbound|9080||ratings.default.svc.cluster.local", 1}}, weights(vh.Routes[0])); d != "" {
		t.Fatal(d)
	}
	if hp := vh.Routes[0].GetRoute().GetHashPolicy(); len(hp) != 1 || hp[0].GetHeader().GetHeaderName() != "x-user" {
		t.Fatalf("hash policy %v", hp)
	}
	if got := findCluster(r, "outbound|9080||ratings.default.svc.cluster.local").GetLbPolicy(); got != clusterv3.Cluster_RING_HASH {
		t.Fatalf("lb policy %v", got)
	}
}

// The proxy of a reviews pod gets an inbound chain to its app on the pod IP.
func TestInbound(t *testing.T) {
	r := translate.Local(world(t, "testdata/mesh"), sidecarProxy, nil)
	c := findCluster(r, "inbound|9080||")
	if c == nil {
		t.Fatal("no inbound cluster")
	}
	sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.10.0.11" || sa.GetPortValue() != 9080 {
		t.Fatalf("inbound endpoint %v", sa)
	}
	var in, out bool
	for _, l := range r.Listeners {
		in = in || l.Name == translate.VirtualInbound
		out = out || (l.Name == translate.VirtualOutbound && l.GetAddress().GetSocketAddress().GetAddress() == "127.10.0.11")
	}
	if !in || !out {
		t.Fatalf("listeners %v", r.Listeners)
	}
	// The reviews DestinationRule upgrades sidecar-to-sidecar traffic to
	// HTTP/2; the app behind its http port still gets HTTP/1.1 (Envoy's
	// default, so no protocol options), as in Istio.
	if o := c.GetTypedExtensionProtocolOptions(); len(o) != 0 {
		t.Fatalf("inbound cluster of an http port has protocol options %v, want none (HTTP/1.1)", o)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func itoa(n uint32) string {
	b, _ := json.Marshal(n)
	return string(b)
}
