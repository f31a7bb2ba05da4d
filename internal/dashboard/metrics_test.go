package dashboard

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseProm(t *testing.T) {
	in := `# HELP istio_requests_total Total requests.
# TYPE istio_requests_total counter
istio_requests_total{reporter="destination",source_workload="a",path="x\"y\\z\n"} 12 1700000000000
go_goroutines 31

istio_request_duration_milliseconds_bucket{le="+Inf"} 4
`
	got, err := ParseProm(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{
		{Name: "istio_requests_total", Labels: map[string]string{"reporter": "destination", "source_workload": "a", "path": "x\"y\\z\n"}, Value: 12},
		{Name: "go_goroutines", Value: 31},
		{Name: "istio_request_duration_milliseconds_bucket", Labels: map[string]string{"le": "+Inf"}, Value: 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseProm (-want +got):\n%s", diff)
	}
	if _, err := ParseProm(strings.NewReader("istio_requests_total{a=\"b\" 1\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("unterminated labels: err = %v, want an error naming line 1", err)
	}
}

func TestQuantileInterpolatesAsPrometheus(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		q       float64
		buckets map[float64]float64
		want    float64
	}{
		// 10 requests, 4 at <=5, 8 at <=10: p50 rank 5 falls in (5,10],
		// 1 of that bucket's 4: 5 + 5*1/4.
		{"middle", 0.5, map[float64]float64{1: 0, 5: 4, 10: 8, 25: 10, inf: 10}, 6.25},
		// rank 9.9 in (10,25]: 10 + 15*1.9/2.
		{"p99", 0.99, map[float64]float64{1: 0, 5: 4, 10: 8, 25: 10, inf: 10}, 24.25},
		// The first bucket starts at 0.
		{"first bucket", 0.5, map[float64]float64{0.5: 2, 1: 2, inf: 2}, 0.25},
		// A rank in +Inf gives the highest finite bound.
		{"in +Inf", 0.99, map[float64]float64{1: 1, 5: 1, inf: 10}, 5},
		{"no data", 0.5, map[float64]float64{1: 0, inf: 0}, math.NaN()},
		{"no +Inf", 0.5, map[float64]float64{1: 3}, math.NaN()},
	} {
		got := Quantile(tc.q, tc.buckets)
		if math.IsNaN(tc.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Quantile(%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

// series writes one proxy's scrape in the contract's format.
func series(reporter string, ok200, fail503 int, le map[string]int) string {
	l := `reporter="` + reporter + `",source_workload="productpage",source_workload_namespace="default",destination_workload="reviews",destination_workload_namespace="default",destination_service_name="reviews",destination_service_namespace="default",request_protocol="http",connection_security_policy="mutual_tls"`
	var b strings.Builder
	b.WriteString("istio_requests_total{" + l + `,response_code="200"} ` + itoa(ok200) + "\n")
	b.WriteString("istio_requests_total{" + l + `,response_code="503"} ` + itoa(fail503) + "\n")
	for k, v := range le {
		b.WriteString("istio_request_duration_milliseconds_bucket{" + l + `,response_code="200",le="` + k + `"} ` + itoa(v) + "\n")
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

func scrapeAt(t *testing.T, at time.Time, text string) Scrape {
	t.Helper()
	s, err := ParseProm(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return Aggregate(at, s)
}

func TestWindowRatesSuccessAndQuantilesFromDeltas(t *testing.T) {
	t0 := time.Unix(1000, 0)
	scrapes := []Scrape{
		// Before the window: 1000 old requests, all slow; they must not
		// weigh on the window's quantiles.
		scrapeAt(t, t0, series("destination", 1000, 0, map[string]int{"5": 0, "10": 0, "1000": 1000, "+Inf": 1000})),
		scrapeAt(t, t0.Add(2*time.Second), series("destination", 1010, 0, map[string]int{"5": 4, "10": 8, "1000": 1010, "+Inf": 1010})),
		scrapeAt(t, t0.Add(4*time.Second), series("destination", 1018, 2, map[string]int{"5": 6, "10": 14, "1000": 1020, "+Inf": 1020})),
	}
	edges, secs := Window(scrapes)
	if secs != 4 {
		t.Fatalf("window spans %v s, want 4", secs)
	}
	if len(edges) != 1 {
		t.Fatalf("edges = %v, want one", edges)
	}
	for k, d := range edges {
		if k.Source != "productpage" || k.Dest != "reviews" || k.Reporter != "destination" {
			t.Errorf("edge key %+v", k)
		}
		s := d.stats(secs)
		// 20 requests in 4 s, 2 of them 503.
		if s.RPS != 5 || s.Requests != 20 || s.Success == nil || *s.Success != 0.9 || !s.MTLS {
			t.Errorf("stats = %+v (success %v), want 5 rps, 20 requests, 0.9 success, mTLS", s, deref(s.Success))
		}
		// Deltas: <=5: 6, <=10: 14, <=1000: 20. p50 rank 10 in (5,10]:
		// 5 + 5*(10-6)/8 = 7.5.
		if s.P50 == nil || *s.P50 != 7.5 {
			t.Errorf("p50 = %v, want 7.5", deref(s.P50))
		}
		// p99 rank 19.8 in (10,1000]: 10 + 990*5.8/6 = 967.
		if s.P99 == nil || math.Abs(*s.P99-967) > 1e-9 {
			t.Errorf("p99 = %v, want 967", deref(s.P99))
		}
	}
}

func TestWindowSurvivesAProxyRestart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	scrapes := []Scrape{
		scrapeAt(t, t0, series("destination", 100, 0, nil)),
		scrapeAt(t, t0.Add(2*time.Second), series("destination", 110, 0, nil)),
		// Restarted: counters from zero.
		scrapeAt(t, t0.Add(4*time.Second), series("destination", 6, 0, nil)),
	}
	edges, _ := Window(scrapes)
	for _, d := range edges {
		if d.requests != 16 {
			t.Errorf("requests = %v, want 16 (10 before the restart, 6 after)", d.requests)
		}
	}
}

// Both sidecars report each request; the graph counts it once, from the
// source's report, which also holds the requests that failed before
// reaching the destination, and takes mTLS from the destination's.
func TestGraphCountsEachRequestOnce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := map[EdgeKey]delta{}
	for _, r := range []struct {
		rep          string
		ok, failures int
	}{{"source", 27, 3}, {"destination", 27, 0}} {
		text := func(ok, failures int) string {
			return strings.ReplaceAll(series(r.rep, ok, failures, nil), `connection_security_policy="mutual_tls"`, map[string]string{
				"source": `connection_security_policy="unknown"`, "destination": `connection_security_policy="mutual_tls"`}[r.rep])
		}
		e, _ := Window([]Scrape{
			scrapeAt(t, t0, text(0, 0)),
			scrapeAt(t, t0.Add(10*time.Second), text(r.ok, r.failures)),
		})
		for k, v := range e {
			w[k] = v
		}
	}
	g := BuildGraph([]Pod{{Name: "reviews-1", Namespace: "default", Workload: "reviews"}}, w, 10)
	if len(g.Edges) != 1 || g.Edges[0].RPS != 3 || g.Edges[0].Success == nil || *g.Edges[0].Success != 0.9 || !g.Edges[0].MTLS {
		t.Fatalf("edges = %+v, want one at 3 rps (not 5.7: both sides report), 0.9 success (3 503s the destination never saw), mTLS", g.Edges)
	}
	var ids []string
	for _, n := range g.Nodes {
		ids = append(ids, n.ID)
	}
	if diff := cmp.Diff([]string{"default/productpage", "default/reviews"}, ids); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if g.Nodes[1].Inbound.RPS != 3 || g.Nodes[1].Pods != 1 {
		t.Errorf("reviews node = %+v, want 3 rps in and 1 pod", g.Nodes[1])
	}
	sv := BuildServices(w, 10)
	if len(sv) != 1 || sv[0].Name != "reviews" || sv[0].RPS != 3 || cmp.Diff([]string{"reviews"}, sv[0].Workloads) != "" {
		t.Errorf("services = %+v", sv)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// A request the source's sidecar aborted before picking an endpoint names
// no destination workload (as in Istio) but its service: it lands on the
// one workload serving that service, not on an "unknown" node.
func TestAbortedRequestsLandOnTheServicesWorkload(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := map[EdgeKey]delta{}
	for _, text := range []func(n int) string{
		func(n int) string { return series("source", n, 0, nil) },
		func(n int) string {
			return strings.ReplaceAll(series("source", 0, n/3, nil), `destination_workload="reviews"`, `destination_workload="unknown"`)
		},
	} {
		e, _ := Window([]Scrape{scrapeAt(t, t0, text(0)), scrapeAt(t, t0.Add(10*time.Second), text(15))})
		for k, v := range e {
			w[k] = v
		}
	}
	g := BuildGraph(nil, w, 10)
	if len(g.Edges) != 1 || g.Edges[0].Target != "default/reviews" || g.Edges[0].Requests != 20 || *g.Edges[0].Success != 0.75 {
		t.Fatalf("edges = %+v, want one to default/reviews with 20 requests at 0.75", g.Edges)
	}
	for _, n := range g.Nodes {
		if n.ID == "unknown" {
			t.Errorf("graph has an unknown node: %+v", g.Nodes)
		}
	}
}
