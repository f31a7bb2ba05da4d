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
	resp, _, err := c.RoundTrip(ctx, req, 0, false)
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

// rawUpstream answers each request on a connection with resp(n), n
// counting requests on that connection, and closes the connection when
// close(n) says so.
func rawUpstream(t *testing.T, resp func(n int) string, closeAfter func(n int) bool) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
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
	return ln.Addr().String(), &conns
}

// An idle connection the upstream closed is noticed on use and the request
// goes again on a new one, when that is safe (GET); a POST whose bytes
// were written is not replayed.
func TestDirectPathRetriesStaleConnection(t *testing.T) {
	leak.Check(t)
	addr, conns := rawUpstream(t, func(int) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }, func(int) bool { return true })
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{}, assignment(&server{name: addr}))
	for i := range 3 {
		if _, body, err := directGet(t, c, context.Background(), http.MethodGet, ""); err != nil || body != "ok" {
			t.Fatalf("GET %d on a connection the upstream closed after each answer: %q, %v", i, body, err)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
	_, _, err := directGet(t, c, context.Background(), http.MethodPost, "x")
	if err == nil {
		// The write may fail (then replaying is safe) or succeed (then it
		// must not be replayed); both are fine as long as it did not
		// silently go twice, which the server would show.
		t.Logf("POST on a stale connection succeeded (its write failed first and was replayed)")
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
	_, flags, err := c.RoundTrip(ctx, req, 0, false)
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
	addr, conns := rawUpstream(t, func(int) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }, func(int) bool { return true })
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{}, assignment(&server{name: addr}))
	for i := range 3 {
		time.Sleep(2 * staleCheckAfter)
		if _, body, err := directGet(t, c, context.Background(), http.MethodPost, "x"); err != nil || body != "ok" {
			t.Fatalf("POST %d after the upstream closed the idle connection: %q, %v", i, body, err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}
