package hcm_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// TestRequestSmugglingRejected sends requests whose framing two HTTP/1.1
// parsers could read differently (RFC 9112 §6.3, §11.2): each is answered
// with an error and closes the connection, and nothing of it, nor of the
// request hidden in its body, reaches the backend. Envoy rejects the same
// shapes (its allow_chunked_length is off by default).
func TestRequestSmugglingRejected(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)

	// hidden is a second request that a backend reading the first one's
	// body by the other framing would take for the next request.
	const hidden = "GET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"content-length then transfer-encoding",
			"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, 400},
		{"transfer-encoding then content-length",
			"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\n" + hidden, 400},
		{"transfer-encoding and content-length: 0",
			"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400},
		{"mixed-case names",
			"POST / HTTP/1.1\r\nHost: svc\r\ncontent-LENGTH: 4\r\ntRaNsFeR-eNcOdInG: chunked\r\n\r\n0\r\n\r\n" + hidden, 400},
		{"HTTP/1.0 with both",
			"POST / HTTP/1.0\r\nHost: svc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, 400},
		{"duplicate differing content-length",
			"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nContent-Length: 42\r\n\r\nabcd" + hidden, 400},
		{"content-length list",
			"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4, 42\r\n\r\nabcd" + hidden, 400},
		{"signed content-length",
			"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: +4\r\n\r\nabcd" + hidden, 400},
		{"space before colon",
			"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + hidden, 400},
		// net/http answers 501 to codings it does not implement.
		{"chunked and identity",
			"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + hidden, 501},
		{"obfuscated coding",
			"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + hidden, 501},
		// net/http answers OPTIONS * itself; the count of requests
		// the handler sees must not slip.
		{"after OPTIONS *",
			"OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n" +
				"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, 400},
		// The bad request follows a good one in the same packet
		// (pipelined): the good one is served, the bad one is not.
		{"pipelined after a good request",
			"GET /first HTTP/1.1\r\nHost: svc\r\n\r\n" +
				"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.Backend.Requests.Load()
			resps, closed := exchange(t, f.Addr, tc.raw, false)
			if len(resps) == 0 {
				t.Fatalf("no response")
			}
			wantGood, forwarded := 0, 0
			if strings.HasPrefix(tc.raw, "GET /first") {
				wantGood, forwarded = 1, 1
			}
			if strings.HasPrefix(tc.raw, "OPTIONS") {
				wantGood = 1
			}
			if len(resps) != wantGood+1 {
				t.Fatalf("got %d responses %v, want %d", len(resps), statuses(resps), wantGood+1)
			}
			if got := resps[wantGood].StatusCode; got != tc.status {
				t.Errorf("status %d, want %d", got, tc.status)
			}
			if !closed {
				t.Errorf("connection left open after a request with ambiguous framing")
			}
			if n := f.Backend.Requests.Load() - before; n != int64(forwarded) {
				t.Errorf("backend received %d request(s), want %d: %q", n, forwarded, f.Backend.Bodies())
			}
		})
	}
}

// TestSmugglingByteByByte sends an ambiguous request one byte per
// segment, so that no read holds a whole line (or the first bytes that
// tell HTTP/1 from HTTP/2: "P" starts both "POST" and the h2c preface).
func TestSmugglingByteByByte(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	raw := "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	resps, closed := exchange(t, f.Addr, raw, true)
	if got := statuses(resps); len(got) != 1 || got[0] != "400" || !closed {
		t.Errorf("statuses %v, closed %v; want one 400 and the connection closed", got, closed)
	}
	if n := f.Backend.Requests.Load(); n != 0 {
		t.Errorf("backend received %d request(s)", n)
	}
	if n := f.Server.Stats().RqAmbiguousFraming.Load(); n != 1 {
		t.Errorf("RqAmbiguousFraming = %d, want 1", n)
	}
}

// TestUnambiguousFramingForwarded checks the other side: a chunked body
// alone, a Content-Length alone, repeated equal Content-Lengths, and
// pipelined requests of both kinds are all forwarded with their bodies.
func TestUnambiguousFramingForwarded(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	inner := "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	raw := "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nworld" +
		"POST /c HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" +
		// A body that looks like a request with both headers is data.
		"POST /d HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(inner), inner) +
		"GET /e HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n"
	resps, _ := exchange(t, f.Addr, raw, false)
	if got := statuses(resps); strings.Join(got, " ") != "200 200 200 200 200" {
		t.Fatalf("statuses %v, want five 200s", got)
	}
	want := []string{"hello", "world", "abc", inner, ""}
	got := f.Backend.Bodies()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("backend received bodies %q, want %q", got, want)
	}
}

// exchange writes raw on a new connection (one byte per write when
// slowly) and reads the responses until the server closes the connection
// or stays silent for a second.
func exchange(t *testing.T, addr, raw string, slowly bool) (resps []*http.Response, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	go func() { // the server may stop reading early
		if !slowly {
			io.WriteString(c, raw)
			return
		}
		for i := range len(raw) {
			if _, err := io.WriteString(c, raw[i:i+1]); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return resps, false
			}
			return resps, true
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resps = append(resps, resp)
		if resp.Close {
			_, err := br.ReadByte()
			return resps, err != nil
		}
	}
}

func statuses(resps []*http.Response) []string {
	var s []string
	for _, r := range resps {
		s = append(s, r.Status[:3])
	}
	return s
}

// TestH2ConnectionFieldsNotForwarded sends h2c requests carrying fields
// that are meaningless or forbidden in HTTP/2 (RFC 9113 §8.2.2), among
// them the Transfer-Encoding that HTTP/1 smuggling relies on: each stream
// is answered or reset, and none reaches the backend, where a downgrade
// to HTTP/1.1 could give the fields their HTTP/1 meaning.
func TestH2ConnectionFieldsNotForwarded(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	base := []string{":method=POST", ":scheme=http", ":authority=svc", ":path=/"}
	for _, extra := range [][]string{
		{"content-length=4", "transfer-encoding=chunked"},
		{"transfer-encoding=chunked"},
		{"connection=keep-alive"},
		{"keep-alive=timeout=5"},
		{"proxy-connection=keep-alive"},
		{"upgrade=websocket"},
		{"te=gzip"},
	} {
		t.Run(strings.Join(extra, ","), func(t *testing.T) {
			block := hpackLiteral(append(append([]string(nil), base...), extra...)...)
			data := []byte(h2ClientPreface)
			data = append(data, h2Frame(h2Settings, 0, 0, nil)...)
			data = append(data, h2Frame(h2Headers, h2FlagEndHeaders, 1, block)...)
			data = append(data, h2Frame(h2Data, h2FlagEndStream, 1, []byte("0\r\n\r\n"))...)
			c, err := net.Dial("tcp", f.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var got []byte
			buf := make([]byte, 4096)
			for !h2Answered(got) {
				n, err := c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if !h2Answered(got) {
				t.Errorf("stream neither answered nor reset: %q", got)
			}
			if n := f.Backend.Requests.Load(); n != 0 {
				t.Errorf("backend received %d request(s)", n)
			}
		})
	}
}

// TestDesyncedBytesNotServed covers the requests that framing alone does
// not refuse, but where net/http's server would lose its place in the
// byte stream: a chunked body that turns out malformed part way through,
// and a Content-Length body still arriving when the route times out.
// net/http keeps such a connection open (the proxy serves requests full
// duplex, which turns off its own guard) and would read what follows, a
// body's bytes, as the next request. Nothing after the failed body may
// reach the backend as a request, and the connection must close.
func TestDesyncedBytesNotServed(t *testing.T) {
	leak.Check(t)
	const hidden = "GET /smuggled HTTP/1.1\r\nHost: svc\r\nX-Smuggled: yes\r\n\r\n"
	smuggled := func(b *feBackend) bool {
		for _, h := range b.Headers() {
			if h.Get("X-Smuggled") != "" {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct{ name, raw string }{
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n" + hidden},
		{"no CRLF after chunk data", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + hidden},
		// The same after a plain request, so that the connection starts
		// on the fast path and is handed to net/http.
		{"bad chunk size after a plain request", "GET /first HTTP/1.1\r\nHost: svc\r\n\r\n" +
			"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n" + hidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
			_, closed := exchange(t, f.Addr, tc.raw, false)
			if smuggled(f.Backend) {
				t.Errorf("the bytes after the malformed body reached the backend as a request")
			}
			if !closed {
				t.Errorf("connection left open after a malformed body")
			}
		})
	}

	t.Run("body after the route timeout", func(t *testing.T) {
		f := startFrontEnd(t, hcm.Config{Outbound: true}, 200*time.Millisecond)
		// On the fast path, after it, and on net/http's (which serves
		// every request with an Expect).
		for _, first := range []string{"", "GET /first HTTP/1.1\r\nHost: svc\r\n\r\n"} {
			for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
				testLateBody(t, f, first, "POST /slow HTTP/1.1\r\nHost: svc\r\n"+expect+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(hidden)), hidden, smuggled)
			}
			// Part of the body in time, the rest late.
			testLateBody(t, f, first, "POST /slow HTTP/1.1\r\nHost: svc\r\n"+fmt.Sprintf("Content-Length: %d\r\n\r\nhello", 5+len(hidden)), hidden, smuggled)
			chunked := "POST /slow HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
			testLateBody(t, f, first, chunked, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(hidden), hidden), smuggled)
			testLateBody(t, f, first, chunked, hidden, smuggled)
		}
	})
}

// testLateBody sends first and head, reads their responses (the last a
// 504: the route times out waiting for the body), then sends body, which
// must not be served as a request.
func testLateBody(t *testing.T, f *frontEnd, first, head, body string, smuggled func(*feBackend) bool) {
	t.Helper()
	{
		{
			c := f.dial(t, 5*time.Second)
			io.WriteString(c, first+head)
			br := bufio.NewReader(c)
			var got []string
			for len(got) < strings.Count(first, "GET")+1 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("reading a response: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode < 200 {
					continue // 100 Continue; the client holds the body back
				}
				got = append(got, resp.Status[:3])
			}
			if got[len(got)-1] != "504" {
				t.Errorf("statuses %v, want the last 504", got)
			}
			// The body the route gave up on arrives now; it is a body,
			// not a request.
			io.WriteString(c, body)
			c.SetReadDeadline(time.Now().Add(time.Second))
			if resp, err := http.ReadResponse(br, nil); err == nil {
				t.Errorf("a response (%s) to the late body", resp.Status)
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("connection left open after the late body")
			}
			c.Close()
			if smuggled(f.Backend) {
				t.Errorf("%q then %q: the late body reached the backend as a request", first, head)
			}
		}
	}
}

// TestEarlyAnswerThenMalformedBody has the upstream answer a chunked
// request before its body has ended; the client then sends a malformed
// chunk and a request after it. net/http discards the rest of a body
// after the handler returns, and, serving full duplex, keeps the
// connection when that discard fails, so it would read the request after
// the bad chunk as the next one. The proxy closes the connection after
// the early answer instead, as Envoy does.
func TestEarlyAnswerThenMalformedBody(t *testing.T) {
	leak.Check(t)
	addr := serveOneConn(t, func(c net.Conn, br *bufio.Reader) {
		for { // the head, then answer at once
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		io.Copy(io.Discard, br)
	})
	f := startFrontEndTo(t, addr, hcm.Config{Outbound: true}, 5*time.Second)
	c := f.dial(t, 5*time.Second)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the early answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	io.WriteString(c, "zz\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(time.Second))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("a response (%s) to the request after the malformed chunk", resp.Status)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("connection left open after the malformed chunk")
	}
	if !resp.Close {
		t.Errorf("the early answer keeps the connection, whose request has not ended")
	}
}
