package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/proxy/xdsclient"
)

// mesh is an in-process control plane watching a folder, with real
// sidecars and backends on loopback pod IPs. Each test uses its own
// 127.x.y.0/24 so that tests in parallel never share a port.
type mesh struct {
	t    testing.TB
	dir  string
	pods map[string]*pod
	cp   *controlplane.ControlPlane
	xds  string
}

func newMesh(t testing.TB, config string) *mesh {
	t.Helper()
	m := &mesh{t: t, dir: t.TempDir(), pods: map[string]*pod{}}
	m.write("mesh.yaml", config)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.startCP(lis)
	return m
}

func (m *mesh) startCP(lis net.Listener) {
	m.t.Helper()
	cp, err := controlplane.Start(context.Background(), controlplane.Options{
		ConfigPaths: []string{m.dir},
		XDSListener: lis,
		Log:         slog.New(slog.DiscardHandler),
		Debounce:    10 * time.Millisecond,
		MaxDelay:    50 * time.Millisecond,
		Resync:      200 * time.Millisecond,
	})
	if err != nil {
		m.t.Fatal(err)
	}
	m.cp = cp
	m.xds = lis.Addr().String()
	var once sync.Once
	m.t.Cleanup(func() { once.Do(func() { cp.Stop() }) })
}

// write replaces a config file atomically, as an editor would.
func (m *mesh) write(name, content string) {
	m.t.Helper()
	tmp := filepath.Join(m.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		m.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, name)); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mesh) read(name string) string {
	m.t.Helper()
	b, err := os.ReadFile(filepath.Join(m.dir, name))
	if err != nil {
		m.t.Fatal(err)
	}
	return string(b)
}

// pod is a running sidecar.
type pod struct {
	name  string
	ip    netip.Addr
	proxy *sidecar.Proxy
	stop  context.CancelFunc
	done  chan error
}

// sidecar starts a sidecar for a pod at ip and waits until it is ready.
func (m *mesh) sidecar(name, ip string, labels map[string]string) *pod {
	m.t.Helper()
	return m.sidecarWith(name, ip, labels)
}

// sidecarWith is mesh.sidecar with options adjusted by opts.
func (m *mesh) sidecarWith(name, ip string, labels map[string]string, opts ...func(*sidecar.Options)) *pod {
	m.t.Helper()
	p := &pod{name: name, ip: netip.MustParseAddr(ip), done: make(chan error, 1)}
	o := sidecar.Options{
		Mode:  sidecar.Explicit,
		PodIP: p.ip,
		XDS:   m.xds,
		Node: xdsclient.Node{Pod: name, Namespace: "default", ServiceAccount: "default",
			Labels: labels, WorkloadName: name},
		DrainDuration: 2 * time.Second,
		Backoff:       xdsclient.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Log:           slog.New(slog.DiscardHandler),
	}
	if os.Getenv("TRELLIS_TEST_LOG") != "" {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("pod", name)
	}
	for _, f := range opts {
		f(&o)
	}
	p.proxy = sidecar.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	go func() { p.done <- p.proxy.Run(ctx) }()
	m.t.Cleanup(func() {
		cancel()
		select {
		case err := <-p.done:
			if err != nil {
				m.t.Errorf("proxy %s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			m.t.Errorf("proxy %s did not stop", name)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, why := p.proxy.Ready()
		if ok {
			m.pods[name] = p
			return p
		}
		select {
		case err := <-p.done:
			m.t.Fatalf("proxy %s exited: %v", name, err)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("proxy %s not ready: %s", name, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client sends through a pod's sidecar as its HTTP_PROXY.
func (p *pod) client() *http.Client {
	u := &url.URL{Scheme: "http", Host: net.JoinHostPort(p.ip.String(), "15001")}
	tr := &http.Transport{
		Proxy:               http.ProxyURL(u),
		MaxIdleConnsPerHost: 32,
		DialContext:         (&net.Dialer{LocalAddr: &net.TCPAddr{IP: p.ip.AsSlice()}}).DialContext,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// backend is an app: an HTTP server on a pod IP that answers with its name
// and what it saw.
func backend(t testing.TB, addr, name string, h http.HandlerFunc) *http.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &ps, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Remote", r.RemoteAddr)
		w.Header().Set("X-Seen-Xff", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	// Close may run before Serve has taken the listener; closing it too
	// frees the port either way.
	t.Cleanup(func() { srv.Close(); ln.Close() })
	return srv
}

// get sends one request and returns the response with its body read.
func get(t testing.TB, c *http.Client, target string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: body: %v", target, err)
	}
	return resp, string(b)
}

// eventually polls f until it returns "" or the deadline passes.
func eventually(t testing.TB, within time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reviewsConfig is a Service with two versions behind sidecars, a
// DestinationRule with their subsets and a VirtualService splitting
// between them (header route first). base is the pods' /24, e.g. "127.77.1".
func reviewsConfig(base string, v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec: {address: %[1]s.2, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2}
spec: {address: %[1]s.3, labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: %[2]d}
    - {destination: {host: reviews, subset: v2}, weight: %[3]d}
`, base, v1, v2)
}

// reviewsMesh starts the reviews mesh: backends and sidecars for v1 and
// v2 and a client sidecar (base.1).
func reviewsMesh(t testing.TB, base string, v1, v2 int) (*mesh, *pod) {
	m := newMesh(t, reviewsConfig(base, v1, v2))
	backend(t, base+".2:9080", "v1", nil)
	backend(t, base+".3:9080", "v2", nil)
	m.sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"})
	m.sidecar("reviews-v2", base+".3", map[string]string{"app": "reviews", "version": "v2"})
	client := m.sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	c := client.client()
	eventually(t, 10*time.Second, func() string {
		resp, err := c.Get("http://reviews:9080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Sprintf("reviews answered %d (%s)", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"))
		}
		return ""
	})
	return m, client
}

func statsLine(t testing.TB, p *pod, name string) string {
	t.Helper()
	var b strings.Builder
	if err := p.proxy.WriteStats(&b, "text"); err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(b.String(), "\n") {
		if strings.HasPrefix(line, name+":") {
			return strings.TrimSpace(strings.TrimPrefix(line, name+":"))
		}
	}
	return ""
}
