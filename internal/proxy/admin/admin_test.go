package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

type fakeSource struct {
	mu       sync.Mutex
	ready    bool
	reason   string
	dump     any
	clusters []Cluster
	statsErr error
	drains   int
	quits    int
	drainErr error
}

func (f *fakeSource) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready, f.reason
}

func (f *fakeSource) ConfigDump() any { return f.dump }

func (f *fakeSource) Clusters() []Cluster { return f.clusters }

func (f *fakeSource) WriteStats(w io.Writer, format string) error {
	if f.statsErr != nil {
		io.WriteString(w, "partial")
		return f.statsErr
	}
	switch format {
	case "text":
		_, err := io.WriteString(w, "cluster.a.upstream_rq_total: 7\n")
		return err
	case "prometheus":
		_, err := io.WriteString(w, "# TYPE upstream_rq_total counter\nupstream_rq_total{cluster=\"a\"} 7\n")
		return err
	}
	return fmt.Errorf("format %q", format)
}

func (f *fakeSource) Drain(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drains++
	return f.drainErr
}

func (f *fakeSource) Quit() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.quits++
}

func (f *fakeSource) counts() (drains, quits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drains, f.quits
}

type versioned struct {
	Version   string   `json:"version"`
	Resources []string `json:"resources"`
}

func newFake() *fakeSource {
	return &fakeSource{
		ready: true,
		dump: struct {
			Listeners versioned `json:"listeners"`
			Clusters  versioned `json:"clusters"`
		}{
			Listeners: versioned{"3", []string{"outbound"}},
			Clusters:  versioned{"5", []string{"b", "a"}},
		},
		clusters: []Cluster{
			{Name: "outbound|9080||reviews", Endpoints: []Endpoint{
				{Address: "10.244.0.7:9080", Healthy: true, Weight: 1, ActiveRequests: 2},
				{Address: "10.244.0.8:9080", Healthy: false, Weight: 3},
				{Address: "10.244.0.9:9080", Degraded: true, Weight: 1},
			}, Counters: map[string]uint64{"upstream_rq_total": 9, "upstream_cx_total": 4}},
			{Name: "empty"},
		},
	}
}

const (
	ctText = "text/plain; charset=utf-8"
	ctJSON = "application/json"
	ctProm = "text/plain; version=0.0.4; charset=utf-8"
)

type result struct {
	Status      int
	ContentType string
	Body        string
}

// fromPod makes r look as if the pod itself sent it over loopback to an
// admin listener on 127.0.0.1:15000.
func fromPod(r *http.Request) *http.Request {
	r.RemoteAddr = "127.0.0.1:40000"
	return r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15000}))
}

func do(h http.Handler, r *http.Request) result {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return result{w.Code, w.Header().Get("Content-Type"), w.Body.String()}
}

func TestAdminEndpoints(t *testing.T) {
	tests := []struct {
		name   string
		method string
		target string
		modify func(*fakeSource)
		want   result
	}{
		{name: "ready", method: "GET", target: "/ready", want: result{200, ctText, "LIVE\n"}},
		{name: "not ready", method: "GET", target: "/ready",
			modify: func(f *fakeSource) { f.ready, f.reason = false, "waiting for clusters" },
			want:   result{503, ctText, "waiting for clusters\n"}},
		{name: "not ready without reason", method: "GET", target: "/ready",
			modify: func(f *fakeSource) { f.ready = false },
			want:   result{503, ctText, "not ready\n"}},
		{name: "config dump", method: "GET", target: "/config_dump", want: result{200, ctJSON, `{
  "listeners": {
    "version": "3",
    "resources": [
      "outbound"
    ]
  },
  "clusters": {
    "version": "5",
    "resources": [
      "b",
      "a"
    ]
  }
}
`}},
		{name: "config dump one type", method: "GET", target: "/config_dump?resource=clusters", want: result{200, ctJSON, `{
  "version": "5",
  "resources": [
    "b",
    "a"
  ]
}
`}},
		{name: "config dump unknown type", method: "GET", target: "/config_dump?resource=routes",
			want: result{404, ctText, "unknown resource \"routes\"; have clusters, listeners\n"}},
		{name: "config dump unmarshalable", method: "GET", target: "/config_dump",
			modify: func(f *fakeSource) { f.dump = func() {} },
			want:   result{500, ctText, "marshal config dump: json: unsupported type: func()\n"}},
		{name: "clusters", method: "GET", target: "/clusters", want: result{200, ctText, `outbound|9080||reviews::upstream_cx_total::4
outbound|9080||reviews::upstream_rq_total::9
outbound|9080||reviews::10.244.0.7:9080::health_flags::healthy
outbound|9080||reviews::10.244.0.7:9080::weight::1
outbound|9080||reviews::10.244.0.7:9080::rq_active::2
outbound|9080||reviews::10.244.0.8:9080::health_flags::/failed_eds_health
outbound|9080||reviews::10.244.0.8:9080::weight::3
outbound|9080||reviews::10.244.0.8:9080::rq_active::0
outbound|9080||reviews::10.244.0.9:9080::health_flags::/degraded_eds_health
outbound|9080||reviews::10.244.0.9:9080::weight::1
outbound|9080||reviews::10.244.0.9:9080::rq_active::0
`}},
		{name: "clusters json", method: "GET", target: "/clusters?format=json", want: result{200, ctJSON, `{
  "clusters": [
    {
      "name": "empty",
      "endpoints": []
    },
    {
      "name": "outbound|9080||reviews",
      "endpoints": [
        {
          "address": "10.244.0.7:9080",
          "healthy": true,
          "weight": 1,
          "active_requests": 2
        },
        {
          "address": "10.244.0.8:9080",
          "healthy": false,
          "weight": 3,
          "active_requests": 0
        },
        {
          "address": "10.244.0.9:9080",
          "healthy": false,
          "degraded": true,
          "weight": 1,
          "active_requests": 0
        }
      ],
      "counters": {
        "upstream_cx_total": 4,
        "upstream_rq_total": 9
      }
    }
  ]
}
`}},
		{name: "no clusters json", method: "GET", target: "/clusters?format=json",
			modify: func(f *fakeSource) { f.clusters = nil },
			want:   result{200, ctJSON, "{\n  \"clusters\": []\n}\n"}},
		{name: "clusters bad format", method: "GET", target: "/clusters?format=xml",
			want: result{400, ctText, "unknown format \"xml\"; use text or json\n"}},
		{name: "stats", method: "GET", target: "/stats", want: result{200, ctText, "cluster.a.upstream_rq_total: 7\n"}},
		{name: "stats prometheus format", method: "GET", target: "/stats?format=prometheus",
			want: result{200, ctProm, "# TYPE upstream_rq_total counter\nupstream_rq_total{cluster=\"a\"} 7\n"}},
		{name: "stats prometheus", method: "GET", target: "/stats/prometheus",
			want: result{200, ctProm, "# TYPE upstream_rq_total counter\nupstream_rq_total{cluster=\"a\"} 7\n"}},
		{name: "stats bad format", method: "GET", target: "/stats?format=json",
			want: result{400, ctText, "unknown format \"json\"; use text or prometheus\n"}},
		{name: "stats error is not a short 200", method: "GET", target: "/stats/prometheus",
			modify: func(f *fakeSource) { f.statsErr = errors.New("registry closed") },
			want:   result{500, ctText, "write stats: registry closed\n"}},
		{name: "drain", method: "POST", target: "/drain", want: result{200, ctText, "OK\n"}},
		{name: "drain fails", method: "POST", target: "/drain",
			modify: func(f *fakeSource) { f.drainErr = errors.New("already draining") },
			want:   result{500, ctText, "drain: already draining\n"}},
		{name: "quit", method: "POST", target: "/quitquitquit", want: result{200, ctText, "OK\n"}},
		{name: "GET drain", method: "GET", target: "/drain", want: result{405, ctText, "Method Not Allowed\n"}},
		{name: "GET quit", method: "GET", target: "/quitquitquit", want: result{405, ctText, "Method Not Allowed\n"}},
		{name: "POST ready", method: "POST", target: "/ready", want: result{405, ctText, "Method Not Allowed\n"}},
		{name: "unknown", method: "GET", target: "/nope", want: result{404, ctText, "404 page not found\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			if tt.modify != nil {
				tt.modify(f)
			}
			r := fromPod(httptest.NewRequest(tt.method, tt.target, nil))
			got := do(NewAdmin(f, nil), r)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", tt.method, tt.target, diff)
			}
		})
	}
}

func TestAdminIndex(t *testing.T) {
	got := do(NewAdmin(newFake(), nil), httptest.NewRequest("GET", "/", nil))
	if got.Status != 200 || got.ContentType != ctText {
		t.Fatalf("GET / = %d %q", got.Status, got.ContentType)
	}
	for _, p := range []string{"/ready", "/config_dump", "/clusters", "/stats", "/stats/prometheus", "/debug/pprof/", "POST /drain", "POST /quitquitquit"} {
		if !strings.Contains(got.Body, p) {
			t.Errorf("index does not list %s:\n%s", p, got.Body)
		}
	}
}

func TestAdminNoStore(t *testing.T) {
	w := httptest.NewRecorder()
	NewAdmin(newFake(), nil).ServeHTTP(w, httptest.NewRequest("GET", "/clusters", nil))
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

func TestPprof(t *testing.T) {
	h := NewAdmin(newFake(), nil)
	for _, target := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		got := do(h, httptest.NewRequest("GET", target, nil))
		if got.Status != 200 {
			t.Errorf("GET %s = %d %s", target, got.Status, got.Body)
		}
	}
	if got := do(h, httptest.NewRequest("GET", "/debug/pprof/", nil)); !strings.Contains(got.Body, "goroutine") {
		t.Errorf("pprof index does not list goroutine:\n%s", got.Body)
	}
	// Mounting must not depend on the default mux: a fresh mux has none.
	if _, pattern := http.NewServeMux().Handler(httptest.NewRequest("GET", "/debug/pprof/", nil)); pattern != "" {
		t.Errorf("fresh mux matched %q", pattern)
	}
}

func TestStateChangingRefusedFromNetwork(t *testing.T) {
	for _, target := range []string{"/drain", "/quitquitquit"} {
		for _, remote := range []string{"10.0.0.1:1234", "[2001:db8::1]:1234", "", "@"} {
			f := newFake()
			r := httptest.NewRequest("POST", target, nil)
			r.RemoteAddr = remote
			got := do(NewAdmin(f, nil), r)
			want := result{403, ctText, target + " is only allowed from the pod itself or over the admin Unix socket\n"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("POST %s from %q (-want +got):\n%s", target, remote, diff)
			}
			if d, q := f.counts(); d != 0 || q != 0 {
				t.Errorf("POST %s from %q: drains=%d quits=%d, want none", target, remote, d, q)
			}
		}
	}
}

// Over TCP only the pod itself may drain its proxy: the caller's address
// must be the admin listener's own. Another pod's loopback address (every
// explicit-mode pod IP is in 127.10.0.0/16) is refused.
func TestStateChangingFromLoopback(t *testing.T) {
	for _, tc := range []struct {
		local, remote string
		want          int
	}{
		{"127.0.0.1:15000", "127.0.0.1:1234", 200},
		{"127.10.0.3:15000", "127.10.0.3:5555", 200},
		{"[::1]:15000", "[::1]:1234", 200},
		{"127.0.0.1:15000", "[::ffff:127.0.0.1]:1234", 200},
		{"127.10.0.3:15000", "127.10.0.4:5555", 403},
		{"127.10.0.3:15000", "127.0.0.1:5555", 403},
	} {
		f := newFake()
		r := httptest.NewRequest("POST", "/drain", nil)
		r.RemoteAddr = tc.remote
		local, err := net.ResolveTCPAddr("tcp", tc.local)
		if err != nil {
			t.Fatal(err)
		}
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
		if got := do(NewAdmin(f, nil), r); got.Status != tc.want {
			t.Errorf("POST /drain from %s to %s = %d %s, want %d", tc.remote, tc.local, got.Status, got.Body, tc.want)
		}
	}
}

func TestStateChangingRefusedCrossOrigin(t *testing.T) {
	f := newFake()
	r := httptest.NewRequest("POST", "/quitquitquit", nil)
	r.RemoteAddr = "127.0.0.1:1234"
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if got := do(NewAdmin(f, nil), r); got.Status != 403 {
		t.Errorf("cross-site POST /quitquitquit = %d %s", got.Status, got.Body)
	}
	if _, q := f.counts(); q != 0 {
		t.Errorf("quits = %d, want 0", q)
	}
}

func TestHealth(t *testing.T) {
	tests := []struct {
		name   string
		method string
		target string
		ready  bool
		want   result
	}{
		{"ready", "GET", "/healthz/ready", true, result{200, ctText, "LIVE\n"}},
		{"not ready", "GET", "/healthz/ready", false, result{503, ctText, "no listeners\n"}},
		{"head", "HEAD", "/healthz/ready", true, result{200, ctText, "LIVE\n"}},
		{"post", "POST", "/healthz/ready", true, result{405, ctText, "method not allowed\n"}},
		{"admin path", "GET", "/ready", true, result{404, ctText, "404 page not found\n"}},
		{"drain", "POST", "/drain", true, result{404, ctText, "404 page not found\n"}},
		{"root", "GET", "/", true, result{404, ctText, "404 page not found\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.ready, f.reason = tt.ready, "no listeners"
			got := do(NewHealth(f), httptest.NewRequest(tt.method, tt.target, nil))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", tt.method, tt.target, diff)
			}
		})
	}
}

// serve runs Serve on l in the background and stops it at cleanup,
// failing the test if it does not return nil.
func serve(t *testing.T, l net.Listener, h http.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, l, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
}

func client(t *testing.T, dial func(ctx context.Context) (net.Conn, error)) *http.Client {
	tr := &http.Transport{}
	if dial != nil {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, method, url string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return result{resp.StatusCode, resp.Header.Get("Content-Type"), string(body)}
}

func TestServeUnixSocket(t *testing.T) {
	leak.Check(t)
	path := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	serve(t, l, NewAdmin(f, nil))
	var d net.Dialer
	c := client(t, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", path) })

	ok := result{200, ctText, "OK\n"}
	if diff := cmp.Diff(ok, get(t, c, "POST", "http://admin/drain")); diff != "" {
		t.Errorf("POST /drain over unix (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ok, get(t, c, "POST", "http://admin/quitquitquit")); diff != "" {
		t.Errorf("POST /quitquitquit over unix (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(result{200, ctText, "LIVE\n"}, get(t, c, "GET", "http://admin/ready")); diff != "" {
		t.Errorf("GET /ready over unix (-want +got):\n%s", diff)
	}
	if d, q := f.counts(); d != 1 || q != 1 {
		t.Errorf("drains=%d quits=%d, want 1 and 1", d, q)
	}
}

func TestServeLoopback(t *testing.T) {
	leak.Check(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	serve(t, l, NewAdmin(f, nil))
	c := client(t, nil)
	base := "http://" + l.Addr().String()

	if diff := cmp.Diff(result{200, ctText, "OK\n"}, get(t, c, "POST", base+"/drain")); diff != "" {
		t.Errorf("POST /drain over loopback (-want +got):\n%s", diff)
	}
	if got := get(t, c, "GET", base+"/debug/pprof/"); got.Status != 200 || !strings.Contains(got.Body, "goroutine") {
		t.Errorf("GET /debug/pprof/ = %d %q", got.Status, got.Body)
	}
	var dump map[string]any
	if err := json.Unmarshal([]byte(get(t, c, "GET", base+"/config_dump").Body), &dump); err != nil {
		t.Errorf("config dump is not JSON: %v", err)
	}
	if d, _ := f.counts(); d != 1 {
		t.Errorf("drains = %d, want 1", d)
	}
}

func TestServeHealth(t *testing.T) {
	leak.Check(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	f.ready, f.reason = false, "no listeners"
	serve(t, l, NewHealth(f))
	c := client(t, nil)
	url := "http://" + l.Addr().String() + "/healthz/ready"
	if diff := cmp.Diff(result{503, ctText, "no listeners\n"}, get(t, c, "GET", url)); diff != "" {
		t.Errorf("before ready (-want +got):\n%s", diff)
	}
	f.mu.Lock()
	f.ready = true
	f.mu.Unlock()
	if diff := cmp.Diff(result{200, ctText, "LIVE\n"}, get(t, c, "GET", url)); diff != "" {
		t.Errorf("after ready (-want +got):\n%s", diff)
	}
}

// TestServeStopsWithOpenConnection keeps a keep-alive connection idle and
// a request in flight when ctx is cancelled: Serve must let the request
// finish, close both, and return nil.
func TestServeStopsWithOpenConnection(t *testing.T) {
	leak.Check(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, l, mux) }()
	base := "http://" + l.Addr().String()

	idle := client(t, nil)
	get(t, idle, "GET", base+"/fast") // leaves an idle keep-alive connection

	slow := client(t, nil)
	slowc := make(chan result, 1)
	go func() {
		resp, err := slow.Get(base + "/slow")
		if err != nil {
			slowc <- result{Body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slowc <- result{Status: resp.StatusCode, Body: string(b)}
	}()
	<-entered
	cancel()
	select {
	case err := <-errc:
		t.Fatalf("Serve returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if diff := cmp.Diff(result{Status: 200, Body: "done"}, <-slowc); diff != "" {
		t.Errorf("in-flight request (-want +got):\n%s", diff)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

func TestServeReturnsListenerError(t *testing.T) {
	leak.Check(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- Serve(context.Background(), l, http.NotFoundHandler()) }()
	// Give Serve time to start accepting, so the close is an accept error
	// rather than a listener that was never served.
	time.Sleep(20 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Serve = nil after its listener failed, want the error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its listener closed")
	}
}
