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
