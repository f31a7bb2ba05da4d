package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

func directGet(t *testing.T, c *Cluster, ctx context.Context, method, body string) (*http.Response, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://svc/x?q=1", rd)
	resp, _, err := c.RoundTrip(ctx, req, &Call{})
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// Small requests take the direct path: one connection kept alive, the
// request head and body in one write, nothing added to the headers.
func TestDirectPathKeepsAliveAndSendsOneWrite(t *testing.T) {
	leak.Check(t)
	var reads atomic.Int64
	var sawUA atomic.Bool
	s := startServer(t, "127.0.0.1", false, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != "" {
			sawUA.Store(true)
		}
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(b))
	})
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{Dial: func(ctx context.Context, h *balance.Host) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", h.Addr())
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: nc, writes: &reads}, nil
	}}, assignment(s))
	for i := range 5 {
		_, body, err := directGet(t, c, context.Background(), http.MethodPost, "payload")
		if err != nil || body != "POST /x?q=1 payload" {
			t.Fatalf("request %d: %q, %v", i, body, err)
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Errorf("%d connections for 5 sequential requests, want 1", n)
	}
	if n := reads.Load(); n != 5 {
		t.Errorf("%d writes for 5 requests with bodies, want 5 (head and body together)", n)
	}
	if sawUA.Load() {
		t.Errorf("the direct path added a User-Agent")
	}
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// closingServer is an upstream that speaks HTTP/1.1 by hand, so tests
// control exactly when it closes connections, and counts what it sees.
type closingServer struct {
	addr     string
	conns    atomic.Int64 // connections accepted
	closed   atomic.Int64 // connections the server has closed
	requests atomic.Int64 // requests read, on any connection
}

// rawUpstream answers each request on a connection with resp(n), n
// counting requests on that connection, and closes the connection when
// closeAfter(n) says so.
func rawUpstream(t *testing.T, resp func(n int) string, closeAfter func(n int) bool) *closingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &closingServer{addr: ln.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer s.closed.Add(1)
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					s.requests.Add(1)
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, resp(n))
					if closeAfter(n) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return s
}

// An idle connection the upstream closed is noticed on use and the request
// goes again on a new one, when that is safe (GET); a POST whose bytes
// were written is not replayed.
func TestDirectPathRetriesStaleConnection(t *testing.T) {
	leak.Check(t)
	s := rawUpstream(t, func(int) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }, func(int) bool { return true })
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{}, assignment(&server{name: s.addr}))
	for i := range 3 {
		if _, body, err := directGet(t, c, context.Background(), http.MethodGet, ""); err != nil || body != "ok" {
			t.Fatalf("GET %d on a connection the upstream closed after each answer: %q, %v", i, body, err)
		}
		// The next request must meet a connection the upstream has
		// closed: its close reaches the client's socket at once on
		// loopback. Idle for far less than staleCheckAfter, the
		// connection is reused without a peek.
		waitFor(t, "the upstream to close its connection", func() bool { return s.closed.Load() == s.conns.Load() })
	}
	if n := s.conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
	if n := s.requests.Load(); n != 3 {
		t.Errorf("the upstream read %d requests for 3 GETs, want 3", n)
	}
	// The POST is written whole on the closed connection (a write to a
	// socket whose peer sent FIN succeeds), then reading the answer meets
	// the close. Once written, it may have been processed, so it must fail
	// rather than go again on a new connection, where the upstream would
	// read it.
	_, _, err := directGet(t, c, context.Background(), http.MethodPost, "x")
	if err == nil {
		t.Errorf("a POST written on a connection the upstream had closed succeeded: it was sent again")
	}
	if n := s.requests.Load(); n != 3 {
		t.Errorf("the upstream read %d requests after the POST, want still 3: the POST was replayed on a new connection", n)
	}
	if n := s.conns.Load(); n != 3 {
		t.Errorf("%d connections after the POST, want still 3: it must not dial again for a written POST", n)
	}
}

// MaxRequestsPerConnection closes a connection after that many requests,
// telling the upstream with Connection: close.
func TestDirectPathMaxRequestsPerConnection(t *testing.T) {
	leak.Check(t)
	s := startServer(t, "127.0.0.1", false, nil)
	c := newCluster(t, &xdsresource.Cluster{Name: "c", MaxRequestsPerConnection: 2}, Options{}, assignment(s))
	for range 6 {
		if _, _, err := directGet(t, c, context.Background(), http.MethodGet, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.opened.Load(); n != 3 {
		t.Errorf("%d connections for 6 requests at 2 per connection, want 3", n)
	}
}

// A request whose context ends while it waits for the answer fails with
// UT, and its connection is not reused.
func TestDirectPathTimeout(t *testing.T) {
	leak.Check(t)
	release := make(chan struct{})
	s := startServer(t, "127.0.0.1", false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			<-release
		}
	})
	defer close(release)
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{}, assignment(s))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequest(http.MethodGet, "http://svc/?slow=1", nil)
	_, flags, err := c.RoundTrip(ctx, req, &Call{})
	if err == nil || flags != UpstreamRequestTimeout {
		t.Fatalf("slow request: %v, flags %v; want UT", err, flags)
	}
	if _, _, err := directGet(t, c, context.Background(), http.MethodGet, ""); err != nil {
		t.Fatalf("after the timeout: %v", err)
	}
	if n := s.opened.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the timed-out one is not reused)", n)
	}
}

// A POST must not be sent on a connection the upstream closed while it
// sat idle (it could not be replayed once written): the direct path peeks
// at connections idle for a while and dials a new one instead.
func TestDirectPathSkipsConnectionClosedWhileIdle(t *testing.T) {
	leak.Check(t)
	s := rawUpstream(t, func(int) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }, func(int) bool { return true })
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{}, assignment(&server{name: s.addr}))
	for i := range 3 {
		time.Sleep(2 * staleCheckAfter)
		if _, body, err := directGet(t, c, context.Background(), http.MethodPost, "x"); err != nil || body != "ok" {
			t.Fatalf("POST %d after the upstream closed the idle connection: %q, %v", i, body, err)
		}
	}
	if n := s.conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}
