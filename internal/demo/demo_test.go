package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// server is a demo service running on loopback for a test.
type server struct {
	URL    string
	cancel context.CancelFunc
	done   chan error

	once sync.Once
	err  error
}

// stop cancels the service's context, as SIGTERM does, and returns what
// Run returned. Stopping twice returns the same.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case s.err = <-s.done:
		case <-time.After(15 * time.Second):
			t.Fatal("the service did not stop within 15s of its context ending")
		}
	})
	return s.err
}

// start runs the demo service name on 127.0.0.1:0 with env as its whole
// environment, and stops it when the test ends, failing the test unless
// Run then returns nil.
func start(t *testing.T, name string, env map[string]string, opts ...func(*Options)) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	o := Options{
		Listen: "127.0.0.1:0",
		Getenv: func(k string) string { return env[k] },
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Ready:  func(a net.Addr) { ready <- a },
	}
	for _, f := range opts {
		f(&o)
	}
	s := &server{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- Run(ctx, name, o) }()
	select {
	case a := <-ready:
		s.URL = "http://" + a.String()
	case err := <-s.done:
		cancel()
		t.Fatalf("Run(%s) = %v before listening", name, err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("Run(%s) did not listen within 10s", name)
	}
	t.Cleanup(func() {
		if err := s.stop(t); err != nil {
			t.Errorf("Run(%s) after cancel = %v, want nil", name, err)
		}
	})
	return s
}

// testWriter sends logs to t.Log, so they show only for failing tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// client returns an HTTP client that uses no proxy and closes its
// connections when the test ends.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// do sends a request and returns the status, headers and body.
func do(t *testing.T, c *http.Client, method, url, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// decode unmarshals a JSON answer strictly into a T.
func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

func TestHealthzEveryService(t *testing.T) {
	leak.Check(t)
	c := client(t)
	for _, s := range Services() {
		if !s.Serves {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			srv := start(t, s.Name, nil)
			if code, _, body := do(t, c, "GET", srv.URL+"/healthz", ""); code != 200 || body != "ok\n" {
				t.Errorf("GET /healthz = %d %q, want 200 \"ok\\n\"", code, body)
			}
			// GET / says which service answered (the frontend's is its page).
			if s.Name != "frontend" {
				code, _, body := do(t, c, "GET", srv.URL+"/", "")
				if got := decode[map[string]string](t, body); code != 200 || got["service"] != s.Name {
					t.Errorf("GET / = %d %q, want 200 naming %s", code, body, s.Name)
				}
			}
		})
	}
}

func TestShutdownDrainsInFlightRequest(t *testing.T) {
	leak.Check(t)
	c := client(t)
	// A slow upstream holds reviews' request open while reviews stops.
	release := make(chan struct{})
	arrived := make(chan struct{})
	slow := start(t, "ratings", nil)
	proxy := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		resp, err := http.Get(slow.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go proxy.Serve(ln)
	t.Cleanup(func() {
		proxy.Close()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, "reviews", Options{
			Listen: "127.0.0.1:0",
			Getenv: func(k string) string {
				return map[string]string{"VERSION": "v2", "RATINGS_URL": "http://" + ln.Addr().String()}[k]
			},
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
			Ready:  func(a net.Addr) { ready <- a },
		})
	}()
	addr := <-ready
	got := make(chan int, 1)
	go func() {
		resp, err := c.Get("http://" + addr.String() + "/reviews/0")
		if err != nil {
			t.Errorf("in-flight request: %v", err)
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-arrived
	cancel() // SIGTERM
	select {
	case err := <-done:
		t.Fatalf("Run returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if code := <-got; code != 200 {
		t.Errorf("in-flight request = %d, want 200", code)
	}
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}

func TestSleepStopsOnCancel(t *testing.T) {
	leak.Check(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, "sleep", Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}) }()
	select {
	case err := <-done:
		t.Fatalf("sleep returned %v before being signalled", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("sleep after cancel = %v, want nil", err)
	}
}

func TestRunErrors(t *testing.T) {
	leak.Check(t)
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name, service string
		opts          Options
		want          string
	}{
		{"unknown service", "nope", Options{}, `unknown demo service "nope": use one of frontend, reviews, ratings, checkout-service, refund-service, payment-service, sleep`},
		{"bad version", "reviews", Options{Getenv: func(k string) string { return map[string]string{"VERSION": "v9"}[k] }}, `reviews: VERSION "v9": use v1, v2 or v3`},
		{"bad listen", "ratings", Options{Listen: "127.0.0.1:notaport", Getenv: func(string) string { return "" }}, "ratings: listen tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Logger = quiet
			err := Run(ctx, tc.service, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDefaultListen(t *testing.T) {
	for env, want := range map[string]string{
		"":           "127.0.0.1:9080",
		"127.10.0.7": "127.10.0.7:9080",
		"fd00::7":    "[fd00::7]:9080",
	} {
		if got := DefaultListen(func(string) string { return env }); got != want {
			t.Errorf("POD_IP=%q: DefaultListen = %q, want %q", env, got, want)
		}
	}
}

// withProxy sends the service's upstream calls through proxy.
func withProxy(proxy string) func(*Options) {
	return func(o *Options) {
		u, _ := url.Parse(proxy)
		o.Proxy = http.ProxyURL(u)
	}
}

// startHandler serves h on loopback until the test ends and returns its URL.
func startHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// compact removes the indentation from a JSON answer.
func compact(t *testing.T, body string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(body)); err != nil {
		t.Fatalf("%q is not JSON: %v", body, err)
	}
	return b.String()
}
