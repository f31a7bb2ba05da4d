package hcm_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// fuzzBound is how long the front end may take to answer or close a
// fuzzed connection. Its own limits are far shorter (fuzzFrontEnd): a
// 200 ms header and idle timeouts, a 250 ms route timeout, so that
// inputs that stall cost the fuzzer little time.
const fuzzBound = 10 * time.Second

// panicCatcher is the front end's log: net/http recovers a handler's
// panic and logs "panic serving ...", which would otherwise pass unseen.
type panicCatcher struct {
	mu     sync.Mutex
	panics []string
}

func (p *panicCatcher) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicCatcher) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicCatcher) WithGroup(string) slog.Handler            { return p }
func (p *panicCatcher) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		p.panics = append(p.panics, r.Message)
		p.mu.Unlock()
	}
	return nil
}

func (p *panicCatcher) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.panics
	p.panics = nil
	return out
}

type fuzzTarget struct {
	*frontEnd
	log *panicCatcher
}

func fuzzFrontEnd(f *testing.F) *fuzzTarget {
	pc := &panicCatcher{}
	fe := startFrontEnd(f, hcm.Config{
		Outbound:          true,
		ReadHeaderTimeout: 200 * time.Millisecond,
		IdleTimeout:       200 * time.Millisecond,
		Log:               slog.New(pc),
	}, 250*time.Millisecond)
	return &fuzzTarget{frontEnd: fe, log: pc}
}

// FuzzHTTP1 feeds arbitrary bytes to the front end as a downstream
// connection. Whatever they are, no handler panics, the front end answers
// or closes within fuzzBound, and it lets go of the connection
// afterwards; leak.Check finds goroutines left behind by the whole run.
// halfClose ends the client's side after the input, the way a client
// that sent everything does.
func FuzzHTTP1(f *testing.F) {
	leak.Check(f)
	ft := fuzzFrontEnd(f)
	for _, s := range http1Seeds() {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, halfClose bool) {
		ft.exercise(t, data, halfClose, http1Answered)
	})
}

// FuzzH2C is FuzzHTTP1 for HTTP/2 with prior knowledge: the input follows
// the client preface and is read as frames.
func FuzzH2C(f *testing.F) {
	leak.Check(f)
	ft := fuzzFrontEnd(f)
	for _, s := range h2Seeds() {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, frames []byte, halfClose bool) {
		data := append([]byte(h2ClientPreface), frames...)
		ft.exercise(t, data, halfClose, h2Answered)
	})
}

// exercise sends data on a new connection and waits until answered says
// the server has answered, or the server closes; then it checks that the
// server let go of the connection and logged no panic.
func (ft *fuzzTarget) exercise(t *testing.T, data []byte, halfClose bool, answered func([]byte) bool) {
	c, err := net.Dial("tcp", ft.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.Close()
	wg.Go(func() {
		if _, err := c.Write(data); err == nil && halfClose {
			c.(*net.TCPConn).CloseWrite()
		}
	})
	start := time.Now()
	c.SetReadDeadline(start.Add(fuzzBound))
	var got []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("neither an answer nor a close in %v; got %q", fuzzBound, trim(got))
			}
			break // closed (EOF or reset)
		}
		if !halfClose && answered(got) {
			break
		}
	}
	c.Close()
	for ft.Server.Stats().CxActive.Load() != 0 {
		if time.Since(start) > fuzzBound {
			t.Fatalf("the front end still holds %d connection(s) %v after the client closed", ft.Server.Stats().CxActive.Load(), fuzzBound)
		}
		time.Sleep(time.Millisecond)
	}
	if p := ft.log.take(); len(p) > 0 {
		t.Fatalf("handler panicked: %s", strings.Join(p, "\n"))
	}
}

func trim(b []byte) []byte {
	if len(b) > 512 {
		return b[:512]
	}
	return b
}

// http1Answered reports a complete status line: the server has answered
// the first request.
func http1Answered(got []byte) bool {
	return strings.Contains(string(got), "\r\n")
}

// h2Answered reports a GOAWAY, or a frame that ends or resets a stream:
// the server has answered a request, or given up on the connection.
func h2Answered(got []byte) bool {
	for len(got) >= 9 {
		length := int(got[0])<<16 | int(got[1])<<8 | int(got[2])
		typ, flags := got[3], got[4]
		stream := binary.BigEndian.Uint32(got[5:9]) & (1<<31 - 1)
		if typ == h2GoAway || typ == h2RSTStream && stream != 0 {
			return true
		}
		if (typ == h2Data || typ == h2Headers) && flags&h2FlagEndStream != 0 && stream != 0 {
			return true
		}
		if len(got) < 9+length {
			return false
		}
		got = got[9+length:]
	}
	return false
}

func http1Seeds() []string {
	long := strings.Repeat("a", 70<<10)
	return []string{
		"GET / HTTP/1.1\r\nHost: svc\r\n\r\n",
		"GET /path?q=1 HTTP/1.1\r\nHost: svc\r\nX-Request-Id: abc\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n",
		"GET http://svc.ns:8080/abs HTTP/1.1\r\nHost: svc.ns:8080\r\n\r\n",
		"HEAD / HTTP/1.0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n",
		"POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello",
		"POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 50\r\n\r\nshort",
		"POST /upload HTTP/1.1\r\nHost: svc\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
		"POST /chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer-A: 1\r\n\r\n",
		"POST /chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"POST /chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
		"GET / HTTP/1.1\r\nHost: svc\r\nX-Big: " + long + "\r\n\r\n",
		"GET /" + long + " HTTP/1.1\r\nHost: svc\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: -1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: svc\r\nX-Folded: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: svc\n\n",
		"CONNECT svc.ns:443 HTTP/1.1\r\nHost: svc.ns:443\r\n\r\n\x16\x03\x01",
		"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: svc\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nTE: trailers, deflate\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/9.9\r\nHost: svc\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"INVALID CONNECTION PREFACE\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: svc\r\n",
		"",
		"\x00\x01\x02\xff",
	}
}

// HTTP/2 framing for the h2c seeds (RFC 9113 §4, §6), written by hand:
// the test needs invalid frames as much as valid ones.
const (
	h2ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

	h2Data         = 0x0
	h2Headers      = 0x1
	h2Priority     = 0x2
	h2RSTStream    = 0x3
	h2Settings     = 0x4
	h2Ping         = 0x6
	h2GoAway       = 0x7
	h2WindowUpdate = 0x8
	h2Continuation = 0x9

	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
)

func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[5:], stream)
	return append(b, payload...)
}

// hpackLiteral encodes header fields as literals without indexing and
// without Huffman coding (RFC 7541 §6.2.2), the simplest valid block.
func hpackLiteral(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		name, value, _ := strings.Cut(f, "=")
		b = append(b, 0)
		b = hpackString(b, name)
		b = hpackString(b, value)
	}
	return b
}

func hpackString(b []byte, s string) []byte {
	n := len(s)
	if n < 127 {
		b = append(b, byte(n))
	} else {
		b = append(b, 127)
		n -= 127
		for n >= 128 {
			b = append(b, byte(n%128+128))
			n /= 128
		}
		b = append(b, byte(n))
	}
	return append(b, s...)
}

func h2Seeds() [][]byte {
	settings := h2Frame(h2Settings, 0, 0, nil)
	ack := h2Frame(h2Settings, h2FlagAck, 0, nil)
	get := hpackLiteral(":method=GET", ":scheme=http", ":authority=svc", ":path=/")
	post := hpackLiteral(":method=POST", ":scheme=http", ":authority=svc", ":path=/upload", "content-length=5")
	cat := func(frames ...[]byte) []byte {
		var b []byte
		for _, f := range frames {
			b = append(b, f...)
		}
		return b
	}
	return [][]byte{
		nil,
		settings,
		cat(settings, ack, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, get)),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders, 1, post), h2Frame(h2Data, h2FlagEndStream, 1, []byte("hello"))),
		// content-length disagrees with the data.
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders, 1, post), h2Frame(h2Data, h2FlagEndStream, 1, []byte("hello world"))),
		// A body that never ends: the route timeout answers.
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders, 1, post), h2Frame(h2Data, 0, 1, []byte("he"))),
		// Header block split over CONTINUATION, and one never finished.
		cat(settings, h2Frame(h2Headers, h2FlagEndStream, 1, get[:5]), h2Frame(h2Continuation, h2FlagEndHeaders, 1, get[5:])),
		cat(settings, h2Frame(h2Headers, h2FlagEndStream, 1, get[:5])),
		// Padded HEADERS, PRIORITY, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY.
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream|h2FlagPadded, 1, append(append([]byte{3}, get...), 0, 0, 0))),
		cat(settings, h2Frame(h2Priority, 0, 1, []byte{0, 0, 0, 0, 16}), h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, get)),
		cat(settings, h2Frame(h2Ping, 0, 0, []byte("12345678"))),
		cat(settings, h2Frame(h2WindowUpdate, 0, 0, []byte{0x7f, 0xff, 0xff, 0xff})),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders, 1, post), h2Frame(h2RSTStream, 0, 1, []byte{0, 0, 0, 8})),
		cat(settings, h2Frame(h2GoAway, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, 0})),
		// Duplicate SETTINGS entries, a window size past 2^31-1.
		cat(h2Frame(h2Settings, 0, 0, []byte{0, 4, 0, 0, 0, 100, 0, 4, 0, 0, 0, 1})),
		cat(h2Frame(h2Settings, 0, 0, []byte{0, 4, 0x80, 0, 0, 0})),
		// Malformed requests: connection-specific fields, TE other than
		// trailers, uppercase names, missing :path, pseudo after regular.
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, hpackLiteral(":method=GET", ":scheme=http", ":authority=svc", ":path=/", "connection=keep-alive"))),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, hpackLiteral(":method=GET", ":scheme=http", ":authority=svc", ":path=/", "te=gzip"))),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, hpackLiteral(":method=GET", ":scheme=http", ":authority=svc", ":path=/", "X-Upper=1"))),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, hpackLiteral(":method=GET", ":scheme=http", ":authority=svc"))),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, hpackLiteral(":method=GET", "x=1", ":scheme=http", ":authority=svc", ":path=/"))),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, hpackLiteral(":method=POST", ":scheme=http", ":authority=svc", ":path=/", "content-length=5", "transfer-encoding=chunked"))),
		// CONNECT and extended CONNECT (websocket over HTTP/2).
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders, 1, hpackLiteral(":method=CONNECT", ":authority=svc:443")), h2Frame(h2Data, 0, 1, []byte("\x16\x03\x01"))),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders, 1, hpackLiteral(":method=CONNECT", ":protocol=websocket", ":scheme=http", ":authority=svc", ":path=/ws"))),
		// Many streams at once, even stream ids, a frame larger than 16 KiB.
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, get), h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 3, get), h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 5, get)),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 2, get)),
		cat(settings, h2Frame(h2Headers, h2FlagEndHeaders|h2FlagEndStream, 1, hpackLiteral(":method=GET", ":scheme=http", ":authority=svc", ":path=/", "x-big="+strings.Repeat("a", 20000)))),
		// A truncated frame header and payload.
		cat(settings, []byte{0, 0, 10, h2Data, 0, 0, 0, 0, 1, 'a'}),
	}
}
