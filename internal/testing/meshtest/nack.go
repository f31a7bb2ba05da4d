package meshtest

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// NACKClusters connects to the control plane at addr as node id, asks
// for clusters over delta ADS and rejects the first response with "cannot
// use this cluster", for tests of how a NACK is counted and shown (call
// Mesh.AllowNACKs first). The stream stays open until the returned
// function or the test's end closes it.
func NACKClusters(t testing.TB, addr, id string) (closeStream func()) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	closeAll := func() { cancel(); cc.Close() }
	t.Cleanup(closeAll)
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default"})
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, Node: &corev3.Node{Id: id, Metadata: md}}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "cannot use this cluster"}}); err != nil {
		t.Fatal(err)
	}
	return closeAll
}
