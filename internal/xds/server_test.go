package xds

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/translate"
)

const meshYAML = `apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-1}
spec: {address: 127.0.0.20, labels: {app: ratings}}
`

func reviewsEntry(addr string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1}
spec: {address: %s, labels: {app: reviews, version: v1}}
`, addr)
}

type env struct {
	store *store.Store
	srv   *Server
	addr  string
}

// start serves the test mesh as the control plane does, with the xDS
// server's gRPC options.
func start(t *testing.T) *env {
	t.Helper()
	return startWith(t, ServerOptions()...)
}

func startWith(t *testing.T, opts ...grpc.ServerOption) *env {
	t.Helper()
	leak.Check(t)
	st := store.New(slog.New(slog.DiscardHandler))
	st.ApplyFile(config.ParseFile("mesh.yaml", []byte(meshYAML)))
	st.ApplyFile(config.ParseFile("reviews.yaml", []byte(reviewsEntry("127.0.0.10"))))
	srv := New(Options{Store: st, Log: slog.New(slog.DiscardHandler), Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(opts...)
	srv.Register(g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = g.Serve(lis); done <- struct{}{} }()
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		g.Stop()
		<-done
		<-done
	})
	return &env{store: st, srv: srv, addr: lis.Addr().String()}
}

func testNode(id string, generator string) *corev3.Node {
	md := map[string]any{"NAMESPACE": "default", "INTERCEPTION_MODE": "NONE"}
	if generator != "" {
		md["GENERATOR"] = generator
	}
	s, _ := structpb.NewStruct(md)
	return &corev3.Node{Id: id, Metadata: s}
}

func dial(t *testing.T, addr string) discoverygrpc.AggregatedDiscoveryServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return discoverygrpc.NewAggregatedDiscoveryServiceClient(cc)
}

// recvDelta waits for one delta response, or returns nil after d.
func recvDelta(t *testing.T, ch <-chan *discoverygrpc.DeltaDiscoveryResponse, d time.Duration) *discoverygrpc.DeltaDiscoveryResponse {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		return nil
	}
}

func deltaStream(t *testing.T, addr, nodeID string) (discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, <-chan *discoverygrpc.DeltaDiscoveryResponse) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := dial(t, addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *discoverygrpc.DeltaDiscoveryResponse, 16)
	go func() {
		defer close(ch)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			ch <- r
		}
	}()
	return st, ch
}

// Our proxies use delta xDS: after the initial state, an endpoint change
// must send only the changed ClusterLoadAssignment, nothing else.
func TestDeltaSendsOnlyWhatChanged(t *testing.T) {
	e := start(t)
	st, ch := deltaStream(t, e.addr, "")
	node := testNode("sidecar~127.0.0.5~sleep-0.default~default.svc.cluster.local", "")
	types := []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
	for i, typ := range types {
		req := &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]string{}
	for range types {
		r := recvDelta(t, ch, 10*time.Second)
		if r == nil {
			t.Fatalf("no initial response; have %v", got)
		}
		for _, res := range r.GetResources() {
			got[r.GetTypeUrl()] = append(got[r.GetTypeUrl()], res.GetName())
		}
		if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"outbound|9080||reviews.default.svc.cluster.local", "outbound|9080||ratings.default.svc.cluster.local"} {
		if !contains(got[resourcev3.EndpointType], n) {
			t.Fatalf("initial EDS lacks %s: %v", n, got[resourcev3.EndpointType])
		}
	}

	e.store.ApplyFile(config.ParseFile("reviews.yaml", []byte(reviewsEntry("127.0.0.11"))))
	r := recvDelta(t, ch, 5*time.Second)
	if r == nil {
		t.Fatal("no push within 5s of an endpoint change")
	}
	if r.GetTypeUrl() != resourcev3.EndpointType {
		t.Fatalf("endpoint change pushed %s, want only EDS", r.GetTypeUrl())
	}
	var names []string
	for _, res := range r.GetResources() {
		names = append(names, res.GetName())
		var cla endpointv3.ClusterLoadAssignment
		if err := res.GetResource().UnmarshalTo(&cla); err != nil {
			t.Fatal(err)
		}
		addr := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
		if addr != "127.0.0.11" {
			t.Fatalf("pushed endpoint %s, want 127.0.0.11", addr)
		}
	}
	if d := cmp.Diff([]string{"outbound|9080||reviews.default.svc.cluster.local"}, names); d != "" {
		t.Fatalf("changed resources (-want +got):\n%s", d)
	}
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if extra := recvDelta(t, ch, 300*time.Millisecond); extra != nil {
		t.Fatalf("unexpected further push of %s", extra.GetTypeUrl())
	}
	waitFor(t, func() bool {
		s := e.srv.Status()
		return len(s) == 1 && s[0].Synced
	}, "proxy to show as synced")
	// trellis up waits on these two to say "mesh ready": the proxy is in
	// sync with the store version that holds the new endpoint.
	want := e.store.Snapshot().Version
	if got := e.srv.PushedVersion(); got != want {
		t.Fatalf("PushedVersion = %d, want the store's %d", got, want)
	}
	if got := e.srv.Status()[0].Version; got != want {
		t.Fatalf("synced proxy's Version = %d, want the store's %d", got, want)
	}
}

// A NACK is logged and counted; the same config is not sent again (no
// loop), and the next real change still arrives.
func TestNACKIsNotRetried(t *testing.T) {
	for _, mode := range []string{"sotw", "delta"} {
		t.Run(mode, func(t *testing.T) {
			e := start(t)
			node := testNode("sidecar~127.0.0.6~sleep-1.default~default.svc.cluster.local", "")
			nack := &status.Status{Code: 3, Message: "cluster outbound|9080||reviews: rejected for the test"}
			var next func(d time.Duration) (typ, nonce string, ok bool)
			var sendNACK func(nonce string)
			var sendACK func(nonce string)
			switch mode {
			case "sotw":
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				st, err := dial(t, e.addr).StreamAggregatedResources(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ch := make(chan *discoverygrpc.DiscoveryResponse, 16)
				go func() {
					defer close(ch)
					for {
						r, err := st.Recv()
						if err != nil {
							return
						}
						ch <- r
					}
				}()
				if err := st.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
					t.Fatal(err)
				}
				var lastGood string
				var lastVersion string
				next = func(d time.Duration) (string, string, bool) {
					select {
					case r := <-ch:
						lastVersion = r.GetVersionInfo()
						return r.GetTypeUrl(), r.GetNonce(), true
					case <-time.After(d):
						return "", "", false
					}
				}
				sendNACK = func(nonce string) {
					_ = st.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: lastGood, ResponseNonce: nonce, ErrorDetail: nack})
				}
				sendACK = func(nonce string) {
					lastGood = lastVersion
					_ = st.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: lastGood, ResponseNonce: nonce})
				}
			case "delta":
				st, ch := deltaStream(t, e.addr, "")
				if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
					t.Fatal(err)
				}
				next = func(d time.Duration) (string, string, bool) {
					r := recvDelta(t, ch, d)
					if r == nil {
						return "", "", false
					}
					return r.GetTypeUrl(), r.GetNonce(), true
				}
				sendNACK = func(nonce string) {
					_ = st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: nonce, ErrorDetail: nack})
				}
				sendACK = func(nonce string) {
					_ = st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: nonce})
				}
			}

			_, nonce, ok := next(10 * time.Second)
			if !ok {
				t.Fatal("no initial CDS response")
			}
			sendNACK(nonce)
			if typ, _, again := next(time.Second); again {
				t.Fatalf("server re-sent %s after a NACK", typ)
			}
			waitFor(t, func() bool { return e.srv.NACKs() == 1 }, "the NACK to be counted")
			if s := e.srv.Status(); len(s) != 1 || s[0].NACKs != 1 || s[0].LastNACK != nack.Message || s[0].Synced {
				t.Fatalf("status after NACK: %+v", s)
			}

			// A new service is a real change: it must still arrive.
			e.store.ApplyFile(config.ParseFile("more.yaml", []byte(`apiVersion: v1
kind: Service
metadata: {name: details}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080}]
`)))
			_, nonce, ok = next(5 * time.Second)
			if !ok {
				t.Fatal("no push after a change that followed a NACK")
			}
			sendACK(nonce)
			waitFor(t, func() bool { s := e.srv.Status(); return len(s) == 1 && s[0].Synced }, "the ACK to be recorded")
		})
	}
}

// A node without a namespace cannot be scoped; the stream is refused with
// a message that says what to send.
func TestBadNodeRefused(t *testing.T) {
	e := start(t)
	st, ch := deltaStream(t, e.addr, "")
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "just-a-name"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if r := recvDelta(t, ch, 2*time.Second); r != nil {
		t.Fatalf("got a response for a node without namespace")
	}
	_, err := st.Recv()
	if err == nil {
		t.Fatal("stream not closed")
	}
}

func TestParseNode(t *testing.T) {
	labels, _ := structpb.NewStruct(map[string]any{"app": "reviews", "version": "v2"})
	md, _ := structpb.NewStruct(map[string]any{"SERVICE_ACCOUNT": "bookinfo-reviews", "INTERCEPTION_MODE": "NONE"})
	md.Fields["LABELS"] = structpb.NewStructValue(labels)
	p, err := ParseNode(&corev3.Node{Id: NodeID("127.10.0.3", "reviews-v2-0", "shop"), Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %s %s %s %s %v", p.IP, p.Pod, p.Namespace, p.ServiceAccount, p.InterceptionMode, p.Labels)
	if want := "127.10.0.3 reviews-v2-0 shop bookinfo-reviews NONE map[app:reviews version:v2]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []*corev3.Node{nil, {Id: "x"}, {Id: NodeID("1.2.3.4", "p", "ns"), Metadata: mustStruct(map[string]any{"GENERATOR": "envoy-ng"})}} {
		if _, err := ParseNode(bad); err == nil {
			t.Errorf("ParseNode(%v) accepted", bad)
		}
	}
}

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

func contains(list []string, s string) bool {
	sort.Strings(list)
	i := sort.SearchStrings(list, s)
	return i < len(list) && list[i] == s
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deltaRequestAll subscribes to every type and returns the initial
// responses by type, ACKing each.
func subscribeAll(t *testing.T, st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, ch <-chan *discoverygrpc.DeltaDiscoveryResponse, node *corev3.Node, reqs ...*discoverygrpc.DeltaDiscoveryRequest) map[string][]*discoverygrpc.DeltaDiscoveryResponse {
	t.Helper()
	for i, req := range reqs {
		if i == 0 {
			req.Node = node
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]*discoverygrpc.DeltaDiscoveryResponse{}
	for {
		r := recvDelta(t, ch, time.Second)
		if r == nil {
			return got
		}
		got[r.GetTypeUrl()] = append(got[r.GetTypeUrl()], r)
		if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
}

func names(rs []*discoverygrpc.DeltaDiscoveryResponse) (res, removed []string) {
	for _, r := range rs {
		for _, x := range r.GetResources() {
			res = append(res, x.GetName())
		}
		removed = append(removed, r.GetRemovedResources()...)
	}
	sort.Strings(res)
	sort.Strings(removed)
	return res, removed
}

// Envoy-style explicit subscriptions: only the named resources come, a name
// that does not exist is reported removed (so the client stops waiting),
// and a later subscription is answered at once.
func TestDeltaExplicitSubscriptions(t *testing.T) {
	e := start(t)
	st, ch := deltaStream(t, e.addr, "")
	node := testNode("sidecar~127.0.0.7~sleep-2.default~default.svc.cluster.local", "")
	got := subscribeAll(t, st, ch, node, &discoverygrpc.DeltaDiscoveryRequest{
		TypeUrl:                resourcev3.EndpointType,
		ResourceNamesSubscribe: []string{"outbound|9080||reviews.default.svc.cluster.local", "outbound|9080||nope.default.svc.cluster.local"},
	})
	res, removed := names(got[resourcev3.EndpointType])
	if d := cmp.Diff([]string{"outbound|9080||reviews.default.svc.cluster.local"}, res); d != "" {
		t.Fatalf("resources (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"outbound|9080||nope.default.svc.cluster.local"}, removed); d != "" {
		t.Fatalf("removed (-want +got):\n%s", d)
	}
	got = subscribeAll(t, st, ch, nil, &discoverygrpc.DeltaDiscoveryRequest{
		TypeUrl:                resourcev3.EndpointType,
		ResourceNamesSubscribe: []string{"outbound|9080||ratings.default.svc.cluster.local"},
	})
	res, _ = names(got[resourcev3.EndpointType])
	if d := cmp.Diff([]string{"outbound|9080||ratings.default.svc.cluster.local"}, res); d != "" {
		t.Fatalf("after subscribing ratings (-want +got):\n%s", d)
	}
	// A change to a resource the client did not subscribe to is not sent.
	e.store.ApplyFile(config.ParseFile("ratings.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-2}
spec: {address: 127.0.0.21, labels: {app: ratings}}
`)))
	r := recvDelta(t, ch, 3*time.Second)
	if r == nil {
		t.Fatal("no push for a subscribed resource")
	}
	res, _ = names([]*discoverygrpc.DeltaDiscoveryResponse{r})
	if d := cmp.Diff([]string{"outbound|9080||ratings.default.svc.cluster.local"}, res); d != "" {
		t.Fatalf("pushed (-want +got):\n%s", d)
	}
}

// After a reconnect the client says what it has; only what differs is sent,
// and what no longer exists is reported removed.
func TestDeltaReconnectWithKnownVersions(t *testing.T) {
	e := start(t)
	node := testNode("sidecar~127.0.0.8~sleep-3.default~default.svc.cluster.local", "")
	st, ch := deltaStream(t, e.addr, "")
	first := subscribeAll(t, st, ch, node, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType})
	known := map[string]string{"outbound|9080||gone.default.svc.cluster.local": "v0"}
	for _, r := range first[resourcev3.EndpointType] {
		for _, x := range r.GetResources() {
			known[x.GetName()] = x.GetVersion()
		}
	}
	e.store.ApplyFile(config.ParseFile("reviews.yaml", []byte(reviewsEntry("127.0.0.12"))))
	waitFor(t, func() bool { return e.srv.Pushes() > 0 }, "a push")

	st2, ch2 := deltaStream(t, e.addr, "")
	again := subscribeAll(t, st2, ch2, node, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, InitialResourceVersions: known})
	res, removed := names(again[resourcev3.EndpointType])
	if d := cmp.Diff([]string{"outbound|9080||reviews.default.svc.cluster.local"}, res); d != "" {
		t.Fatalf("resent (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"outbound|9080||gone.default.svc.cluster.local"}, removed); d != "" {
		t.Fatalf("removed (-want +got):\n%s", d)
	}
}

// A state larger than one response's budget is split so that no message
// exceeds what grpc-go clients accept by default.
func TestDeltaLargeStateIsSplit(t *testing.T) {
	old := maxResponseBytes
	maxResponseBytes = 200
	defer func() { maxResponseBytes = old }()
	e := start(t)
	st, ch := deltaStream(t, e.addr, "")
	node := testNode("sidecar~127.0.0.9~sleep-4.default~default.svc.cluster.local", "")
	got := subscribeAll(t, st, ch, node, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	rs := got[resourcev3.ClusterType]
	if len(rs) < 2 {
		t.Fatalf("state came in %d response(s), want several", len(rs))
	}
	res, _ := names(rs)
	for _, n := range []string{"outbound|9080||reviews.default.svc.cluster.local", "outbound|9080||ratings.default.svc.cluster.local", "PassthroughCluster"} {
		if !contains(res, n) {
			t.Fatalf("split state lacks %s: %v", n, res)
		}
	}
}

// Without ServerOptions (gRPC's own codec), delta clients get the same
// resources, marshalled per stream instead of shared.
func TestDeltaSameWithoutCodec(t *testing.T) {
	node := testNode("sidecar~127.0.0.7~sleep-2.default~default.svc.cluster.local", "")
	state := func(e *env) map[string]any {
		st, ch := deltaStream(t, e.addr, "")
		var reqs []*discoverygrpc.DeltaDiscoveryRequest
		for _, typ := range typeURLs {
			reqs = append(reqs, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: typ})
		}
		got := map[string]any{}
		for typ, rs := range subscribeAll(t, st, ch, node, reqs...) {
			for _, r := range rs {
				for _, x := range r.GetResources() {
					// Compared decoded: the packed bytes of a message with
					// maps differ between marshals, the message does not.
					m, err := x.GetResource().UnmarshalNew()
					if err != nil {
						t.Fatal(err)
					}
					got[typ+" "+x.GetName()] = []any{x.GetVersion(), m}
				}
			}
		}
		return got
	}
	with, without := state(start(t)), state(startWith(t))
	if len(with) == 0 {
		t.Fatal("no resources")
	}
	if d := cmp.Diff(with, without, protocmp.Transform()); d != "" {
		t.Fatalf("with codec (-) vs without (+):\n%s", d)
	}
}

// Proxies of one scope that connect while its translation runs wait for
// it rather than each translating the whole mesh (tens of MB of garbage
// each in a large mesh).
func TestScopeTranslatedOnceForConcurrentAttaches(t *testing.T) {
	e := start(t)
	var calls atomic.Int32
	orig := translateShared
	translateShared = func(w *translate.World, p *translate.Proxy, log *slog.Logger) *translate.Resources {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond) // let the other attaches arrive meanwhile
		return orig(w, p, log)
	}
	defer func() { translateShared = orig }()

	w, gen := e.srv.scopes.current()
	gen++ // a generation no scope has yet
	var wg sync.WaitGroup
	for i := range 8 {
		p, err := ParseNode(testNode(fmt.Sprintf("sidecar~127.0.0.%d~sleep-%d.default~default.svc.cluster.local", 20+i, i), ""))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { e.srv.scopes.shared(w, gen, p) })
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("scope translated %d times for 8 concurrent proxies, want once", n)
	}
}
