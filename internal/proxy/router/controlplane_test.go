package router_test

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/proxy/router"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/translate"
)

// controlPlaneTable compiles what the control plane really sends the
// reviews-v1 sidecar for one route config, through the proxy's own wire
// decoder, so the router is tested against the translator's output rather
// than against our reading of it.
func controlPlaneTable(t *testing.T, name string) *router.Table {
	t.Helper()
	files, err := config.Load([]string{"../../translate/testdata/mesh"}, false)
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
	proxy := &translate.Proxy{ID: "sidecar~127.10.0.11~reviews-v1-0.default~default.svc.cluster.local", IP: "127.10.0.11",
		Pod: "reviews-v1-0", Namespace: "default", Labels: map[string]string{"app": "reviews", "version": "v1"}, InterceptionMode: "NONE"}
	res := translate.ForProxy(translate.NewWorld(st.Snapshot()), proxy, nil)
	for _, rc := range res.Routes {
		if rc.GetName() != name {
			continue
		}
		b, err := proto.Marshal(rc)
		if err != nil {
			t.Fatal(err)
		}
		decoded, err := xdsresource.DecodeRouteConfig(b)
		if err != nil {
			t.Fatalf("decode route config %s: %v", name, err)
		}
		tb, err := router.Compile(decoded)
		if err != nil {
			t.Fatalf("compile route config %s: %v", name, err)
		}
		return tb
	}
	t.Fatalf("no route config %q for the sidecar", name)
	return nil
}

const (
	reviewsV1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
	reviewsV2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
)

// TestReviewsVirtualService checks the reviews VirtualService end to end:
// user: test-user goes to v2, everyone else splits 90/10 between v1 and v2.
func TestReviewsVirtualService(t *testing.T) {
	tb := controlPlaneTable(t, "9080")
	for _, authority := range []string{"reviews", "reviews:9080", "reviews.default", "Reviews.Default.svc:9080", "reviews.default.svc.cluster.local:9080"} {
		vh, rt := tb.Match(&router.Request{Method: "GET", Authority: authority, Path: "/reviews/0", Header: http.Header{"User": {"test-user"}}})
		if rt == nil || vh.Name != "reviews.default.svc.cluster.local:9080" {
			t.Fatalf("%s: matched %v / %v", authority, vh, rt)
		}
		for rnd := range uint64(100) {
			if c := router.PickCluster(rt.Action, rnd); c.Name != reviewsV2 {
				t.Fatalf("%s: test-user went to %s", authority, c.Name)
			}
		}
	}

	r := &router.Request{Method: "GET", Authority: "reviews:9080", Path: "/reviews/0", Header: http.Header{"User": {"someone-else"}}}
	_, rt := tb.Match(r)
	if rt == nil {
		t.Fatal("no route for other users")
	}
	exact := map[string]int{}
	for rnd := range uint64(10000) {
		exact[router.PickCluster(rt.Action, rnd).Name]++
	}
	if d := cmp.Diff(map[string]int{reviewsV1: 9000, reviewsV2: 1000}, exact); d != "" {
		t.Errorf("rnd 0..9999 (-want +got):\n%s", d)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := map[string]int{}
	for range 10000 {
		random[router.PickCluster(rt.Action, rng.Uint64()).Name]++
	}
	if v2 := random[reviewsV2]; v2 < 900 || v2 > 1100 {
		t.Errorf("seeded random: v2 got %d of 10000, want 1000±100 (%v)", v2, random)
	}

	if n := testing.AllocsPerRun(100, func() { tb.Match(r) }); n != 0 {
		t.Errorf("Match on the control plane's config: %v allocations", n)
	}
}

func TestControlPlaneRoutes(t *testing.T) {
	cluster := func(tb *router.Table, r *router.Request) string {
		_, rt := tb.Match(r)
		if rt == nil || rt.Action == nil {
			return ""
		}
		return router.PickCluster(rt.Action, 0).Name
	}
	t9080, t7070 := controlPlaneTable(t, "9080"), controlPlaneTable(t, "7070")
	for _, tc := range []struct {
		tb   *router.Table
		req  router.Request
		want string
	}{
		// HTTPRoute PathPrefix /v2 is segment-wise.
		{t9080, router.Request{Authority: "ratings:9080", Path: "/v2/ratings/1"}, "outbound|9080||ratings.default.svc.cluster.local"},
		{t9080, router.Request{Authority: "ratings", Path: "/v2x"}, "outbound|9080||ratings.default.svc.cluster.local"},
		{t9080, router.Request{Authority: "reviews-v2.default:9080", Path: "/"}, "outbound|9080||reviews-v2.default.svc.cluster.local"},
		{t9080, router.Request{Authority: "unknown.example.com", Path: "/"}, "PassthroughCluster"},
		{t7070, router.Request{Authority: "greeter:7070", Path: "/helloworld.Greeter/SayHello", Header: http.Header{"X-Canary": {"yes"}}}, "outbound|7070|v2|greeter.default.svc.cluster.local"},
		{t7070, router.Request{Authority: "greeter:7070", Path: "/helloworld.Greeter/SayHello"}, "outbound|7070|v1|greeter.default.svc.cluster.local"},
	} {
		if got := cluster(tc.tb, &tc.req); got != tc.want {
			t.Errorf("%s%s: got %q, want %q", tc.req.Authority, tc.req.Path, got, tc.want)
		}
	}
	// The two ratings rules differ in the header they add: the /v2 one wins.
	_, rt := t9080.Match(&router.Request{Authority: "ratings", Path: "/v2"})
	if rt == nil || rt.Name != "ratings.default.rules[0]" {
		t.Errorf("ratings /v2 matched %v", rt)
	}
}
