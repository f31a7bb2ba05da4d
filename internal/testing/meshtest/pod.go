package meshtest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/proxy/xdsclient"
	"github.com/trellismesh/trellis/internal/xds"
)

// Pod is a running sidecar: the proxy of one pod, on the pod's IP.
type Pod struct {
	Name  string
	IP    netip.Addr
	Proxy *sidecar.Proxy

	nodeID string
	stop   context.CancelFunc
	exited chan struct{}
	err    error // Run's result, set before exited closes
}

// Sidecar starts a sidecar for pod name at ip (in namespace default, its
// service account and workload named after the pod) and waits until it is
// ready, which means it holds its first config. opts adjust its options
// before it starts, e.g. a drain duration or another namespace.
//
// The sidecar runs in explicit mode: apps reach the mesh through it as
// their HTTP_PROXY on ip:15001 (see Pod.Client), and it takes inbound
// traffic for the pod on ip.
func (m *Mesh) Sidecar(name, ip string, labels map[string]string, opts ...func(*sidecar.Options)) *Pod {
	m.t.Helper()
	p := &Pod{Name: name, IP: netip.MustParseAddr(ip), exited: make(chan struct{})}
	o := sidecar.Options{
		Mode:  sidecar.Explicit,
		PodIP: p.IP,
		XDS:   m.XDSAddr(),
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
	p.nodeID = o.Node.ID
	if p.nodeID == "" {
		nodeIP := o.Node.IP
		if nodeIP == "" {
			nodeIP = o.PodIP.String()
		}
		p.nodeID = xds.NodeID(nodeIP, o.Node.Pod, o.Node.Namespace)
	}
	p.Proxy = sidecar.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	go func() {
		p.err = p.Proxy.Run(ctx)
		close(p.exited)
	}()
	m.t.Cleanup(func() {
		cancel()
		select {
		case <-p.exited:
			if p.err != nil {
				m.t.Errorf("proxy %s: %v", name, p.err)
			}
		case <-time.After(10 * time.Second):
			m.t.Errorf("proxy %s did not stop", name)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, why := p.Proxy.Ready()
		if ok {
			m.mu.Lock()
			m.pods[name] = p
			m.podsInOrder = append(m.podsInOrder, p)
			m.mu.Unlock()
			return p
		}
		select {
		case <-p.exited:
			m.t.Fatalf("proxy %s exited: %v", name, p.err)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("proxy %s not ready: %s", name, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Pod returns the sidecar started as name, or nil.
func (m *Mesh) Pod(name string) *Pod {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pods[name]
}

// runningPods are the sidecars that have not exited.
func (m *Mesh) runningPods() []*Pod {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Pod
	for _, p := range m.podsInOrder {
		select {
		case <-p.exited:
		default:
			out = append(out, p)
		}
	}
	return out
}

// Stop tells the sidecar to shut down, as SIGTERM does: it drains, then
// Run returns. It does not wait; see Exited.
func (p *Pod) Stop() { p.stop() }

// Exited is closed once the sidecar has stopped; Err is then its result.
func (p *Pod) Exited() <-chan struct{} { return p.exited }

// Err is what the sidecar's Run returned; valid once Exited is closed.
func (p *Pod) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Client is an HTTP client of the pod's app: it sends through the pod's
// sidecar as its HTTP_PROXY, from the pod's IP.
func (p *Pod) Client() *http.Client {
	u := &url.URL{Scheme: "http", Host: net.JoinHostPort(p.IP.String(), "15001")}
	tr := &http.Transport{
		Proxy:               http.ProxyURL(u),
		MaxIdleConnsPerHost: 32,
		DialContext:         p.Dialer().DialContext,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Dialer dials from the pod's IP, as the pod's app does.
func (p *Pod) Dialer() *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: p.IP.AsSlice()}}
}

// Backend starts an app on addr (a pod IP and port), stopped when the test
// ends. See the package function Backend for what it answers.
func (m *Mesh) Backend(addr, name string, h http.HandlerFunc) *http.Server {
	m.t.Helper()
	return Backend(m.t, addr, name, h)
}

// Backend starts an app: an HTTP/1.1 and cleartext HTTP/2 server on addr
// that answers with its name and what it saw, in response headers:
// X-Backend (name), X-Seen-Remote, X-Seen-Xff (X-Forwarded-For),
// X-Seen-Request-Id, X-Seen-Host and X-Seen-Path (the request URI). The
// body is name unless h is set, in which case h writes the rest of the
// response (the headers above are already set).
func Backend(t testing.TB, addr, name string, h http.HandlerFunc) *http.Server {
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

// Get sends one GET with the given headers and returns the response with
// its body read; a transport error fails the test.
func Get(t testing.TB, c *http.Client, target string, header map[string]string) (*http.Response, string) {
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

// Eventually polls f every 20ms until it returns "" and fails the test
// with f's last message if that has not happened within the deadline.
// This is how tests wait for config to take effect: on the outcome, never
// on a sleep.
func Eventually(t testing.TB, within time.Duration, f func() string) {
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
