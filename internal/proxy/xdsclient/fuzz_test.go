package xdsclient

import (
	"context"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// capture reads the raw initial responses of the real control plane.
func capture(tb testing.TB) [][]byte {
	tb.Helper()
	cp := startCP(tb, meshDir(tb), listen(tb, "tcp", "127.0.0.1:0"))
	defer cp.Stop()
	tgt, err := parseServer(cp.Addr.String())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := openStream(ctx, tgt, nil, 64<<20)
	defer st.close()
	types := []string{xdsresource.ClusterType, xdsresource.EndpointType, xdsresource.ListenerType, xdsresource.RouteType}
	for i, typ := range types {
		req := &deltaRequest{TypeURL: typ, Subscribe: []string{"*"}}
		if i == 0 {
			req.Node = &testNode
		}
		if err := st.send(req.marshal()); err != nil {
			tb.Fatal(err)
		}
	}
	var out [][]byte
	for len(out) < len(types) {
		select {
		case m := <-st.msgs:
			out = append(out, m)
		case <-st.done:
			tb.Fatalf("stream ended: %v", st.err)
		}
	}
	return out
}

// The response decoder reads untrusted bytes: it must never panic, and
// whatever the generated decoder accepts it must read the same way.
func FuzzUnmarshalResponse(f *testing.F) {
	for _, m := range capture(f) {
		f.Add(m)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := unmarshalResponse(b)
		var ref discoverygrpc.DeltaDiscoveryResponse
		if proto.Unmarshal(b, &ref) != nil {
			return // e.g. invalid UTF-8, which we do not check
		}
		if err != nil {
			t.Fatalf("generated decoder accepts what ours refuses: %v", err)
		}
		want := &deltaResponse{
			SystemVersionInfo: ref.GetSystemVersionInfo(),
			TypeURL:           ref.GetTypeUrl(),
			RemovedResources:  ref.GetRemovedResources(),
			Nonce:             ref.GetNonce(),
		}
		for _, r := range ref.GetResources() {
			want.Resources = append(want.Resources, wireResource{
				Name: r.GetName(), Version: r.GetVersion(),
				TypeURL: r.GetResource().GetTypeUrl(), Value: r.GetResource().GetValue(), HasValue: r.GetResource() != nil,
			})
		}
		if d := cmp.Diff(want, got, cmp.Comparer(func(a, b []byte) bool { return string(a) == string(b) })); d != "" {
			t.Fatalf("decoders disagree (-generated +ours):\n%s", d)
		}
	})
}
