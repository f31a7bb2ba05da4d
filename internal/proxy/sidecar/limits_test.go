package sidecar_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// Untrusted input past the limits gets Envoy's answers, counted: request
// headers over 60 KiB a 431, headers that do not arrive within the
// read-header timeout a 408; an endless header line is cut off without
// the proxy reading it all; and the proxy keeps serving afterwards.
func TestDownstreamLimits(t *testing.T) {
	leak.Check(t)
	const headerTimeout = 300 * time.Millisecond
	am := newAppMesh(t, "127.77.16", "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Big", strconv.Itoa(len(r.Header.Get("X-Big"))))
		io.WriteString(w, "app")
	}, func(o *sidecar.Options) { o.ReadHeaderTimeout = headerTimeout })
	stat := func(name string) int {
		n, _ := strconv.Atoi(statsLine(t, am.client, name))
		return n
	}
	request := func(c net.Conn, extra string) *http.Response {
		t.Helper()
		io.WriteString(c, "GET http://app:8080/limits HTTP/1.1\r\nHost: app:8080\r\n"+extra+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	t.Run("LargeHeadersBelowTheLimit", func(t *testing.T) {
		// 50 KiB of headers cross both proxies.
		resp := request(dialProxy(t, am.client), "X-Big: "+strings.Repeat("b", 50<<10)+"\r\n")
		if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Big") != strconv.Itoa(50<<10) {
			t.Errorf("50 KiB header: %s, the app saw %s bytes", resp.Status, resp.Header.Get("X-Seen-Big"))
		}
	})

	t.Run("HeadersTooLarge", func(t *testing.T) {
		before := stat("http.outbound.downstream_rq_header_too_large")
		resp := request(dialProxy(t, am.client), "X-Big: "+strings.Repeat("b", 80<<10)+"\r\n")
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("80 KiB header: %s, want 431", resp.Status)
		}
		if got := stat("http.outbound.downstream_rq_header_too_large"); got != before+1 {
			t.Errorf("downstream_rq_header_too_large %d -> %d, want one more", before, got)
		}
	})

	t.Run("EndlessHeaderLine", func(t *testing.T) {
		// One header line that never ends: the proxy answers 431 and
		// closes having read about the limit, so our writes fail long
		// before 64 MB went.
		c := dialProxy(t, am.client)
		answer := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(c)
			answer <- string(b)
		}()
		io.WriteString(c, "GET http://app:8080/ HTTP/1.1\r\nHost: app:8080\r\nX-Endless: ")
		chunk := []byte(strings.Repeat("e", 64<<10))
		var sent int
		var werr error
		for sent < 64<<20 && werr == nil {
			var n int
			n, werr = c.Write(chunk)
			sent += n
		}
		if werr == nil {
			t.Errorf("the proxy took all %d MB of one header line", sent>>20)
		}
		if got := <-answer; !strings.HasPrefix(got, "HTTP/1.1 431 ") {
			t.Errorf("endless header line answered %.60q after %d KB, want 431", got, sent>>10)
		}
	})

	t.Run("HeadersTrickledPastTheTimeout", func(t *testing.T) {
		before := stat("http.outbound.downstream_rq_timeout")
		c := dialProxy(t, am.client)
		answer := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(c)
			answer <- string(b)
		}()
		io.WriteString(c, "GET http://app:8080/ HTTP/1.1\r\nHost: app:8080\r\n")
		var got string
	trickle:
		for i := 0; ; i++ {
			select {
			case got = <-answer:
				break trickle
			case <-time.After(headerTimeout / 4):
			}
			if _, err := io.WriteString(c, "X-Slow-"+strconv.Itoa(i)+": 1\r\n"); err != nil && !errors.Is(err, net.ErrClosed) {
				got = <-answer
				break
			}
			if i > 200 {
				t.Fatal("no answer to trickled headers")
			}
		}
		// One 408 and the close; nothing after it (net/http's own 400
		// once followed a second 408).
		if got != "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" {
			t.Errorf("trickled headers answered %q, want one 408 and the close", got)
		}
		if n := stat("http.outbound.downstream_rq_timeout"); n != before+1 {
			t.Errorf("downstream_rq_timeout %d -> %d, want one more", before, n)
		}
	})

	t.Run("IdleKeepAliveIsNotATimeout", func(t *testing.T) {
		// Idle between requests longer than the header timeout: the next
		// request on the connection is served, no 408.
		before := stat("http.outbound.downstream_rq_timeout")
		c := dialProxy(t, am.client)
		br := bufio.NewReader(c)
		for i := range 2 {
			if i > 0 {
				time.Sleep(2 * headerTimeout)
			}
			io.WriteString(c, "GET http://app:8080/ HTTP/1.1\r\nHost: app:8080\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %s", i, resp.Status)
			}
		}
		if n := stat("http.outbound.downstream_rq_timeout"); n != before {
			t.Errorf("downstream_rq_timeout %d -> %d for an idle keep-alive connection", before, n)
		}
	})

	t.Run("HTTP2HeadersTooLarge", func(t *testing.T) {
		// 62,000 bytes of headers on an h2c connection: net/http's 431,
		// counted with HTTP/1.1's, and in Envoy's HTTP/2 codec stat.
		before := stat("http.outbound.downstream_rq_header_too_large")
		beforeH2 := stat("http2.header_overflow")
		c := dialProxy(t, am.client)
		fr := h2Start(t, c)
		h2Headers(t, fr, 1, true, "x-big-1", strings.Repeat("b", 31000), "x-big-2", strings.Repeat("b", 31000))
		if got := h2Status(t, fr, 1); got != "431" {
			t.Errorf("62,000 bytes of HTTP/2 headers: %q, want 431", got)
		}
		if got := stat("http.outbound.downstream_rq_header_too_large"); got != before+1 {
			t.Errorf("downstream_rq_header_too_large %d -> %d, want one more", before, got)
		}
		if got := stat("http2.header_overflow"); got != beforeH2+1 {
			t.Errorf("http2.header_overflow %d -> %d, want one more", beforeH2, got)
		}
	})

	t.Run("HTTP2HeaderBlockStalled", func(t *testing.T) {
		// HEADERS without END_HEADERS, then nothing: the connection is
		// closed after the read-header timeout, counted.
		before := stat("http.outbound.downstream_rq_timeout")
		c := dialProxy(t, am.client)
		fr := h2Start(t, c)
		h2Headers(t, fr, 1, false, "x-slow", "1")
		if got := h2Status(t, fr, 1); got != "closed" {
			t.Errorf("stalled HTTP/2 header block: %q, want the connection closed", got)
		}
		if n := stat("http.outbound.downstream_rq_timeout"); n != before+1 {
			t.Errorf("downstream_rq_timeout %d -> %d, want one more", before, n)
		}
	})

	// Still serving.
	c := am.client.Client()
	defer c.CloseIdleConnections()
	if resp, body := meshtest.Get(t, c, "http://app:8080/", nil); resp.StatusCode != 200 || body != "app" {
		t.Errorf("after the limits: %d %q", resp.StatusCode, body)
	}
}

// h2Start opens h2c (prior knowledge) on c with a raw framer.
func h2Start(t *testing.T, c net.Conn) *http2.Framer {
	t.Helper()
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Acknowledge the server's settings now: a frame in the middle of a
	// header block would be a protocol error.
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return fr
		}
	}
}

// h2Headers sends a GET to app:8080 with the extra fields (name, value
// pairs) in frames of at most 16 KiB; with end false the block does not
// end.
func h2Headers(t *testing.T, fr *http2.Framer, stream uint32, end bool, extra ...string) {
	t.Helper()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	fields := []string{":method", "GET", ":scheme", "http", ":authority", "app:8080", ":path", "/limits"}
	fields = append(fields, extra...)
	for i := 0; i < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: true})
	}
	block := buf.Bytes()
	for first := true; first || len(block) > 0; first = false {
		k := min(len(block), 16<<10)
		frag := block[:k]
		block = block[k:]
		last := len(block) == 0 && end
		var err error
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: frag, EndStream: true, EndHeaders: last})
		} else {
			err = fr.WriteContinuation(stream, last, frag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// h2Status reads until stream is answered (its :status), or the
// connection ends ("goaway <code>", "closed").
func h2Status(t *testing.T, fr *http2.Framer, stream uint32) string {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "closed"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == stream {
				return f.PseudoValue("status")
			}
		case *http2.GoAwayFrame:
			return "goaway " + f.ErrCode.String()
		}
	}
}
