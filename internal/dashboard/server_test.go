package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeAdmin is a sidecar's admin endpoint on a Unix socket whose
// /stats/prometheus the test sets.
type fakeAdmin struct {
	mu    sync.Mutex
	stats string
}

func (f *fakeAdmin) set(s string) { f.mu.Lock(); f.stats = s; f.mu.Unlock() }

func startFakeAdmin(t *testing.T, socket string) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "LIVE\n") })
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"listeners":{"version":"7","resources":{}},"clusters":{"version":"9","resources":null}}`)
	})
	mux.HandleFunc("GET /stats/prometheus", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		io.WriteString(w, f.stats)
	})
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

type fakeSource struct{ pods []Pod }

func (f fakeSource) Pods() []Pod { return f.pods }

func getAPI(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestAPIsFromFakeSidecars(t *testing.T) {
	dir, err := os.MkdirTemp("", "dash")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	reviewsSock, ppSock := filepath.Join(dir, "r.sock"), filepath.Join(dir, "p.sock")
	reviews := startFakeAdmin(t, reviewsSock)
	startFakeAdmin(t, ppSock).set("go_goroutines 3\n")
	logPath := filepath.Join(dir, "trellis-proxy.log")
	logLines := `time=2026-01-01T00:00:00Z level=INFO msg="proxy started"
{"start_time":"2026-01-01T00:00:01.000Z","method":"GET","path":"/reviews/0","protocol":"HTTP/1.1","response_code":200,"response_flags":"-","duration":3,"authority":"reviews:9080","upstream_cluster":"inbound|9080||","direction":"inbound"}
{"time":"2026-01-01T00:00:01Z","level":"INFO","msg":"a JSON log line that is not a request"}
{"start_time":"2026-01-01T00:00:02.000Z","method":"GET","path":"/reviews/1","protocol":"HTTP/1.1","response_code":503,"response_flags":"UF","duration":1,"authority":"reviews:9080","upstream_cluster":"inbound|9080||","direction":"inbound"}
`
	if err := os.WriteFile(logPath, []byte(logLines), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fakeSource{pods: []Pod{
		{Name: "productpage-1", Namespace: "default", Workload: "productpage", AdminSocket: ppSock, Connected: true, Synced: true},
		{Name: "reviews-1", Namespace: "default", Workload: "reviews", AdminSocket: reviewsSock, Connected: true, Synced: false, NACKs: 1, LastNACK: "bad route",
			ProxyLog: logPath, Policies: []string{"PeerAuthentication istio-system/default (STRICT)"}},
	}}
	// A long interval: the test drives the scrapes itself.
	s, err := Start(Options{Source: src, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// 10 then 30 requests, 2 s apart by the scrape clock.
	reviews.set(series("destination", 10, 0, map[string]int{"5": 10, "10": 10, "+Inf": 10}))
	s.ScrapeOnce(context.Background())
	reviews.set(series("destination", 27, 3, map[string]int{"5": 20, "10": 30, "+Inf": 30}))
	// The window is measured by scrape time: make the second scrape
	// come later without sleeping by backdating the first.
	s.mu.Lock()
	for k, ring := range s.scrapes {
		for i := range ring {
			ring[i].At = ring[i].At.Add(-2 * time.Second)
		}
		s.scrapes[k] = ring
	}
	s.mu.Unlock()
	s.ScrapeOnce(context.Background())

	var g Graph
	getAPI(t, s.URL()+"api/graph", &g)
	if len(g.Edges) != 1 {
		t.Fatalf("graph edges = %+v, want productpage -> reviews", g.Edges)
	}
	e := g.Edges[0]
	if e.Source != "default/productpage" || e.Target != "default/reviews" || !e.MTLS || e.Requests != 20 || e.Success == nil || *e.Success != 0.85 {
		t.Errorf("edge = %+v (success %v), want default/productpage -> default/reviews, mTLS, 20 requests at 0.85", e, deref(e.Success))
	}
	if e.RPS < 9 || e.RPS > 11 {
		t.Errorf("edge rps = %v, want about 10 (20 requests in about 2 s)", e.RPS)
	}
	// Bucket deltas: <=5: 10, <=10: 20. p50 rank 10 -> 5.
	if e.P50 == nil || *e.P50 != 5 {
		t.Errorf("p50 = %v, want 5", deref(e.P50))
	}

	var sv struct{ Services []Service }
	getAPI(t, s.URL()+"api/services", &sv)
	if len(sv.Services) != 1 || sv.Services[0].Name != "reviews" || sv.Services[0].Requests != 20 {
		t.Errorf("services = %+v", sv.Services)
	}

	var px struct{ Proxies []ProxyInfo }
	getAPI(t, s.URL()+"api/proxies", &px)
	if len(px.Proxies) != 2 {
		t.Fatalf("proxies = %+v", px.Proxies)
	}
	r := px.Proxies[1]
	if r.Pod != "reviews-1" || !r.Ready || r.Synced || r.NACKs != 1 || r.Error != "" ||
		cmp.Diff(map[string]string{"listeners": "7", "clusters": "9"}, r.Versions) != "" {
		t.Errorf("reviews proxy = %+v", r)
	}

	var po struct{ Workloads []WorkloadPolicies }
	getAPI(t, s.URL()+"api/policies", &po)
	want := []WorkloadPolicies{
		{Namespace: "default", Workload: "productpage", Policies: []string{}},
		{Namespace: "default", Workload: "reviews", Policies: []string{"PeerAuthentication istio-system/default (STRICT)"}},
	}
	if diff := cmp.Diff(want, po.Workloads); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}

	var rq struct{ Requests []Request }
	getAPI(t, s.URL()+"api/requests", &rq)
	var got []string
	for _, r := range rq.Requests {
		got = append(got, fmt.Sprintf("%s %s %s %d %s", r.Pod, r.Method, r.Path, r.ResponseCode, r.ResponseFlags))
	}
	if diff := cmp.Diff([]string{"reviews-1 GET /reviews/1 503 UF", "reviews-1 GET /reviews/0 200 -"}, got); diff != "" {
		t.Errorf("requests, newest first (-want +got):\n%s", diff)
	}

	resp, err := http.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `<svg id="graph"`) {
		t.Errorf("page does not hold the graph: %.200s", b)
	}
}

func TestCloseStopsServing(t *testing.T) {
	s, err := Start(Options{Source: fakeSource{}, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	url := s.URL()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url + "api/graph"); err == nil {
		t.Errorf("dashboard still answers after Close")
	}
}

// Requests a sidecar served before the dashboard first scraped it count:
// its counters started at zero when its pod was created.
func TestRequestsBeforeTheFirstScrapeCount(t *testing.T) {
	dir, err := os.MkdirTemp("", "dash")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "r.sock")
	startFakeAdmin(t, sock).set(series("destination", 10, 0, map[string]int{"5": 10, "+Inf": 10}))
	src := fakeSource{pods: []Pod{{Name: "reviews-1", Namespace: "default", Workload: "reviews", AdminSocket: sock, Created: time.Now().Add(-2 * time.Second)}}}
	s, err := Start(Options{Source: src, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.ScrapeOnce(context.Background())
	var g Graph
	getAPI(t, s.URL()+"api/graph", &g)
	if len(g.Edges) != 1 || g.Edges[0].Requests != 10 || g.Edges[0].RPS < 4 || g.Edges[0].RPS > 5.1 {
		t.Fatalf("edges = %+v, want one with the 10 requests of the pod's first 2 s", g.Edges)
	}
}
