package hcm_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// Pipelined plain requests are answered in order on one connection, and a
// request that needs net/http (Expect: 100-continue) later on the same
// connection is handed over with the bytes already read, and answered too.
func TestFastPathPipelinedThenHandedOver(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	c := f.dial(t, 10*time.Second)
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: svc\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc"+
		"HEAD /3 HTTP/1.1\r\nHost: svc\r\n\r\n")
	br := bufio.NewReader(c)
	for i, method := range []string{"GET", "POST", "HEAD"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (method != "HEAD") != (len(b) > 0) || resp.Header.Get("Date") == "" {
			t.Errorf("response %d to %s: %d, %d body bytes, Date %q", i+1, method, resp.StatusCode, len(b), resp.Header.Get("Date"))
		}
	}
	io.WriteString(c, "POST /4 HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("Expect: 100-continue after plain requests: %v, %v", resp, err)
	}
	io.WriteString(c, "xyz")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the handed-over request: %v, %v", resp, err)
	}
	resp.Body.Close()
	if got := f.Backend.Bodies(); strings.Join(got, ",") != ",abc,,xyz" {
		t.Errorf("backend bodies %q, want the four requests' in order", got)
	}
}

// Plain requests keep their connection alive on the fast path.
func TestFastPathKeepsConnectionsAlive(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	c := f.dial(t, 10*time.Second)
	br := bufio.NewReader(c)
	for i := range 3 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on one connection: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Close {
			t.Fatalf("request %d: the connection is not kept alive", i+1)
		}
	}
}

// A request asking to close gets Connection: close and the connection
// ends after its response, as net/http does.
func TestFastPathConnectionClose(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	c := f.dial(t, 10*time.Second)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !resp.Close { // net/http reads Connection: close into Close
		t.Errorf("the response to Connection: close did not say close")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the response: %v, want EOF", err)
	}
}

// Request heads on the wire, each on a new connection: what the fast
// parser takes reaches the backend as net/http would have read it, what
// it refuses is answered 400 and never forwarded, and what it leaves to
// net/http (obs-fold, heads over its buffer, escaped paths) is served
// there.
func TestFastPathRequestHeads(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	for _, tc := range []struct {
		name, raw string
		status    int
		body      string            // the backend's request body, when forwarded
		header    map[string]string // headers the backend must see
	}{
		{"plain POST", "POST /echo?x=1 HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nX-Spaces: \t a b \t\r\n\r\nhello",
			200, "hello", map[string]string{"X-Spaces": "a b", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"}},
		{"X-Forwarded-For appended", "GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Request-Id: abc\r\n\r\n",
			200, "", map[string]string{"X-Forwarded-For": "10.0.0.1, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Request-Id": "abc"}},
		{"duplicate equal content-length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
			200, "abc", map[string]string{"Content-Length": "3"}},
		{"duplicate differing content-length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "", nil},
		{"empty content-length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: \r\n\r\n", 400, "", nil},
		{"content-length with sign", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: +3\r\n\r\nabc", 400, "", nil},
		{"control byte in a value", "GET / HTTP/1.1\r\nHost: svc\r\nX-Bad: a\x01b\r\n\r\n", 400, "", nil},
		{"DEL in a value", "GET / HTTP/1.1\r\nHost: svc\r\nX-Bad: a\x7fb\r\n\r\n", 400, "", nil},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "", nil},
		{"space in the target", "GET /a b HTTP/1.1\r\nHost: svc\r\n\r\n", 400, "", nil},
		{"bad method", "G(T / HTTP/1.1\r\nHost: svc\r\n\r\n", 400, "", nil},
		{"control byte in the query", "GET /a?b\x01 HTTP/1.1\r\nHost: svc\r\n\r\n", 400, "", nil},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: svc\r\nX-Fold: a\r\n  b\r\n\r\n", 200, "", map[string]string{"X-Fold": "a b"}},
		{"pragma no-cache", "GET / HTTP/1.1\r\nHost: svc\r\nPragma: no-cache\r\n\r\n", 200, "", map[string]string{"Cache-Control": "no-cache"}},
		{"escaped path", "GET /a%20b HTTP/1.1\r\nHost: svc\r\n\r\n", 200, "", nil},
		{"header past the fast buffer", "GET / HTTP/1.1\r\nHost: svc\r\nX-Long: " + strings.Repeat("a", 8<<10) + "\r\n\r\n",
			200, "", map[string]string{"X-Long": strings.Repeat("a", 8<<10)}},
		{"headers past the limit", "GET / HTTP/1.1\r\nHost: svc\r\nX-Long: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.Backend.Headers())
			c, err := net.Dial("tcp", f.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.raw)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			hs, bodies := f.Backend.Headers(), f.Backend.Bodies()
			if tc.status != 200 {
				if len(hs) != before {
					t.Errorf("a refused request reached the backend: %v", hs[before:])
				}
				return
			}
			if len(hs) != before+1 {
				t.Fatalf("%d requests reached the backend, want 1", len(hs)-before)
			}
			if bodies[before] != tc.body {
				t.Errorf("backend body %q, want %q", bodies[before], tc.body)
			}
			for k, v := range tc.header {
				if got := hs[before].Get(k); got != v {
					t.Errorf("backend %s: %q, want %q", k, got, v)
				}
			}
			if len(hs[before]["X-Request-Id"]) != 1 || len(hs[before].Get("X-Request-Id")) == 0 {
				t.Errorf("backend X-Request-Id: %q, want one", hs[before]["X-Request-Id"])
			}
		})
	}
}

// Route timeouts on the fast path, where one timer serves all of a
// connection's requests: a slow upstream gets 504 UT, a client stalled
// mid-body gets 504 UT and its connection closes, and the requests before
// and after a timeout on the same connection are not cut short by it.
func TestFastPathRouteTimeouts(t *testing.T) {
	leak.Check(t)
	const timeout = 300 * time.Millisecond
	c, br, addr := dialAppFrontEnd(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}, hcm.Config{Outbound: true}, timeout)
	do := func(raw string) (*http.Response, string, time.Duration) {
		t.Helper()
		start := time.Now()
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), time.Since(start)
	}
	// Requests that each take most of the timeout: if one connection's
	// timer carried a deadline over, a later one would be cut short.
	for i := range 5 {
		time.Sleep(timeout / 2)
		if resp, body, _ := do("POST /fast HTTP/1.1\r\nHost: svc\r\nContent-Length: 2\r\n\r\nhi"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i+1, resp.StatusCode, body)
		}
	}
	resp, _, took := do("GET /slow HTTP/1.1\r\nHost: svc\r\n\r\n")
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hcm.FlagsHeader) != "UT" {
		t.Fatalf("slow upstream: %d %q, want 504 UT", resp.StatusCode, resp.Header.Get(hcm.FlagsHeader))
	}
	if took < timeout || took > timeout+time.Second {
		t.Errorf("504 after %v, want about %v", took, timeout)
	}
	for i := range 3 {
		if resp, body, _ := do("POST /fast HTTP/1.1\r\nHost: svc\r\nContent-Length: 2\r\n\r\nhi"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d after the timeout: %d %q", i+1, resp.StatusCode, body)
		}
	}

	// A body that stops halfway: 504 at the route timeout, then the
	// connection closes (the rest of the body cannot be told from a
	// next request).
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	io.WriteString(c2, "POST /fast HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\nhalf")
	br2 := bufio.NewReader(c2)
	resp, err = http.ReadResponse(br2, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hcm.FlagsHeader) != "UT" {
		t.Errorf("stalled body: %d %q, want 504 UT", resp.StatusCode, resp.Header.Get(hcm.FlagsHeader))
	}
	if took := time.Since(start); took > timeout+time.Second {
		t.Errorf("504 after %v, want about %v", took, timeout)
	}
	if _, err := br2.ReadByte(); err != io.EOF {
		t.Errorf("after the 504 to a stalled body: %v, want the connection closed", err)
	}
}

// The fast writer takes each upstream response's header map as its own
// and lends it, emptied, to the upstream's head parser for the
// connection's next response: on one keep-alive connection, each response
// carries its own upstream's headers and no header of the one before (a
// chunked one, which the parser leaves to net/http after filling the lent
// map, included), and hop-by-hop headers stay off the client's hop.
func TestFastPathResponseHeadersPerResponse(t *testing.T) {
	leak.Check(t)
	answers := []string{
		"HTTP/1.1 200 OK\r\nX-First: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 201 Created\r\nX-Second: 2\r\nContent-Length: 1\r\n\r\nb",
		"HTTP/1.1 200 OK\r\nX-Chunked: 1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nd\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: h\r\nX-Third: 3\r\n\r\nc",
	}
	backend := serveOneConn(t, func(c net.Conn, br *bufio.Reader) {
		for _, a := range answers {
			if _, err := readRawMessage(br); err != nil {
				return
			}
			io.WriteString(c, a)
		}
		io.Copy(io.Discard, br) // until the proxy's cluster closes
	})
	c, br, _ := dialFrontEnd(t, backend, hcm.Config{Outbound: true}, 5*time.Second, 10*time.Second)
	want := []struct {
		code       int
		has, lacks []string
		body       string
	}{
		{200, []string{"X-First"}, []string{"Keep-Alive", "X-Second", "X-Third"}, "a"},
		{201, []string{"X-Second"}, []string{"X-First", "Keep-Alive", "X-Third"}, "b"},
		{200, []string{"X-Chunked"}, []string{"X-First", "X-Second", "X-Third"}, "d"},
		{200, []string{"X-Third"}, []string{"X-First", "X-Second", "X-Chunked", "X-Hop", "Keep-Alive"}, "c"},
	}
	for i, w := range want {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != w.code || string(b) != w.body || resp.Header.Get("Date") == "" {
			t.Errorf("response %d: %d %q, Date %q; want %d %q and a Date", i+1, resp.StatusCode, b, resp.Header.Get("Date"), w.code, w.body)
		}
		for _, k := range w.has {
			if resp.Header.Get(k) == "" {
				t.Errorf("response %d lacks %s: %v", i+1, k, resp.Header)
			}
		}
		for _, k := range w.lacks {
			if v, ok := resp.Header[k]; ok {
				t.Errorf("response %d has %s: %q", i+1, k, v)
			}
		}
		if resp.Close {
			t.Fatalf("response %d closes the connection", i+1)
		}
	}
}

// A request that went upstream on the direct path leaves its header map,
// emptied, to the connection's next request: on one keep-alive
// connection, the backend sees each request's headers and none of the
// one before.
func TestFastPathRequestHeadersPerRequest(t *testing.T) {
	leak.Check(t)
	heads := make(chan string, 8)
	backend := serveOneConn(t, func(c net.Conn, br *bufio.Reader) {
		for {
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\r\n" {
					break
				}
				head.WriteString(line)
			}
			heads <- head.String()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	c, br, _ := dialFrontEnd(t, backend, hcm.Config{Outbound: true}, 5*time.Second, 10*time.Second)
	for i, tc := range []struct{ send, want, never string }{
		{"X-One: 1\r\nX-Shared: a\r\n", "X-One: 1", "X-Two"},
		{"X-Two: 2\r\n", "X-Two: 2", "X-One"},
		{"X-Shared: b\r\n", "X-Shared: b", "X-Two"},
		{"", "Host: svc", "X-Shared"},
	} {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n"+tc.send+"\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		resp.Body.Close()
		head := <-heads
		if !strings.Contains(head, tc.want+"\r\n") || strings.Contains(head, tc.never) || strings.Count(head, "X-Shared") > 1 {
			t.Errorf("request %d reached the backend as\n%s\nwant %q and no %q", i+1, head, tc.want, tc.never)
		}
	}
}

// Between requests the fast path waits without reading first
// (netio.RawIO.Serve), and what arrives meanwhile must not be missed: a
// request sent while the one before is still being answered, a body that
// follows its head later, a head in pieces; all are answered in order on
// one connection, which the idle timeout still closes afterwards.
func TestFastPathWaitsBetweenRequests(t *testing.T) {
	leak.Check(t)
	const idle = 300 * time.Millisecond
	c, br, _ := dialAppFrontEnd(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			time.Sleep(100 * time.Millisecond)
		}
		io.WriteString(w, r.URL.Path+":"+string(body))
	}, hcm.Config{Outbound: true, IdleTimeout: idle}, 0) // no route timeout: no body deadline
	send := func(gap time.Duration, parts ...string) {
		for i, p := range parts {
			if i > 0 {
				time.Sleep(gap)
			}
			io.WriteString(c, p)
		}
	}
	expect := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want || resp.Close {
			t.Fatalf("got %d %q (close %v), want 200 %q on a kept connection", resp.StatusCode, b, resp.Close, want)
		}
	}

	send(30*time.Millisecond, "POST /slow HTTP/1.1\r\nHost: svc\r\nContent-Length: 1\r\n\r\na",
		"GET /next HTTP/1.1\r\nHost: svc\r\n\r\n") // while /slow is answered
	expect("/slow:a")
	expect("/next:")
	send(30*time.Millisecond, "POST /body HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\n", "hel", "lo")
	expect("/body:hello")
	send(30*time.Millisecond, "GET /pie", "ces HTTP/1.1\r\nHo", "st: svc\r\n\r\n")
	expect("/pieces:")
	// A body slower than the idle timeout: only the wait between
	// requests is bounded by it.
	send(idle+100*time.Millisecond, "POST /late HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\n\r\n", "body")
	expect("/late:body")

	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("an idle connection: %v, want EOF after the idle timeout", err)
	}
	if waited := time.Since(start); waited < idle-50*time.Millisecond {
		t.Errorf("closed after %v idle, before the idle timeout (%v)", waited, idle)
	}
}

// serveOneConn is a backend on loopback that accepts one connection and
// hands it, with a reader, to serve, for tests that answer upstream byte
// by byte; the connection closes when serve returns. Its cleanup waits
// for serve, so call it before starting the front end: cleanups run last
// first, and the front end's, closing the proxy's upstream connection,
// are what let serve return.
func serveOneConn(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c, bufio.NewReader(c))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// dialAppFrontEnd serves app on loopback behind a front end with cfg and
// routeTimeout, and dials the front end as dialFrontEnd does, with a 20 s
// deadline.
func dialAppFrontEnd(t *testing.T, app http.HandlerFunc, cfg hcm.Config, routeTimeout time.Duration) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: app}
	go hs.Serve(ln)
	c, br, addr := dialFrontEnd(t, ln.Addr().String(), cfg, routeTimeout, 20*time.Second)
	t.Cleanup(func() { hs.Close() }) // before the front end's own cleanups
	return c, br, addr
}

// dialFrontEnd starts a front end with cfg and routeTimeout in front of
// the upstream at upstreamAddr, and returns a connection to it (with the
// given deadline), its reader, and the front end's address.
func dialFrontEnd(t *testing.T, upstreamAddr string, cfg hcm.Config, routeTimeout, deadline time.Duration) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	f := startFrontEndTo(t, upstreamAddr, cfg, routeTimeout)
	c := f.dial(t, deadline)
	return c, bufio.NewReader(c), f.Addr
}
