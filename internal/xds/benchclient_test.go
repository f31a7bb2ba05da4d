package xds_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellismesh/trellis/internal/xds"
)

// benchTracker counts clients that have seen a wanted address in the
// tracked cluster's ClusterLoadAssignment (and ACKed it), so the scale
// benchmark can tell when a change has reached every client.
type benchTracker struct {
	cluster string // the ClusterLoadAssignment every client watches

	mu      sync.Mutex
	want    string
	left    int
	done    chan struct{}
	doneAt  time.Time
	counted map[*benchClient]string // client -> the want it last counted for
}

func newBenchTracker(cluster string) *benchTracker {
	return &benchTracker{cluster: cluster, counted: map[*benchClient]string{}}
}

// expect arms the tracker for a new round: the returned channel closes
// once n clients have reported a CLA that contains addr. Arm it before
// the edit, so no report can slip between edit and arming.
func (t *benchTracker) expect(addr string, n int) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.want, t.left, t.done = addr, n, make(chan struct{})
	if n == 0 {
		close(t.done)
	}
	return t.done
}

// finished returns when the last client of the current round reported.
func (t *benchTracker) finished() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.doneAt
}

// pending is how many clients the current round still waits for.
func (t *benchTracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.left
}

// report counts c for the current round if addrs holds the wanted
// address, and says whether c is current.
func (t *benchTracker) report(c *benchClient, addrs []string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counted[c] == t.want {
		return true
	}
	if !slices.Contains(addrs, t.want) {
		return false
	}
	t.counted[c] = t.want
	t.left--
	if t.left == 0 {
		t.doneAt = time.Now()
		close(t.done)
	}
	return true
}

// benchClient is a minimal delta ADS client shaped like a sidecar:
// wildcard CDS and LDS, EDS either for every outbound cluster it learns (as
// Envoy does) or wildcard (as trellis-proxy's xdsclient does), wildcard
// RDS, and an ACK for every response. It keeps no
// resources, so the memory the benchmark measures is the control plane's
// plus the transport, not a client-side copy of the config; only the
// tracked CLA is decoded.
type benchClient struct {
	id      string
	tracker *benchTracker
	conn    *grpc.ClientConn
	stream  discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // why the receive loop ended early; read after done
	// synced closes when the client first holds a complete config.
	synced chan struct{}

	// Owned by the receive loop.
	seen     map[string]bool
	rdsAsked bool
	// wildcardEDS subscribes to every ClusterLoadAssignment up front, as
	// trellis-proxy does, instead of by name after each CDS response.
	wildcardEDS bool
	isSynced    bool
	claAddrs    []string
}

// benchNode is a sidecar node as Trellis's proxies announce themselves in
// explicit (local) mode.
func benchNode(ip, pod string) *corev3.Node {
	return &corev3.Node{
		Id: xds.NodeID(ip, pod, "default"),
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			xds.MetaNamespace:        structpb.NewStringValue("default"),
			xds.MetaInterceptionMode: structpb.NewStringValue("NONE"),
		}},
	}
}

// dialBenchClient opens its own TCP connection (one per client, like real
// sidecars) and starts the CDS and LDS subscriptions (and EDS, when
// wildcardEDS).
func dialBenchClient(addr string, node *corev3.Node, tr *benchTracker, wildcardEDS bool) (*benchClient, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The EDS response of a thousand services is a few MB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	c := &benchClient{id: node.GetId(), tracker: tr, conn: conn, stream: stream, cancel: cancel, done: make(chan struct{}), synced: make(chan struct{}), seen: map[string]bool{}, wildcardEDS: wildcardEDS}
	types := []string{resourcev3.ClusterType, resourcev3.ListenerType}
	if wildcardEDS {
		types = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType}
	}
	for _, typ := range types {
		if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
			cancel()
			conn.Close()
			return nil, err
		}
	}
	go c.loop()
	return c, nil
}

func (c *benchClient) loop() {
	defer close(c.done)
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
				c.err = fmt.Errorf("%s: %w", c.id, err)
			}
			return
		}
		if err := c.handle(resp); err != nil {
			c.err = fmt.Errorf("%s: %w", c.id, err)
			c.cancel()
			return
		}
	}
}

func (c *benchClient) handle(resp *discoverygrpc.DeltaDiscoveryResponse) error {
	var follow *discoverygrpc.DeltaDiscoveryRequest
	switch resp.GetTypeUrl() {
	case resourcev3.ClusterType:
		// A delta CDS response holds only new or changed clusters, and
		// subscribing to a name twice is harmless, so the client keeps no
		// set of names (it would count as control-plane memory here).
		var names []string
		for _, r := range resp.GetResources() {
			if n := r.GetName(); strings.HasPrefix(n, "outbound|") {
				names = append(names, n)
			}
		}
		if len(names) > 0 && !c.wildcardEDS {
			follow = &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names}
		}
	case resourcev3.ListenerType:
		if !c.rdsAsked {
			c.rdsAsked = true
			follow = &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType}
		}
	case resourcev3.EndpointType:
		for _, r := range resp.GetResources() {
			if r.GetName() != c.tracker.cluster {
				continue
			}
			cla := &endpointv3.ClusterLoadAssignment{}
			if err := proto.Unmarshal(r.GetResource().GetValue(), cla); err != nil {
				return fmt.Errorf("cannot decode %s: %w", r.GetName(), err)
			}
			c.claAddrs = c.claAddrs[:0]
			for _, loc := range cla.GetEndpoints() {
				for _, ep := range loc.GetLbEndpoints() {
					c.claAddrs = append(c.claAddrs, ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
				}
			}
		}
	}
	c.seen[resp.GetTypeUrl()] = true
	if err := c.stream.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
		return fmt.Errorf("cannot ACK %s: %w", resp.GetTypeUrl(), err)
	}
	if follow != nil {
		if err := c.stream.Send(follow); err != nil {
			return fmt.Errorf("cannot subscribe to %s: %w", follow.GetTypeUrl(), err)
		}
	}
	// Report only after the ACK left, and only once the client holds every
	// type, so "converged" means a complete, acknowledged config.
	if len(c.seen) == 4 && c.tracker.report(c, c.claAddrs) && !c.isSynced {
		c.isSynced = true
		close(c.synced)
	}
	return nil
}

// Close ends the stream and the connection and waits for the receive
// loop; it returns the error that ended the loop early, if any.
func (c *benchClient) Close() error {
	c.cancel()
	if c.conn != nil {
		c.conn.Close()
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: receive loop did not stop", c.id)
	}
	return c.err
}
