package grpcinterop

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// mesh is the shared harness's control plane (internal/testing/meshtest)
// on a temporary config folder, routing to the two versions of the
// greeter service; grpc-go's clients are this package's own (startClient).
type mesh struct {
	*meshtest.Mesh
	t       *testing.T
	clients int // client processes started, for unique node ids
}

// routingFile is the file that tests edit; the services live in another
// so that a broken edit can only ever concern routing.
const routingFile = "routing.yaml"

// meshYAML declares greeter in namespace default with two WorkloadEntries
// on loopback, and greeter-v2 selecting only the second. The entries map the port name to where each server really
// listens, so both versions share a Service port while binding random
// ports.
const meshYAML = `apiVersion: v1
kind: Service
metadata:
  name: greeter
  namespace: default
spec:
  selector:
    app: greeter
  ports:
  - name: grpc-greeter
    port: 7070
---
apiVersion: v1
kind: Service
metadata:
  name: greeter-v2
  namespace: default
spec:
  selector:
    app: greeter
    version: v2
  ports:
  - name: grpc-greeter
    port: 7071
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: greeter-v1
  namespace: default
spec:
  address: 127.0.0.1
  labels:
    app: greeter
    version: v1
  ports:
    grpc-greeter: %d
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: greeter-v2
  namespace: default
spec:
  address: 127.0.0.1
  labels:
    app: greeter
    version: v2
  ports:
    grpc-greeter: %d
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
  namespace: default
spec:
  host: greeter
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`

// startMesh starts both greeter versions and a control plane whose
// routing file holds routing ("" for none). Everything stops, and leaked
// goroutines are reported, when the test ends; so does any NACK.
func startMesh(t *testing.T, routing string) *mesh {
	t.Helper()
	leak.Check(t)

	p1 := startGreeter(t, "v1")
	p2 := startGreeter(t, "v2")

	opts := []meshtest.Option{
		// The push timing and rescan period that users get: these tests
		// hold grpc-go to a switch deadline under them.
		meshtest.WithControlPlane(func(o *controlplane.Options) {
			o.Debounce, o.MaxDelay, o.Resync = 0, 0, 0
		}),
	}
	if routing != "" {
		opts = append(opts, meshtest.WithFile(routingFile, routing))
	}
	return &mesh{Mesh: meshtest.New(t, fmt.Sprintf(meshYAML, p1, p2), opts...), t: t}
}

// bootstrap is grpc-go's bootstrap: a plaintext ADS server and a node
// that asks for proxyless resources. Each client process has a node id of
// its own so the control plane tracks them apart.
func bootstrap(addr, nodeID, namespace string) string {
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      addr,
			"channel_creds":   []any{map[string]string{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{
			"id": nodeID,
			"metadata": map[string]string{
				"GENERATOR": "grpc",
				"NAMESPACE": namespace,
			},
		},
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// setRouting replaces the routing file atomically and returns the moment
// just before it appeared, from which switch latency is measured. A plain
// rewrite could let the watcher read a half-written or empty file, which
// would be a different (valid, route-less) config.
func (m *mesh) setRouting(content string) time.Time {
	m.t.Helper()
	return m.Write(routingFile, content)
}

// waitLogAbove waits until the control plane has logged msg more than n
// times.
func (m *mesh) waitLogAbove(msg string, n int, timeout time.Duration) {
	m.t.Helper()
	meshtest.Eventually(m.t, timeout, func() string {
		if strings.Count(m.Log(), msg) <= n {
			return fmt.Sprintf("control plane did not log %q within %v", msg, timeout)
		}
		return ""
	})
}

// checkNoNACKs fails the test if grpc-go rejected anything we sent: a NACK
// means a translation that a real client cannot use. The mesh checks this
// again when the test ends.
func (m *mesh) checkNoNACKs() {
	m.t.Helper()
	m.CheckNoNACKs()
}

// greeter answers with the version that served the call, in the payload
// (server_id) where the client reads it.
type greeter struct {
	testgrpc.UnimplementedTestServiceServer
	version string
}

func (g *greeter) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: g.version}, nil
}

func startGreeter(t *testing.T, version string) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, &greeter{version: version})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().(*net.TCPAddr).Port
}
