package xds

import (
	"testing"
	"unsafe"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// The codec writes a response from the diff's shared bytes, without
// copying them, and the result decodes to the same message gRPC's own
// codec would send.
func TestCodecSendsSharedBytes(t *testing.T) {
	l := clusterLayer("a", "b", "c")
	d := l.diffFrom(nil)
	var sel selection
	sel.add(d, 0)
	sel.add(d, 2) // not adjacent: two runs
	var runs [][]byte
	var res []*discoverygrpc.Resource
	for _, p := range sel {
		runs = append(runs, d.span(p.from, p.to))
		res = append(res, d.resources[p.from:p.to]...)
	}
	resp := &discoverygrpc.DeltaDiscoveryResponse{
		SystemVersionInfo: "v1",
		TypeUrl:           typeURLs[0],
		Resources:         res,
		RemovedResources:  []string{"gone"},
		Nonce:             "n1",
	}
	msg, err := encode(resp, runs)
	if err != nil {
		t.Fatal(err)
	}
	out, err := codec{}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	shared := 0
	for _, b := range out {
		if unsafe.SliceData(b.ReadOnlyData()) == unsafe.SliceData(d.enc) || unsafe.SliceData(b.ReadOnlyData()) == unsafe.SliceData(d.span(2, 3)) {
			shared++
		}
	}
	if shared != 2 {
		t.Errorf("%d of the response's buffers alias the diff's bytes, want 2 (the resources)", shared)
	}
	got := &discoverygrpc.DeltaDiscoveryResponse{}
	if err := proto.Unmarshal(out.Materialize(), got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(resp, got, protocmp.Transform()); diff != "" {
		t.Fatalf("decoded (-want +got):\n%s", diff)
	}
	c := &clusterv3.Cluster{}
	if err := got.GetResources()[1].GetResource().UnmarshalTo(c); err != nil || c.GetName() != "c" {
		t.Fatalf("second resource: %v, %v", c, err)
	}

	// gRPC's own codec marshals the embedded message: the same content.
	std, err := encoding.GetCodecV2("proto").Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	defer std.Free()
	got2 := &discoverygrpc.DeltaDiscoveryResponse{}
	if err := proto.Unmarshal(std.Materialize(), got2); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(resp, got2, protocmp.Transform()); diff != "" {
		t.Fatalf("proto codec (-want +got):\n%s", diff)
	}
}
