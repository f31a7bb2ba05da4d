package tracing

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// BenchmarkRequest is one proxied request's tracing work: extract, decide,
// inject for the next hop, end. The exporter discards, so the batcher's
// cost is counted but no network is.
func BenchmarkRequest(b *testing.B) {
	discard := exporterFunc(func(context.Context, []byte) error { return nil })
	for _, bc := range []struct {
		name string
		flag string
	}{{"sampled", "01"}, {"unsampled", "00"}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testCfg
			cfg.FlushInterval = 10 * time.Millisecond
			tr := New(cfg, discard)
			defer tr.Stop(context.Background())
			in := hdr("traceparent", "00-"+tid+"-"+sid+"-"+bc.flag, "x-request-id", "req-1", "user-agent", "bench")
			out := http.Header{}
			info := &EndInfo{Method: "GET", Authority: "reviews:9080", Path: "/reviews/1", Protocol: "HTTP/1.1",
				StatusCode: 200, GRPCStatus: -1, UpstreamCluster: "outbound|9080||reviews.default.svc.cluster.local",
				RequestID: "req-1", UserAgent: "bench", PeerAddress: "10.0.0.9:9080", RequestHeader: in}
			b.ReportAllocs()
			for b.Loop() {
				s := tr.StartSpan(Client, in, 1, t0)
				s.Inject(out)
				s.End(info, t0)
			}
		})
	}
}
