package sidecar

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/admin"
	"github.com/trellismesh/trellis/internal/proxy/xdsclient"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Each resource type is applied by its own typed method. Scenario: a
// proxy is given a cluster, its endpoints, a route table and the listener
// naming it; then a listener update it cannot serve. The refused update
// is an error (the client NACKs it with that text), counted as rejected,
// and what was applied before stays: the routing view, the listeners in
// the config dump and their version.
func TestTypedUpdatesKeepLastGood(t *testing.T) {
	p := New(Options{PodIP: netip.MustParseAddr("127.0.0.1"), DrainDuration: time.Millisecond})
	t.Cleanup(func() {
		for _, c := range p.clusters.Load().byName {
			c.Close()
		}
		p.bg.Wait()
	})
	const cluster = "outbound|9080||reviews.default.svc.cluster.local"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.applyClusters(xdsclient.Update[*xdsresource.Cluster]{Version: "1", Updated: []string{cluster},
		Resources: map[string]*xdsresource.Cluster{cluster: {Name: cluster, Type: xdsresource.ClusterEDS, ConnectTimeout: time.Second}}}))
	must(p.applyEndpoints(xdsclient.Update[*xdsresource.ClusterLoadAssignment]{Version: "1", Updated: []string{cluster},
		Resources: map[string]*xdsresource.ClusterLoadAssignment{cluster: {ClusterName: cluster, Localities: []xdsresource.LocalityEndpoints{{Weight: 1,
			Endpoints: []xdsresource.Endpoint{{Address: "127.0.0.10", Port: 9080, Weight: 1, Healthy: true}}}}}}}))
	must(p.applyRoutes(xdsclient.Update[*xdsresource.RouteConfig]{Version: "1", Updated: []string{"9080"},
		Resources: map[string]*xdsresource.RouteConfig{"9080": {Name: "9080", VirtualHosts: []xdsresource.VirtualHost{{Name: "reviews", Domains: []string{"reviews"},
			Routes: []xdsresource.Route{{Action: &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: cluster, Weight: 1}}, TotalWeight: 1}}}}}}}}))
	good := map[string]*xdsresource.Listener{"0.0.0.0_9080": {Name: "0.0.0.0_9080", Address: "0.0.0.0", Port: 9080, Direction: xdsresource.Outbound,
		FilterChains: []xdsresource.FilterChain{{HTTP: &xdsresource.HTTPConnectionManager{RDSName: "9080"}}}}}
	must(p.applyListeners(xdsclient.Update[*xdsresource.Listener]{Version: "1", Updated: []string{"0.0.0.0_9080"}, Resources: good}))

	if got := p.routing.Load().outboundHTTP[9080]; got != "9080" {
		t.Fatalf("port 9080 routes by %q, want 9080", got)
	}
	if d := cmp.Diff([]admin.Cluster{{Name: cluster, Endpoints: []admin.Endpoint{{Address: "127.0.0.10:9080", Healthy: true, Weight: 1}}}}, p.Clusters(),
		cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Counters" }, cmp.Ignore())); d != "" {
		t.Errorf("clusters (-want +got):\n%s", d)
	}
	before := p.routing.Load()

	bad := map[string]*xdsresource.Listener{virtualInbound: {Name: virtualInbound, Port: 15006,
		FilterChains: []xdsresource.FilterChain{{PrefixRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, TCP: &xdsresource.TCPProxy{Cluster: cluster}}}}}
	err := p.applyListeners(xdsclient.Update[*xdsresource.Listener]{Version: "2", Updated: []string{virtualInbound}, Resources: bad})
	if want := "listener virtualInbound: filter_chains[0].filter_chain_match.prefix_ranges: not supported on virtualInbound"; err == nil || err.Error() != want {
		t.Fatalf("applying a refused listener: %v, want %s", err, want)
	}
	if p.routing.Load() != before {
		t.Error("a refused listener update replaced the routing view")
	}
	if got, want := [2]uint64{p.updates.Load(), p.rejected.Load()}, [2]uint64{4, 1}; got != want {
		t.Errorf("updates applied, rejected = %v, want %v", got, want)
	}
	dump := p.ConfigDump().(map[string]typeDump)
	if l := dump["listeners"]; l.Version != "1" || !cmp.Equal(l.Resources, good) {
		t.Errorf("config dump listeners after the refusal: version %q, %v; want version 1 and the good listener", l.Version, l.Resources)
	}
	for _, key := range []string{"clusters", "endpoints", "routes"} {
		if v := dump[key].Version; v != "1" {
			t.Errorf("config dump %s version %q, want 1", key, v)
		}
	}
}
