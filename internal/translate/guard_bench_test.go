package translate_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/translate"
)

// guardScaleSnapshot is internal/xds's scale world (1,000 services of two
// ports with 10 WorkloadEntries each), with a DestinationRule of three
// subsets and a connection pool on every service when withDR is set.
func guardScaleSnapshot(tb testing.TB, withDR bool) *store.Snapshot {
	tb.Helper()
	var b bytes.Buffer
	for i := range 1000 {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: svc-%d, namespace: default}
spec:
  clusterIP: 10.96.%d.%d
  selector: {app: svc-%d}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: grpc, port: 9090}]
`, i, i/250, i%250+1, i)
		for j := range 10 {
			k := i*10 + j
			fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-%d-%d, namespace: default}
spec:
  address: 127.1.%d.%d
  labels: {app: svc-%d, version: v%d}
  ports: {http: 8080, grpc: 9090}
`, i, j, k/250, k%250+1, i, j%3)
		}
		if withDR {
			fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-%d, namespace: default}
spec:
  host: svc-%d
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 100, connectTimeout: 2s}, http: {http2MaxRequests: 1000, idleTimeout: 60s}}
  subsets:
  - {name: v0, labels: {version: v0}}
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
`, i, i)
		}
	}
	st := store.New(slog.New(slog.DiscardHandler))
	f := config.ParseFile("world.yaml", b.Bytes())
	if len(f.Errors) > 0 {
		tb.Fatalf("world rejected: %v", f.Errors[0])
	}
	st.ApplyFile(f)
	return st.Snapshot()
}

// BenchmarkGuardTranslate is what a push pays for translation on the
// scale world: a new World (every config or endpoint change makes one)
// and one scope's Shared resources, then one proxy's Local ones. The
// guard's verdicts live in the World, so a fresh World per iteration
// counts all of its decoding.
func BenchmarkGuardTranslate(b *testing.B) {
	proxy := &translate.Proxy{ID: "sidecar~127.1.0.1~pod-0.default~default.svc.cluster.local", IP: "127.1.0.1", Pod: "pod-0", Namespace: "default", InterceptionMode: "NONE"}
	log := slog.New(slog.DiscardHandler)
	for _, withDR := range []bool{false, true} {
		snap := guardScaleSnapshot(b, withDR)
		b.Run(fmt.Sprintf("dr=%v/WorldShared", withDR), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				translate.Shared(translate.NewWorld(snap), proxy, log)
			}
		})
		w := translate.NewWorld(snap)
		b.Run(fmt.Sprintf("dr=%v/Local", withDR), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				translate.Local(w, proxy, log)
			}
		})
	}
}
