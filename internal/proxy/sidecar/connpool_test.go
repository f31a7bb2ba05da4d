package sidecar_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// End-to-end tests of DestinationRule connectionPool settings that shape
// upstream connections (keepalive, age, streams per connection, protocol,
// TCP idle timeout) and of the proxy's default age for HTTP/2
// connections. The backends have no sidecar, so the client's sidecar dials
// them directly and its sockets are the backends' peers.

// poolMesh is one Service "svc" (ports http 9080, http2 9081, grpc 7070,
// tcp 9000)
// backed by a workload at base.2 without a sidecar, the rule dr (YAML, may
// be empty), and a client sidecar at base.1 with opts.
func poolMesh(t *testing.T, base, dr string, opts ...func(*sidecar.Options)) (*meshtest.Mesh, *meshtest.Pod) {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  selector: {app: svc}
  ports: [{name: http, port: 9080}, {name: http2, port: 9081}, {name: grpc, port: 7070}, {name: tcp-echo, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc}
spec: {address: %s.2, labels: {app: svc}}
`, base)
	if dr != "" {
		cfg += "---\n" + dr
	}
	m := meshtest.New(t, cfg)
	client := m.Sidecar("sleep", base+".1", nil, opts...)
	m.WaitSynced()
	return m, client
}

// connApp is a backend (HTTP/1.1 and h2c) that counts the connections it
// accepts and the requests each carried.
type connApp struct {
	name string
	mu   sync.Mutex
	reqs map[string]int // remote address: requests
	// inflight counts requests in the handler; held ones wait on release.
	inflight atomic.Int64
	release  chan struct{}
}

func newConnApp(t *testing.T, addr, name string) *connApp {
	t.Helper()
	a := &connApp{name: name, reqs: map[string]int{}, release: make(chan struct{})}
	meshtest.Backend(t, addr, name, func(w http.ResponseWriter, r *http.Request) {
		a.inflight.Add(1)
		defer a.inflight.Add(-1)
		a.mu.Lock()
		a.reqs[r.RemoteAddr]++
		a.mu.Unlock()
		w.Header().Set("X-Seen-Proto", strconv.Itoa(r.ProtoMajor))
		switch r.URL.Path {
		case "/hold":
			select {
			case <-a.release:
			case <-r.Context().Done():
			}
		case "/slow":
			d, _ := time.ParseDuration(r.URL.Query().Get("d"))
			time.Sleep(d) // the work a slow request does, not a wait for an event
		}
		io.WriteString(w, name)
	})
	return a
}

func (a *connApp) conns() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.reqs {
		out[k] = v
	}
	return out
}

// socketOptions finds, among this process's sockets (the sidecars run in
// it), the TCP socket from local (any port when 0) to peer, and reads its
// keepalive options.
func socketOptions(t *testing.T, local, peer netip.AddrPort) (keepalive, idle, intvl, cnt int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil || !sameAddr(sa, local) {
			continue
		}
		pa, err := unix.Getpeername(fd)
		if err != nil || !sameAddr(pa, peer) {
			continue
		}
		get := func(level, opt int) int {
			v, err := unix.GetsockoptInt(fd, level, opt)
			if err != nil {
				t.Fatalf("getsockopt: %v", err)
			}
			return v
		}
		return get(unix.SOL_SOCKET, unix.SO_KEEPALIVE), get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE),
			get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL), get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	}
	t.Fatalf("no socket from %v to %v in this process", local, peer)
	return
}

func sameAddr(sa unix.Sockaddr, ap netip.AddrPort) bool {
	s4, ok := sa.(*unix.SockaddrInet4)
	return ok && netip.AddrFrom4(s4.Addr) == ap.Addr() && (ap.Port() == 0 || s4.Port == int(ap.Port()))
}

// tcpKeepalive: the client sidecar's socket to the backend has
// SO_KEEPALIVE with the rule's time, interval and probes (Go's dialer
// would otherwise set 15s, 15s and 9).
func TestConnPoolTCPKeepalive(t *testing.T) {
	leak.Check(t)
	const base = "127.83.1"
	app := newConnApp(t, base+".2:9080", "svc")
	_, client := poolMesh(t, base, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      tcp:
        tcpKeepalive: {time: 7s, interval: 3s, probes: 4}
`)
	c := client.Client()
	defer c.CloseIdleConnections()
	if code, flags, body, _ := get(c, "http://svc:9080/", nil); code != 200 || body != "svc" {
		t.Fatalf("GET: %d %s %q", code, flags, body)
	}
	var from string
	for k := range app.conns() {
		from = k
	}
	ka, idle, intvl, cnt := socketOptions(t, netip.MustParseAddrPort(from), netip.MustParseAddrPort(base+".2:9080"))
	if ka != 1 || idle != 7 || intvl != 3 || cnt != 4 {
		t.Errorf("upstream socket: SO_KEEPALIVE %d, TCP_KEEPIDLE %d, TCP_KEEPINTVL %d, TCP_KEEPCNT %d; want 1, 7, 3, 4", ka, idle, intvl, cnt)
	}
}

// tcp.maxConnectionDuration: past it, new requests reach the backend on a
// new connection, HTTP/1.1 and HTTP/2 alike, while a request in flight on
// the old one finishes.
func TestConnPoolMaxConnectionDuration(t *testing.T) {
	leak.Check(t)
	const base = "127.83.2"
	h1 := newConnApp(t, base+".2:9080", "h1")
	h2 := newConnApp(t, base+".2:9081", "h2")
	_, client := poolMesh(t, base, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      tcp: {maxConnectionDuration: 400ms}
`)
	c := client.Client()
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		app    *connApp
		target string
		proto  string
	}{{h1, "http://svc:9080", "1"}, {h2, "http://svc:9081", "2"}} {
		// One request at a time, so that only the age can open a second
		// connection.
		meshtest.Eventually(t, 10*time.Second, func() string {
			code, flags, body, h := get(c, tc.target+"/", nil)
			if code != 200 || h.Get("X-Seen-Proto") != tc.proto {
				t.Fatalf("%s: %d %s %q HTTP/%s", tc.target, code, flags, body, h.Get("X-Seen-Proto"))
			}
			if n := len(tc.app.conns()); n < 2 {
				return fmt.Sprintf("%s: the backend saw %d connection(s), want a new one after 400ms", tc.target, n)
			}
			return ""
		})
		// A request that outlives its connection's age is answered.
		code, flags, body, h := get(c, tc.target+"/slow?d=700ms", nil)
		if code != 200 || body != tc.app.name || h.Get("X-Seen-Proto") != tc.proto {
			t.Errorf("%s: the request in flight across its connection's age: %d %s %q, want 200 from the app", tc.target, code, flags, body)
		}
	}
}

// http.maxConcurrentStreams: an HTTP/2 connection carries at most that
// many streams; the rest open another connection. Go's server allows 250
// a connection, so without the setting one connection would carry all.
func TestConnPoolMaxConcurrentStreams(t *testing.T) {
	leak.Check(t)
	const base = "127.83.3"
	app := newConnApp(t, base+".2:9081", "h2")
	_, client := poolMesh(t, base, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      http: {maxConcurrentStreams: 2}
`)
	c := client.Client()
	defer c.CloseIdleConnections()
	const n = 6
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if code, flags, body, _ := get(c, "http://svc:9081/hold", nil); code != 200 {
				t.Errorf("held request: %d %s %q", code, flags, body)
			}
		})
	}
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := app.inflight.Load(); got != n {
			return fmt.Sprintf("%d requests at the backend, want %d at once", got, n)
		}
		return ""
	})
	conns := app.conns()
	close(app.release)
	wg.Wait()
	if len(conns) != n/2 {
		t.Errorf("%d streams arrived on %d connections (%v), want %d: two streams each", n, len(conns), conns, n/2)
	}
	for k, v := range conns {
		if v != 2 {
			t.Errorf("connection %s carried %d streams, want 2", k, v)
		}
	}
}

// http.useClientProtocol: an HTTP/1.1 port's backend gets HTTP/2 when the
// client spoke HTTP/2 to its sidecar, and HTTP/1.1 when it spoke that.
func TestConnPoolUseClientProtocol(t *testing.T) {
	leak.Check(t)
	const base = "127.83.4"
	newConnApp(t, base+".2:9080", "svc")
	_, client := poolMesh(t, base, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      http: {useClientProtocol: true}
`)
	c := client.Client()
	defer c.CloseIdleConnections()
	if code, _, _, h := get(c, "http://svc:9080/", nil); code != 200 || h.Get("X-Seen-Proto") != "1" {
		t.Errorf("HTTP/1.1 client: %d, the backend saw HTTP/%s; want 200 over HTTP/1.1", code, h.Get("X-Seen-Proto"))
	}
	h2 := h2cClient(client)
	defer h2.CloseIdleConnections()
	code, flags, body, h := get(h2, "http://svc:9080/", nil)
	if code != 200 || h.Get("X-Seen-Proto") != "2" {
		t.Errorf("HTTP/2 client: %d %s %q, the backend saw HTTP/%s; want 200 over HTTP/2", code, flags, body, h.Get("X-Seen-Proto"))
	}
}

// h2cClient speaks HTTP/2 with prior knowledge to the pod's sidecar.
func h2cClient(p *meshtest.Pod) *http.Client {
	var ps http.Protocols
	ps.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Protocols:   &ps,
		Proxy:       http.ProxyURL(&url.URL{Scheme: "http", Host: net.JoinHostPort(p.IP.String(), "15001")}),
		DialContext: p.Dialer().DialContext,
	}}
}

// tcp.idleTimeout on a TCP service: a proxied connection that carries
// bytes stays open past the timeout, and is closed once nothing has moved
// either way for that long (Envoy's default would be an hour).
func TestConnPoolTCPIdleTimeout(t *testing.T) {
	leak.Check(t)
	const base = "127.83.5"
	echoApp(t, base+".2:9000")
	_, client := poolMesh(t, base, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      tcp: {idleTimeout: 500ms}
`)
	conn, br := tcpConnect(t, client, "svc:9000")
	defer conn.Close()
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; time.Since(start) < 1200*time.Millisecond; i++ {
		<-tick.C
		fmt.Fprintf(conn, "line %d\n", i)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, err := br.ReadString('\n'); err != nil || got != fmt.Sprintf("line %d\n", i) {
			t.Fatalf("after %v of traffic: %q, %v; want the echo (the connection is not idle)", time.Since(start).Round(time.Millisecond), got, err)
		}
	}
	last := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := br.ReadByte()
	idle := time.Since(last)
	if err != io.EOF {
		t.Fatalf("idle connection: %v after %v, want it closed (EOF)", err, idle)
	}
	// The sidecar counts from its last byte on the wire, a little before
	// the echo reached us, in the kernel's jiffies.
	if idle < 450*time.Millisecond {
		t.Errorf("closed after %v idle, want about the 500ms idleTimeout", idle)
	}
}

// tcpConnect opens a CONNECT tunnel to target through the pod's forward
// proxy.
func tcpConnect(t *testing.T, p *meshtest.Pod, target string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := p.Dialer().Dial("tcp", p.IP.String()+":15001")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		c.Close()
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	c.SetDeadline(time.Time{})
	return c, br
}

// l4Balancer stands for what sits behind one address in front of several
// backends (a Service VIP under kube-proxy, a cloud load balancer): each
// connection it accepts goes to the backend current at that moment.
// Blackhole makes the connections open so far swallow every byte both
// ways, as a path that died without a reset does.
type l4Balancer struct {
	target atomic.Pointer[string]

	mu    sync.Mutex
	conns []net.Conn
	dead  []*atomic.Bool
}

func newL4Balancer(t *testing.T, addr, first string) *l4Balancer {
	t.Helper()
	b := &l4Balancer{}
	b.target.Store(&first)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	pump := func(dst, src net.Conn, dead *atomic.Bool) {
		defer dst.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !dead.Load() {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", *b.target.Load())
			if err != nil {
				down.Close()
				continue
			}
			dead := new(atomic.Bool)
			b.mu.Lock()
			b.conns = append(b.conns, down, up)
			b.dead = append(b.dead, dead)
			b.mu.Unlock()
			wg.Go(func() { pump(up, down, dead) })
			wg.Go(func() { pump(down, up, dead) })
		}
	})
	return b
}

func (b *l4Balancer) blackhole() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.dead {
		d.Store(true)
	}
}

// A client's one long-lived HTTP/2 connection to its sidecar, and the
// sidecar's to a service behind one address: after a second backend
// appears behind that address, new streams reach it once the sidecar's
// upstream connection reaches the proxy's maximum age (shortened here
// from its 5 minute default), and no request fails on the way, including
// one in flight as the connection ages out. With the age turned off the
// connection stays on the first backend.
func TestConnPoolHTTP2ConnectionAgeRebalances(t *testing.T) {
	leak.Check(t)
	const base = "127.83.6"
	newConnApp(t, base+".3:9081", "a")
	newConnApp(t, base+".4:9081", "b")
	lb := newL4Balancer(t, base+".2:9081", base+".3:9081")
	m, client := poolMesh(t, base, "", func(o *sidecar.Options) { o.MaxConnectionAge = 400 * time.Millisecond })
	pinned := m.Sidecar("pinned", base+".5", nil, func(o *sidecar.Options) { o.MaxConnectionAge = -1 })
	m.WaitSynced()
	c, p := h2cClient(client), h2cClient(pinned)
	defer c.CloseIdleConnections()
	defer p.CloseIdleConnections()
	for _, cl := range []*http.Client{c, p} {
		if code, flags, body, _ := get(cl, "http://svc:9081/", nil); code != 200 || body != "a" {
			t.Fatalf("before the second backend: %d %s %q, want a", code, flags, body)
		}
	}
	b := base + ".4:9081"
	lb.target.Store(&b)

	slow := make(chan string, 1)
	go func() {
		code, flags, body, _ := get(c, "http://svc:9081/slow?d=800ms", nil)
		slow <- fmt.Sprintf("%d %s %q", code, flags, body)
	}()
	meshtest.Eventually(t, 10*time.Second, func() string {
		code, flags, body, _ := get(c, "http://svc:9081/", nil)
		if code != 200 {
			t.Fatalf("while the connection ages: %d %s %q", code, flags, body)
		}
		if body != "b" {
			return "new streams still reach " + body + ", want the new backend b"
		}
		return ""
	})
	if got := <-slow; got != `200  "a"` {
		t.Errorf("the stream in flight as its connection aged out: %s, want a's 200", got)
	}
	// Three times the other's age, at the pace of a steady client.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(1200 * time.Millisecond); time.Now().Before(deadline); <-tick.C {
		if code, flags, body, _ := get(p, "http://svc:9081/", nil); code != 200 || body != "a" {
			t.Fatalf("age off: %d %s %q, want the pinned connection's backend a", code, flags, body)
		}
	}
}

// http.http2KeepAlive: an HTTP/2 connection whose path died silently is
// found by its unanswered PING and closed, so the requests after it go on
// a new connection (here, to the second backend now behind the address).
// Without pings they would keep going down the dead connection.
func TestConnPoolHTTP2KeepAlive(t *testing.T) {
	leak.Check(t)
	const base = "127.83.7"
	newConnApp(t, base+".3:9081", "a")
	newConnApp(t, base+".4:9081", "b")
	lb := newL4Balancer(t, base+".2:9081", base+".3:9081")
	_, client := poolMesh(t, base, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      http:
        http2KeepAlive: {interval: 200ms, timeout: 300ms}
`, func(o *sidecar.Options) { o.MaxConnectionAge = -1 })
	c := h2cClient(client)
	defer c.CloseIdleConnections()
	if code, flags, body, _ := get(c, "http://svc:9081/", nil); code != 200 || body != "a" {
		t.Fatalf("before: %d %s %q, want a", code, flags, body)
	}
	lb.blackhole()
	b := base + ".4:9081"
	lb.target.Store(&b)
	start := time.Now()
	meshtest.Eventually(t, 8*time.Second, func() string {
		if code, flags, body, _ := get(c, "http://svc:9081/", nil); code != 200 || body != "b" {
			return fmt.Sprintf("after the path died: %d %s %q, want b's 200 on a new connection", code, flags, body)
		}
		return ""
	})
	t.Logf("a new connection answered %v after the old one went silent", time.Since(start).Round(time.Millisecond))
}

// tcp.maxConnectionDuration on a TCP service: a proxied connection is
// closed at that age even while bytes flow (Envoy's
// max_downstream_connection_duration, which Istio sets from it).
func TestConnPoolTCPMaxConnectionDuration(t *testing.T) {
	leak.Check(t)
	const base = "127.83.8"
	echoApp(t, base+".2:9000")
	_, client := poolMesh(t, base, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      tcp: {maxConnectionDuration: 600ms}
`)
	conn, br := tcpConnect(t, client, "svc:9000")
	defer conn.Close()
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; time.Since(start) < 5*time.Second; i++ {
		<-tick.C
		fmt.Fprintf(conn, "line %d\n", i)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := br.ReadString('\n')
		if err == nil && got == fmt.Sprintf("line %d\n", i) {
			continue
		}
		age := time.Since(start)
		// Closed with a line in flight, the socket may answer with a reset.
		closed := err == io.EOF || errors.Is(err, syscall.ECONNRESET)
		if !closed || age < 600*time.Millisecond || age > 3*time.Second {
			t.Fatalf("busy connection after %v: %q, %v; want it closed at its 600ms age", age.Round(time.Millisecond), got, err)
		}
		return
	}
	t.Fatal("the connection was still open after 5s of traffic, want it closed at its 600ms age")
}

// tcpKeepalive holds for a sidecar's socket to a peer's tunnel port too:
// the TCP connection under the mTLS tunnel gets the rule's options.
func TestConnPoolTCPKeepaliveThroughTunnel(t *testing.T) {
	leak.Check(t)
	const base = "127.83.9"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  selector: {app: svc}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc}
spec: {address: %s.2, serviceAccount: svc, labels: {app: svc, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy:
    connectionPool:
      tcp:
        tcpKeepalive: {time: 9s, interval: 2s, probes: 5}
`, base))
	meshtest.Backend(t, base+".2:9080", "svc", nil)
	m.Sidecar("svc", base+".2", map[string]string{"app": "svc"}, authzIdentity(t, ca, "svc"))
	client := m.Sidecar("sleep", base+".1", nil, authzIdentity(t, ca, "sleep"))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	if code, flags, body, _ := get(c, "http://svc:9080/", nil); code != 200 || body != "svc" {
		t.Fatalf("GET: %d %s %q", code, flags, body)
	}
	if n := statInt(t, client, "tunnel.upstream.ssl.handshake"); n != 1 {
		t.Fatalf("%d mTLS tunnel handshakes, want the one under this request", n)
	}
	ka, idle, intvl, cnt := socketOptions(t, netip.AddrPortFrom(client.IP, 0), netip.MustParseAddrPort(base+".2:15008"))
	if ka != 1 || idle != 9 || intvl != 2 || cnt != 5 {
		t.Errorf("tunnel socket: SO_KEEPALIVE %d, TCP_KEEPIDLE %d, TCP_KEEPINTVL %d, TCP_KEEPCNT %d; want 1, 9, 2, 5", ka, idle, intvl, cnt)
	}
}

// namedGreeter is the gRPC test service answering with its name in the
// x-backend header.
type namedGreeter struct {
	greeter
	name string
}

func (g *namedGreeter) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	grpc.SetHeader(ctx, metadata.Pairs("x-backend", g.name))
	return &testpb.SimpleResponse{}, nil
}

func (g *namedGreeter) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	s.SetHeader(metadata.Pairs("x-backend", g.name))
	return g.greeter.StreamingOutputCall(in, s)
}

func grpcServer(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &namedGreeter{name: name})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
}

// The same for a grpc-go client holding one connection to its sidecar:
// once the sidecar's upstream connection ages out, its calls reach the
// second backend behind the service's address, and a server stream open
// across the age gets all its messages.
func TestConnPoolGRPCConnectionAgeRebalances(t *testing.T) {
	leak.Check(t)
	const base = "127.83.10"
	grpcServer(t, base+".3:7070", "a")
	grpcServer(t, base+".4:7070", "b")
	lb := newL4Balancer(t, base+".2:7070", base+".3:7070")
	_, client := poolMesh(t, base, "", func(o *sidecar.Options) { o.MaxConnectionAge = 400 * time.Millisecond })
	cc, err := grpc.NewClient("passthrough:///svc:7070", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(connectDialer(client)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stub := testpb.NewTestServiceClient(cc)
	call := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var h metadata.MD
		_, err := stub.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&h))
		return strings.Join(h.Get("x-backend"), ","), err
	}
	if got, err := call(); err != nil || got != "a" {
		t.Fatalf("before the second backend: %q, %v; want a", got, err)
	}
	b := base + ".4:7070"
	lb.target.Store(&b)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const msgs = 4
	params := make([]*testpb.ResponseParameters, msgs)
	for i := range params {
		params[i] = &testpb.ResponseParameters{Size: 8, IntervalUs: 250_000}
	}
	stream, err := stub.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	streamed := make(chan string, 1)
	go func() {
		n := 0
		for {
			if _, err := stream.Recv(); err != nil {
				h, _ := stream.Header()
				streamed <- fmt.Sprintf("%d messages from %v, then %v", n, h.Get("x-backend"), err)
				return
			}
			n++
		}
	}()
	meshtest.Eventually(t, 10*time.Second, func() string {
		got, err := call()
		if err != nil {
			t.Fatalf("while the connection ages: %v", err)
		}
		if got != "b" {
			return "calls still reach " + got + ", want the new backend b"
		}
		return ""
	})
	if got, want := <-streamed, fmt.Sprintf("%d messages from [a], then EOF", msgs); got != want {
		t.Errorf("the stream open across its connection's age: %s, want %s", got, want)
	}
}
