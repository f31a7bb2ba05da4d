package apphealth

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// probe serves one request to a Handler running ps and returns the
// status, the body and how long it took.
func probe(t *testing.T, h *Handler, path string, hdr map[string]string) (int, string, time.Duration) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

// app is an HTTP backend on loopback; it records the last request.
type app struct {
	mu   sync.Mutex
	last *http.Request
	port int32
}

func newApp(t *testing.T) *app {
	a := &app{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.last = r
		a.mu.Unlock()
		fmt.Fprint(w, "fine")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "sick", http.StatusInternalServerError)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://192.0.2.1/elsewhere", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	a.port = int32(n)
	return a
}

func mustParse(t *testing.T, js string) Probers {
	t.Helper()
	ps, err := Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// HTTP probes: the app's status and body come back (a redirect as 200),
// with the kubelet's and the probe's headers sent on, from the source
// address given; an app that is too slow fails within the probe's
// timeout, not the app's.
func TestHTTPGet(t *testing.T) {
	a := newApp(t)
	p := func(path string) string {
		return fmt.Sprintf(`{"httpGet": {"path": %q, "port": %d, "scheme": "HTTP", "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}, "timeoutSeconds": 1}`, path, a.port)
	}
	ps := mustParse(t, `{"/app-health/web/readyz": `+p("/ok")+`, "/app-health/web/livez": `+p("fail")+
		`, "/app-health/web/startupz": `+p("/slow")+`, "/app-health/moved/readyz": `+p("/moved")+`}`)
	h := New(ps, Options{Target: "127.0.0.1", Source: net.ParseIP("127.0.0.6"), StatusPort: 15020})

	code, body, _ := probe(t, h, "/app-health/web/readyz", map[string]string{"User-Agent": "kube-probe/1.34"})
	if code != 200 || body != "fine" {
		t.Errorf("readyz: %d %q, want 200 fine", code, body)
	}
	a.mu.Lock()
	r := a.last
	a.mu.Unlock()
	if r == nil {
		t.Fatal("the app got no request")
	}
	if got := r.Header.Get("X-Probe"); got != "yes" {
		t.Errorf("the app got X-Probe %q, want the probe's header", got)
	}
	if got := r.Header.Get("User-Agent"); got != "kube-probe/1.34" {
		t.Errorf("the app got User-Agent %q, want the kubelet's", got)
	}
	if host, _, _ := net.SplitHostPort(r.RemoteAddr); host != "127.0.0.6" {
		t.Errorf("the probe came from %s, want the source 127.0.0.6", r.RemoteAddr)
	}

	if code, body, _ := probe(t, h, "/app-health/web/livez", nil); code != 500 || !strings.Contains(body, "sick") {
		t.Errorf("livez of a failing app: %d %q, want the app's 500", code, body)
	}
	if code, _, _ := probe(t, h, "/app-health/moved/readyz", nil); code != 200 {
		t.Errorf("a redirect elsewhere: %d, want 200", code)
	}
	code, _, took := probe(t, h, "/app-health/web/startupz", nil)
	if code != 500 || took > 5*time.Second {
		t.Errorf("a slow app: %d after %s, want 500 after the 1 s timeout", code, took)
	}
	if took < time.Second {
		t.Errorf("a slow app failed after %s, before the 1 s timeout", took)
	}
}

// A path with no probe is a bad request (Istio's agent answers 400); the
// prober sends nothing anywhere.
func TestUnknownPath(t *testing.T) {
	h := New(Probers{}, Options{Target: "127.0.0.1"})
	if code, body, _ := probe(t, h, "/app-health/nope/readyz", nil); code != 400 || !strings.Contains(body, "/app-health/nope/readyz") {
		t.Errorf("unknown probe: %d %q, want 400 naming the path", code, body)
	}
}

// tcpSocket: 200 when the port accepts, 500 when it refuses.
func TestTCPSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := ln.Addr().(*net.TCPAddr).Port
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := closedLn.Addr().(*net.TCPAddr).Port
	closedLn.Close()
	ps := mustParse(t, fmt.Sprintf(`{"/app-health/web/livez": {"tcpSocket": {"port": %d}}, "/app-health/web/readyz": {"tcpSocket": {"port": %d}}}`, open, closed))
	h := New(ps, Options{Target: "127.0.0.1"})
	if code, _, _ := probe(t, h, "/app-health/web/livez", nil); code != 200 {
		t.Errorf("open port: %d, want 200", code)
	}
	if code, _, _ := probe(t, h, "/app-health/web/readyz", nil); code != 500 {
		t.Errorf("closed port: %d, want 500", code)
	}
}

// gRPC health, against grpc-go's own health server: SERVING passes;
// NOT_SERVING, an unknown service and a server without the health
// service fail.
func TestGRPC(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("ok.Service", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down.Service", healthpb.HealthCheckResponse_NOT_SERVING)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()
	bare := grpc.NewServer()
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go bare.Serve(bln)
	defer bare.Stop()
	port, bport := ln.Addr().(*net.TCPAddr).Port, bln.Addr().(*net.TCPAddr).Port

	ps := mustParse(t, fmt.Sprintf(`{
		"/app-health/all/readyz": {"grpc": {"port": %[1]d}},
		"/app-health/ok/readyz": {"grpc": {"port": %[1]d, "service": "ok.Service"}},
		"/app-health/down/readyz": {"grpc": {"port": %[1]d, "service": "down.Service"}},
		"/app-health/unknown/readyz": {"grpc": {"port": %[1]d, "service": "no.Such"}},
		"/app-health/bare/readyz": {"grpc": {"port": %[2]d}}}`, port, bport))
	h := New(ps, Options{Target: "127.0.0.1"})
	for path, want := range map[string]int{
		"/app-health/all/readyz": 200, "/app-health/ok/readyz": 200,
		"/app-health/down/readyz": 500, "/app-health/unknown/readyz": 500, "/app-health/bare/readyz": 500,
	} {
		if code, body, _ := probe(t, h, path, nil); code != want {
			t.Errorf("%s: %d %q, want %d", path, code, body, want)
		}
	}
}

// Bad ISTIO_KUBE_APP_PROBERS is refused with the entry's path.
func TestParseErrors(t *testing.T) {
	for js, want := range map[string]string{
		`{"/app-health/web/readyz": {"httpGet": {"port": "http"}}}`:                     `port "http": must be a number`,
		`{"/healthz": {"tcpSocket": {"port": 80}}}`:                                     `["/healthz"]: the path must be /app-health/CONTAINER/readyz`,
		`{"/app-health/web/readyz": {"tcpSocket": {"port": 80}, "grpc": {"port": 80}}}`: `["/app-health/web/readyz"]: must set exactly one of httpGet, tcpSocket or grpc`,
		`{"/app-health/web/livez": {"httpGet": {"port": 0}}}`:                           `["/app-health/web/livez"].httpGet.port: 0 must be between 1 and 65535`,
		`{"/app-health/web/livez": {"httpGet": {"port": 80, "scheme": "FTP"}}}`:         `["/app-health/web/livez"].httpGet.scheme: "FTP" must be HTTP or HTTPS`,
		`{"/app-health/web/livez": {"exec": {"command": ["true"]}}}`:                    `unknown field "exec"`,
		`[]`: `is not a JSON object`,
		`{"/app-health/web/startupz": {"tcpSocket": {"port": 80}, "timeoutSeconds": -1}}`:         `.timeoutSeconds: must be >= 0`,
		`{"/app-health/web/readyz": {"httpGet": {"port": 8080}}, "/x": {"httpGet": {"port": 1}}}`: `["/x"]`,
	} {
		_, err := Parse(js)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want an error containing %q", js, err, want)
		}
	}
	ps, err := Parse(`{"/app-health/web/readyz": {"httpGet": {"path": "/ready", "port": 8080, "httpHeaders": [{"name": "A", "value": "b"}]}, "timeoutSeconds": 3}}`)
	if err != nil {
		t.Fatal(err)
	}
	if g := ps["/app-health/web/readyz"]; g.HTTPGet.Port != 8080 || g.HTTPGet.Path != "/ready" || g.TimeoutSeconds != 3 || len(g.HTTPGet.HTTPHeaders) != 1 {
		t.Errorf("parsed %+v", g)
	}
}
