package dashboard

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/telemetry/metrics"
)

// The dashboard reads what the sidecars write: requests recorded in the
// proxy's own metrics registry, exposed as its /stats/prometheus text,
// come out of ParseProm and Aggregate as the right edge and numbers.
func TestReadsTheProxysExposition(t *testing.T) {
	reg := metrics.New()
	var peers metrics.Peers
	src := peers.Own(metrics.Workload{Name: "sleep", Namespace: "default", App: "sleep"}, "spiffe://cluster.local/ns/default/sa/sleep")
	dst := peers.Own(metrics.Workload{Name: "ratings", Namespace: "default", App: "ratings"}, "spiffe://cluster.local/ns/default/sa/ratings")
	svc := reg.Service("ratings.default.svc.cluster.local")
	scrape := func(at time.Time) Scrape {
		var b bytes.Buffer
		if err := reg.WritePrometheus(&b); err != nil {
			t.Fatal(err)
		}
		s, err := ParseProm(&b)
		if err != nil {
			t.Fatal(err)
		}
		return Aggregate(at, s)
	}
	t0 := time.Unix(1000, 0)
	first := scrape(t0)
	record := func(code int, d time.Duration) {
		reg.RecordHTTP(&metrics.Request{Reporter: metrics.Destination, Source: src, Destination: dst, Service: svc,
			Protocol: metrics.HTTP, Security: metrics.MutualTLS, Code: code, GRPCStatus: -1, Duration: d})
	}
	for range 9 {
		record(200, 3*time.Millisecond)
	}
	record(503, 700*time.Millisecond)
	edges, secs := Window([]Scrape{first, scrape(t0.Add(5 * time.Second))})
	if len(edges) != 1 {
		t.Fatalf("edges = %+v, want one", edges)
	}
	for k, d := range edges {
		want := EdgeKey{Reporter: "destination", SourceNS: "default", Source: "sleep", DestNS: "default", Dest: "ratings",
			DestService: "ratings", DestServiceNS: "default", Protocol: "http"}
		if k != want {
			t.Errorf("edge = %+v, want %+v", k, want)
		}
		s := d.stats(secs)
		if s.RPS != 2 || s.Success == nil || *s.Success != 0.9 || !s.MTLS {
			t.Errorf("stats = %+v (success %v), want 2 rps, 0.9 success, mTLS", s, deref(s.Success))
		}
		// 9 of 10 in (1, 5] ms: p50 rank 5 is 1 + 4*5/9; p99 rank 9.9
		// falls in (500, 1000]: 500 + 500*0.9.
		if s.P50 == nil || *s.P50 < 3.22 || *s.P50 > 3.23 || s.P99 == nil || math.Abs(*s.P99-950) > 1e-9 {
			t.Errorf("p50, p99 = %v, %v; want 3.22.., 950", deref(s.P50), deref(s.P99))
		}
	}
}
