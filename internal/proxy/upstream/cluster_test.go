package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// server is a real HTTP server on a loopback address that counts the
// connections it accepts and closes.
type server struct {
	*httptest.Server
	name           string
	opened, closed atomic.Int64
	requests       atomic.Int64
}

// startServer serves h on ip (a distinct 127.x address stands for a pod),
// with unencrypted HTTP/2 as well as HTTP/1.1 when h2c.
func startServer(t testing.TB, ip string, h2c bool, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		w.Header().Set("X-Server", s.name)
		if h != nil {
			h(w, r)
		}
	}))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	ts.Listener.Close()
	ts.Listener = ln
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	if h2c {
		var ps http.Protocols
		ps.SetHTTP1(true)
		ps.SetUnencryptedHTTP2(true)
		ts.Config.Protocols = &ps
	}
	ts.Start()
	s.Server = ts
	s.name = ln.Addr().String()
	t.Cleanup(ts.Close)
	return s
}

func assignment(servers ...*server) *xdsresource.ClusterLoadAssignment {
	cla := &xdsresource.ClusterLoadAssignment{ClusterName: "c"}
	loc := xdsresource.LocalityEndpoints{Weight: 1}
	for _, s := range servers {
		host, port, _ := net.SplitHostPort(s.name)
		p, _ := strconv.Atoi(port)
		loc.Endpoints = append(loc.Endpoints, xdsresource.Endpoint{Address: host, Port: uint32(p), Weight: 1, Healthy: true})
	}
	cla.Localities = []xdsresource.LocalityEndpoints{loc}
	return cla
}

func newCluster(t testing.TB, xc *xdsresource.Cluster, opts Options, cla *xdsresource.ClusterLoadAssignment) *Cluster {
	t.Helper()
	if xc.Name == "" {
		xc.Name = "c"
	}
	c := New(xc, balance.New(xc), opts)
	c.Update(cla)
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends a GET through c and returns the answering server's name.
func get(t testing.TB, c *Cluster, hash uint64, hasHash bool) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://svc.ns/", nil)
	resp, flags, err := c.RoundTrip(context.Background(), req, &Call{Hash: hash, HasHash: hasHash})
	if err != nil {
		t.Fatalf("RoundTrip: %v (flags %v)", err, flags)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get("X-Server")
}

func TestRequestsReachPickedHost(t *testing.T) {
	leak.Check(t)
	a := startServer(t, "127.0.0.1", false, nil)
	b := startServer(t, "127.0.0.2", false, nil)
	d := startServer(t, "127.0.0.3", false, nil)
	c := newCluster(t, &xdsresource.Cluster{LBPolicy: xdsresource.LBRingHash}, Options{}, assignment(a, b, d))
	seen := map[string]bool{}
	for i := range 50 {
		hash := uint64(i) * 0x9e3779b97f4a7c15
		want := c.Balancer().Pick(hash, true).Addr()
		if got := get(t, c, hash, true); got != want {
			t.Fatalf("hash %x: served by %s, balancer picks %s", hash, got, want)
		}
		seen[want] = true
	}
	if len(seen) != 3 {
		t.Errorf("50 hashes reached %d hosts, want 3", len(seen))
	}
}

func TestKeepAliveReuse(t *testing.T) {
	leak.Check(t)
	s := startServer(t, "127.0.0.1", false, nil)
	c := newCluster(t, &xdsresource.Cluster{}, Options{}, assignment(s))
	for range 20 {
		get(t, c, 0, false)
	}
	if n := s.opened.Load(); n != 1 {
		t.Errorf("20 sequential requests opened %d connections, want 1", n)
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	leak.Check(t)
	s := startServer(t, "127.0.0.1", false, nil)
	c := newCluster(t, &xdsresource.Cluster{MaxRequestsPerConnection: 2}, Options{}, assignment(s))
	for range 6 {
		get(t, c, 0, false)
	}
	if n := s.opened.Load(); n != 3 {
		t.Errorf("6 requests at 2 per connection opened %d connections, want 3", n)
	}
}

func TestHTTP2Multiplexes(t *testing.T) {
	leak.Check(t)
	const n = 50
	var arrived sync.WaitGroup
	arrived.Add(n)
	var protos sync.Map
	s := startServer(t, "127.0.0.1", true, func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		if r.URL.Path == "/warm" {
			return
		}
		// Hold every request until all are in flight at once, so that they
		// must share the connection concurrently, not take turns.
		arrived.Done()
		arrived.Wait()
	})
	c := newCluster(t, &xdsresource.Cluster{HTTP2: true}, Options{}, assignment(s))
	warm, _ := http.NewRequest(http.MethodGet, "http://svc/warm", nil)
	resp, _, err := c.RoundTrip(context.Background(), warm, &Call{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	errs := make(chan error, n)
	for range n {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
			resp, flags, err := c.RoundTrip(context.Background(), req, &Call{})
			if err != nil {
				errs <- fmt.Errorf("%v (%v)", err, flags)
				return
			}
			resp.Body.Close()
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := s.opened.Load(); got != 1 {
		t.Errorf("%d concurrent HTTP/2 requests used %d connections, want 1", n, got)
	}
	var got []string
	protos.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
	if diff := cmp.Diff([]string{"HTTP/2.0"}, got); diff != "" {
		t.Errorf("protocols seen by the server (-want +got):\n%s", diff)
	}
}

// TestUpgradeStaysHTTP1 sends an Upgrade request on an HTTP/2 cluster: the
// server must see HTTP/1.1 and the upgraded connection carry bytes both
// ways.
func TestUpgradeStaysHTTP1(t *testing.T) {
	leak.Check(t)
	s := startServer(t, "127.0.0.1", true, func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 || r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want an HTTP/1.1 upgrade, got "+r.Proto, http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo until the client closes
	})
	c := newCluster(t, &xdsresource.Cluster{HTTP2: true}, Options{}, assignment(s))
	req, _ := http.NewRequest(http.MethodGet, "http://svc/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, flags, err := c.RoundTrip(context.Background(), req, &Call{})
	if err != nil {
		t.Fatalf("RoundTrip: %v (%v)", err, flags)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	rw, ok := resp.Body.(io.ReadWriter)
	if !ok {
		t.Fatalf("101 body %T is not writable", resp.Body)
	}
	br := bufio.NewReader(rw)
	for _, msg := range []string{"ping\n", "pong\n"} {
		if _, err := io.WriteString(rw, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
}

func TestMaxRequestsOverflow(t *testing.T) {
	leak.Check(t)
	release := make(chan struct{})
	s := startServer(t, "127.0.0.1", false, func(http.ResponseWriter, *http.Request) { <-release })
	c := newCluster(t, &xdsresource.Cluster{CircuitBreakers: xdsresource.CircuitBreakers{MaxRequests: 2}}, Options{}, assignment(s))

	type result struct {
		flags Flags
		err   error
	}
	results := make(chan result, 5)
	for range 5 {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
			resp, flags, err := c.RoundTrip(context.Background(), req, &Call{})
			if err == nil {
				resp.Body.Close()
			}
			results <- result{flags, err}
		}()
	}
	// The two admitted requests hold their slots until release, so the
	// other three fail at once whatever the order.
	var got []string
	for range 3 {
		r := <-results
		if !errors.Is(r.err, ErrOverflow) {
			t.Errorf("error %v, want ErrOverflow", r.err)
		}
		got = append(got, r.flags.String())
	}
	close(release)
	for range 2 {
		if r := <-results; r.err != nil {
			t.Errorf("admitted request: %v (%v)", r.err, r.flags)
		}
	}
	if diff := cmp.Diff([]string{"UO", "UO", "UO"}, got); diff != "" {
		t.Errorf("flags of the rejected requests (-want +got):\n%s", diff)
	}
}

func TestConnectFailure(t *testing.T) {
	leak.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cla := &xdsresource.ClusterLoadAssignment{Localities: []xdsresource.LocalityEndpoints{{Weight: 1,
		Endpoints: []xdsresource.Endpoint{{Address: "127.0.0.1", Port: uint32(port), Weight: 1, Healthy: true}}}}}
	c := newCluster(t, &xdsresource.Cluster{}, Options{}, cla)
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	_, flags, err := c.RoundTrip(context.Background(), req, &Call{})
	if err == nil || flags != UpstreamConnectionFailure {
		t.Errorf("closed port: flags %v, error %v; want UF", flags, err)
	}
	if _, _, flags, err := c.DialTCP(context.Background(), &Call{}); err == nil || flags != UpstreamConnectionFailure {
		t.Errorf("DialTCP to a closed port: flags %v, error %v; want UF", flags, err)
	}
	if got := c.Balancer().Hosts()[0].Active(); got != 0 {
		t.Errorf("host has %d active requests after failures, want 0", got)
	}
}

func TestNoHealthyUpstream(t *testing.T) {
	leak.Check(t)
	c := newCluster(t, &xdsresource.Cluster{}, Options{}, nil)
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	if _, flags, err := c.RoundTrip(context.Background(), req, &Call{}); flags != NoHealthyUpstream || err == nil {
		t.Errorf("empty cluster: flags %v, error %v; want UH", flags, err)
	}
}

func TestRemovedHost(t *testing.T) {
	t.Run("h1", func(t *testing.T) { testRemovedHost(t, false) })
	t.Run("h2c", func(t *testing.T) { testRemovedHost(t, true) })
}

func testRemovedHost(t *testing.T, h2 bool) {
	leak.Check(t)
	slow := make(chan struct{})
	inSlow := make(chan struct{})
	a := startServer(t, "127.0.0.1", h2, func(_ http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inSlow)
			<-slow
		}
	})
	b := startServer(t, "127.0.0.2", h2, nil)
	c := newCluster(t, &xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin, HTTP2: h2}, Options{}, assignment(a, b))
	for range 4 {
		get(t, c, 0, false)
	}
	if a.requests.Load() == 0 {
		t.Fatal("round robin sent nothing to a")
	}
	// One request in flight to a across the update: it must finish.
	slowDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://svc/slow", nil)
		for {
			resp, _, err := c.RoundTrip(context.Background(), req, &Call{})
			if err != nil {
				slowDone <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Header.Get("X-Server") == a.name {
				slowDone <- nil
				return
			}
		}
	}()
	<-inSlow
	before := a.requests.Load()
	c.Update(assignment(b))

	// a's idle connection closes now; the busy one once its request ends.
	waitFor(t, "a's idle connections to close", func() bool { return a.closed.Load() >= a.opened.Load()-1 })
	close(slow)
	if err := <-slowDone; err != nil {
		t.Errorf("request in flight across the update: %v", err)
	}
	waitFor(t, "all of a's connections to close", func() bool { return a.closed.Load() == a.opened.Load() })
	for range 10 {
		if got := get(t, c, 0, false); got != b.name {
			t.Errorf("request after the update served by %s, want %s", got, b.name)
		}
	}
	if got := a.requests.Load(); got != before {
		t.Errorf("a got %d requests after its removal", got-before)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSourceAddress(t *testing.T) {
	leak.Check(t)
	remote := make(chan string, 1)
	s := startServer(t, "127.0.0.1", false, func(_ http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		remote <- host
	})
	c := newCluster(t, &xdsresource.Cluster{}, Options{LocalIP: net.ParseIP("127.0.0.7")}, assignment(s))
	get(t, c, 0, false)
	if got := <-remote; got != "127.0.0.7" {
		t.Errorf("server saw the request from %s, want the pod IP 127.0.0.7", got)
	}
}

func TestDialTCP(t *testing.T) {
	leak.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { ln.Close() })
	remotes := make(chan string, 4)
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			remotes <- nc.RemoteAddr().(*net.TCPAddr).IP.String()
			wg.Go(func() { defer nc.Close(); io.Copy(nc, nc) })
		}
	})
	port := ln.Addr().(*net.TCPAddr).Port
	cla := &xdsresource.ClusterLoadAssignment{Localities: []xdsresource.LocalityEndpoints{{Weight: 1,
		Endpoints: []xdsresource.Endpoint{{Address: "127.0.0.1", Port: uint32(port), Weight: 1, Healthy: true}}}}}
	c := newCluster(t, &xdsresource.Cluster{
		ConnectTimeout:  100 * time.Millisecond,
		CircuitBreakers: xdsresource.CircuitBreakers{MaxConnections: 1},
	}, Options{LocalIP: net.ParseIP("127.0.0.9")}, cla)

	nc, h, flags, err := c.DialTCP(context.Background(), &Call{})
	if err != nil {
		t.Fatalf("DialTCP: %v (%v)", err, flags)
	}
	if got := <-remotes; got != "127.0.0.9" {
		t.Errorf("upstream saw %s, want 127.0.0.9", got)
	}
	if h.Active() != 1 {
		t.Errorf("host active %d during the connection, want 1", h.Active())
	}
	io.WriteString(nc, "hello")
	nc.(interface{ CloseWrite() error }).CloseWrite()
	if got, err := io.ReadAll(nc); string(got) != "hello" || err != nil {
		t.Errorf("echo through a half-closed connection: %q, %v", got, err)
	}

	// The one connection slot is taken: a second dial waits ConnectTimeout
	// as a pending request, then overflows.
	if _, _, flags, err := c.DialTCP(context.Background(), &Call{}); flags != UpstreamOverflow {
		t.Errorf("second connection over MaxConnections 1: flags %v, error %v; want UO", flags, err)
	}
	nc.Close()
	if h.Active() != 0 {
		t.Errorf("host active %d after Close, want 0", h.Active())
	}
	nc, _, flags, err = c.DialTCP(context.Background(), &Call{})
	if err != nil {
		t.Fatalf("DialTCP after the slot freed: %v (%v)", err, flags)
	}
	nc.Close()
}

func TestCloseReleasesEverything(t *testing.T) {
	leak.Check(t)
	release := make(chan struct{})
	s := startServer(t, "127.0.0.1", true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
	})
	t.Cleanup(func() { close(release) })
	for _, h2 := range []bool{false, true} {
		c := New(&xdsresource.Cluster{Name: "c", HTTP2: h2}, balance.New(&xdsresource.Cluster{}), Options{})
		c.Update(assignment(s))
		get(t, c, 0, false)
		errc := make(chan error, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "http://svc/slow", nil)
			_, _, err := c.RoundTrip(context.Background(), req, &Call{})
			errc <- err
		}()
		waitFor(t, "the slow request to arrive", func() bool { return s.requests.Load() >= 2 })
		c.Close()
		if err := <-errc; err == nil {
			t.Errorf("http2=%v: request in flight at Close succeeded", h2)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
		if _, _, err := c.RoundTrip(context.Background(), req, &Call{}); !errors.Is(err, ErrClosed) {
			t.Errorf("http2=%v: RoundTrip after Close: %v, want ErrClosed", h2, err)
		}
		s.requests.Store(0)
	}
}

func TestFlagsString(t *testing.T) {
	for f, want := range map[Flags]string{
		0: "-", UpstreamOverflow: "UO", NoRouteFound: "NR",
		UpstreamConnectionFailure | UpstreamRetryLimitExceeded: "UF,URX",
	} {
		if got := f.String(); got != want {
			t.Errorf("Flags(%d).String() = %q, want %q", f, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = UpstreamConnectionFailure.String() }); n != 0 {
		t.Errorf("a single flag's String allocates %v times", n)
	}
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprint("http2=", h2), func(t *testing.T) {
			leak.Check(t)
			release := make(chan struct{})
			s := startServer(t, "127.0.0.1", h2, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/slow" {
					<-release
				}
			})
			c := newCluster(t, &xdsresource.Cluster{HTTP2: h2}, Options{}, assignment(s))
			get(t, c, 0, false)
			get(t, c, 0, false)
			errc := make(chan error, 1)
			go func() {
				req, _ := http.NewRequest(http.MethodGet, "http://svc/slow", nil)
				resp, flags, err := c.RoundTrip(context.Background(), req, &Call{})
				if err != nil {
					errc <- fmt.Errorf("%v (%v)", err, flags)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				errc <- err
			}()
			waitFor(t, "the slow request to arrive", func() bool { return s.requests.Load() == 3 })
			shut := make(chan error, 1)
			go func() { shut <- c.Shutdown(context.Background()) }()

			waitFor(t, "Shutdown to begin", c.isClosed)
			req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
			if _, _, err := c.RoundTrip(context.Background(), req, &Call{}); !errors.Is(err, ErrClosed) {
				t.Errorf("request during Shutdown: %v, want ErrClosed", err)
			}
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned %v with a request in flight", err)
			case <-time.After(50 * time.Millisecond):
			}
			close(release)
			if err := <-errc; err != nil {
				t.Errorf("request in flight across Shutdown: %v", err)
			}
			if err := <-shut; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			waitFor(t, "the server to see every connection closed", func() bool { return s.closed.Load() == s.opened.Load() })
			if got := s.requests.Load(); got != 3 {
				t.Errorf("server got %d requests, want 3", got)
			}
		})
	}
}

func TestMaxPendingRequests(t *testing.T) {
	leak.Check(t)
	release := make(chan struct{})
	s := startServer(t, "127.0.0.1", false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
	})
	c := newCluster(t, &xdsresource.Cluster{CircuitBreakers: xdsresource.CircuitBreakers{
		MaxConnections: 1, MaxPendingRequests: 1,
	}}, Options{}, assignment(s))

	errc := make(chan error, 2)
	send := func() {
		req, _ := http.NewRequest(http.MethodGet, "http://svc/slow", nil)
		resp, flags, err := c.RoundTrip(context.Background(), req, &Call{})
		if err != nil {
			errc <- fmt.Errorf("%v (%v)", err, flags)
			return
		}
		resp.Body.Close()
		errc <- nil
	}
	go send()
	waitFor(t, "the first request to hold the only connection", func() bool { return s.requests.Load() == 1 })
	go send()
	waitFor(t, "the second request to wait for a connection", func() bool { return c.pending.Load() == 1 })

	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	_, flags, err := c.RoundTrip(context.Background(), req, &Call{})
	if flags != UpstreamOverflow || !errors.Is(err, ErrOverflow) {
		t.Errorf("third request with one connection and one pending: flags %v, error %v; want UO", flags, err)
	}
	close(release)
	for range 2 {
		if err := <-errc; err != nil {
			t.Errorf("admitted request: %v", err)
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Errorf("server saw %d connections with MaxConnections 1", n)
	}
}

// MaxRetries bounds the retries in flight; a retry budget replaces it
// with a share of the active requests, never below its minimum. Retries
// taken, refused and successful are counted by Envoy's names.
func TestRetryBudgetAndStats(t *testing.T) {
	leak.Check(t)
	s := startServer(t, "127.0.0.1", false, nil)
	c := newCluster(t, &xdsresource.Cluster{CircuitBreakers: xdsresource.CircuitBreakers{MaxRetries: 2}}, Options{}, assignment(s))
	got := []bool{c.StartRetry(), c.StartRetry(), c.StartRetry()}
	c.EndRetry(true)
	got = append(got, c.StartRetry())
	if diff := cmp.Diff([]bool{true, true, false, true}, got); diff != "" {
		t.Errorf("max_retries 2 (-want +got):\n%s", diff)
	}
	c.EndRetry(false)
	c.EndRetry(false)
	get(t, c, 0, false)
	want := Stats{CxActive: 1, CxTotal: 1, RqRetry: 3, RqRetryOverflow: 1, RqRetrySuccess: 1}
	if diff := cmp.Diff(want, c.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}

	// 50 % of no active request is 0: the minimum of 1 holds.
	b := newCluster(t, &xdsresource.Cluster{CircuitBreakers: xdsresource.CircuitBreakers{MaxRetries: 100,
		RetryBudget: &xdsresource.RetryBudget{Percent: 50, MinConcurrency: 1}}}, Options{}, assignment(s))
	if !b.StartRetry() || b.StartRetry() {
		t.Error("budget 50%, min 1, nothing active: want exactly one retry admitted")
	}
	b.EndRetry(false)
}

// TestDownstreamProtocolKept sends an HTTP/2 request (as gRPC arrives)
// through a cluster without HTTP2: it must leave as HTTP/2, trailers and
// all, while an HTTP/1.1 one stays HTTP/1.1.
func TestDownstreamProtocolKept(t *testing.T) {
	leak.Check(t)
	s := startServer(t, "127.0.0.1", true, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("X-Proto", r.Proto)
		io.WriteString(w, "body")
		w.Header().Set("Grpc-Status", "0")
	})
	for _, tc := range []struct {
		name string
		cfg  *xdsresource.Cluster
		want []string
	}{
		{"use_downstream_protocol_config", &xdsresource.Cluster{DownstreamProtocol: true}, []string{"HTTP/2.0 0", "HTTP/1.1 0"}},
		// Envoy's default: HTTP/1.1 whatever the downstream spoke (an
		// inbound cluster of an http port after an h2 upgrade between
		// sidecars must not send h2 to an HTTP/1.1 app).
		{"no protocol options", &xdsresource.Cluster{}, []string{"HTTP/1.1 0", "HTTP/1.1 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := protocolsSeen(t, newCluster(t, tc.cfg, Options{}, assignment(s))); !cmp.Equal(tc.want, got) {
				t.Errorf("protocol and trailer seen (-want +got):\n%s", cmp.Diff(tc.want, got))
			}
		})
	}
}

// protocolsSeen sends one HTTP/2 and one HTTP/1.1 request through c and
// returns the protocol and trailer the server saw for each.
func protocolsSeen(t *testing.T, c *Cluster) []string {
	t.Helper()
	var got []string
	for _, major := range []int{2, 1} {
		req, _ := http.NewRequest(http.MethodPost, "http://svc/pkg.Svc/Method", strings.NewReader("x"))
		req.ProtoMajor, req.ProtoMinor = major, 0
		resp, flags, err := c.RoundTrip(context.Background(), req, &Call{})
		if err != nil {
			t.Fatalf("RoundTrip: %v (%v)", err, flags)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, resp.Header.Get("X-Proto")+" "+resp.Trailer.Get("Grpc-Status"))
	}
	return got
}

// TestMaxRequestsPerConnectionHTTP2 counts the connections a real h2c
// backend sees: an HTTP/2 connection takes no new stream after its
// MaxRequestsPerConnection-th and closes once those are done (Envoy's
// max_requests_per_connection applies to HTTP/2 upstreams too).
func TestMaxRequestsPerConnectionHTTP2(t *testing.T) {
	leak.Check(t)
	var protos sync.Map
	s := startServer(t, "127.0.0.1", true, func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
	})
	c := newCluster(t, &xdsresource.Cluster{HTTP2: true, MaxRequestsPerConnection: 3}, Options{}, assignment(s))
	for range 10 {
		get(t, c, 0, false)
	}
	if n := s.opened.Load(); n != 4 {
		t.Errorf("10 HTTP/2 requests at 3 per connection opened %d connections, want 4", n)
	}
	if n := s.requests.Load(); n != 10 {
		t.Errorf("backend saw %d requests, want 10", n)
	}
	// The three full connections close once their streams are done.
	waitFor(t, "3 retired HTTP/2 connections closed", func() bool { return s.closed.Load() == 3 })
	var got []string
	protos.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
	if diff := cmp.Diff([]string{"HTTP/2.0"}, got); diff != "" {
		t.Errorf("protocols seen by the backend (-want +got):\n%s", diff)
	}
}

// TestMaxRequestsPerConnectionHTTP2InFlight retires an HTTP/2 connection
// while its streams run: they finish on it, and the next request opens a
// new connection.
func TestMaxRequestsPerConnectionHTTP2InFlight(t *testing.T) {
	leak.Check(t)
	var arrived sync.WaitGroup
	arrived.Add(2)
	s := startServer(t, "127.0.0.1", true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived.Done()
			arrived.Wait()
		}
	})
	c := newCluster(t, &xdsresource.Cluster{HTTP2: true, MaxRequestsPerConnection: 3}, Options{}, assignment(s))
	get(t, c, 0, false) // opens the connection: its 1st stream
	errs := make(chan error, 2)
	for range 2 { // its 2nd and 3rd, in flight together
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "http://svc/hold", nil)
			resp, flags, err := c.RoundTrip(context.Background(), req, &Call{})
			if err != nil {
				errs <- fmt.Errorf("%v (%v)", err, flags)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Errorf("3 streams opened %d connections, want 1", n)
	}
	get(t, c, 0, false)
	if n := s.opened.Load(); n != 2 {
		t.Errorf("the 4th request found %d connections opened, want 2", n)
	}
	waitFor(t, "the retired connection closed", func() bool { return s.closed.Load() == 1 })
}
