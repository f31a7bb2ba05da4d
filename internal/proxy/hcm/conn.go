package hcm

import (
	"bytes"
	"errors"
	"net"
	"net/http/httptrace"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/netio"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
)

// headerConn is what the net/http server reads from. It adds what the
// server lacks for a proxy facing untrusted clients: a 408 when a
// request's headers do not arrive within ReadHeaderTimeout (net/http just
// closes the connection, which a client cannot tell from a crash), and
// counting the 431s net/http writes itself.
type headerConn struct {
	*Conn
	stats *Stats
	// raw, when set, reads and writes the connection with raw system
	// calls (netio.RawIO); the fast path sets it, net/http's never.
	raw *netio.RawIO
	// fast marks the fast path's connection, whose bytes frames does not
	// follow: its heads are plain (no Transfer-Encoding), read by its own
	// parser, which gives fastNames; a connection handed to net/http gets
	// a new headerConn that follows them from the first byte not consumed.
	fast      bool
	fastNames upstream.HeaderNames

	// pending counts bytes read since the last response was written: a
	// timeout with some is a request cut off mid-headers, one without is
	// an idle keep-alive connection expiring.
	pending atomic.Int64
	// aborting marks net/http's own way of interrupting a background
	// read (a deadline in the past), which is not a client's timeout.
	aborting atomic.Bool
	h2       atomic.Bool
	// h2lim, set on net/http's connections, has the HTTP/2 frames read
	// followed (h2w, see h2limits.go) to count the server's refusals.
	h2lim *h2Limits
	h2w   *h2Watch
	// timedOut is set once the 408 is written.
	timedOut atomic.Bool
	// sniffed counts the bytes of the HTTP/2 preface matched so far; -1
	// once the connection is known to be HTTP/1.
	sniffed atomic.Int32

	// frames follows the HTTP/1 messages' framing to find requests with
	// both Content-Length and Transfer-Encoding, which net/http accepts
	// (it drops the Content-Length, as RFC 9112 §6.3 allows) but a proxy
	// must not forward: the next hop may frame them by Content-Length and
	// read the rest of the body as another request (request smuggling).
	// served counts the requests handed to the handler, whose index is
	// what frames reports.
	frames framing
	served atomic.Int64

	// For header case on HTTP/1 (see headercase.go), owned by the
	// handler of the connection's current request (HTTP/1 requests are
	// handled one at a time): the request's non-canonical header names,
	// and the upstream connection its response came on.
	requestNames upstream.HeaderNames
	upstreamConn net.Conn
	// spare are unused slots of the fast path's values array for the
	// current request, for the headers the proxy adds (fast path only).
	spare []string
}

var (
	h2Preface      = []byte("PRI * HTTP/2.0")
	status431      = []byte("HTTP/1.1 431 ")
	requestTimeout = []byte("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	longAgo        = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

var errHeaderTimeout net.Error = headerTimeoutError{}

// headerTimeoutError is a timeout, so that net/http takes it for a
// common read error and closes the connection quietly after our 408,
// rather than writing a 400 of its own after it.
type headerTimeoutError struct{}

func (headerTimeoutError) Error() string   { return "hcm: request headers not received in time" }
func (headerTimeoutError) Timeout() bool   { return true }
func (headerTimeoutError) Temporary() bool { return false }

func (c *headerConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.raw != nil {
		n, err = c.raw.Read(p)
	} else {
		n, err = c.Conn.Read(p)
	}
	from := 0 // where this read's HTTP/2 frames start
	if n > 0 {
		if m := int(c.sniffed.Load()); m >= 0 && m < len(h2Preface) {
			k := min(n, len(h2Preface)-m)
			if bytes.Equal(p[:k], h2Preface[m:m+k]) {
				m += k
				c.h2.Store(m == len(h2Preface))
				from = k
			} else {
				m = -1
			}
			c.sniffed.Store(int32(m))
		}
		if !c.h2.Load() && !c.fast && c.frames.scan(p[:n]) {
			c.stats.RqHeaderTooLarge.Add(1)
		}
		c.pending.Add(int64(n))
	}
	if c.h2lim != nil && c.h2.Load() {
		c.watchH2(p[from:n], err)
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.aborting.Load() && !c.h2.Load() && c.pending.Load() > 0 {
		// net/http may read again after the first timeout: one 408.
		if c.timedOut.CompareAndSwap(false, true) {
			c.stats.RqHeaderTimeout.Add(1)
			c.Conn.Write(requestTimeout)
		}
		return n, errHeaderTimeout
	}
	return n, err
}

func (c *headerConn) Write(p []byte) (int, error) {
	c.pending.Store(0)
	// A 431 for refused trailers was counted when they were (scan).
	if !c.h2.Load() && bytes.HasPrefix(p, status431) && !c.trailersRefused() {
		c.stats.RqHeaderTooLarge.Add(1)
	}
	if c.raw != nil {
		return c.raw.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *headerConn) SetReadDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(longAgo))
	return c.Conn.SetReadDeadline(t)
}

// setBodyDeadline bounds the reads of a request body being forwarded by
// the request's deadline: a read past it fails, as after net/http's own
// interrupting deadline, without a 408.
func (c *headerConn) setBodyDeadline(t time.Time) {
	c.aborting.Store(true)
	c.Conn.SetReadDeadline(t)
}

func (c *headerConn) SetDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(longAgo))
	return c.Conn.SetDeadline(t)
}

// ambiguous reports whether the HTTP/1 request being handled (the
// handler calls it once per request, in order) or one before it on the
// connection had both Content-Length and Transfer-Encoding.
func (c *headerConn) ambiguous() bool {
	i := c.served.Add(1) // 1 + the request's index
	bad := c.frames.firstBad.Load()
	return bad > 0 && i >= bad
}

// desynced reports whether net/http is reading the HTTP/1 request being
// handled, after ambiguous counted it, from bytes that were not a request
// head as the client framed them: the rest of a body it gave up on (a
// malformed chunk, a body still arriving when the route timed out). The
// proxy serves requests full duplex, which turns off net/http's own
// guard, so it would carry on and serve a body's bytes as a request
// (request smuggling); framing, which follows the bytes as the client
// framed them, has counted fewer heads. Such a connection cannot be
// trusted past that point and is closed without an answer.
func (c *headerConn) desynced() bool {
	return c.served.Load() > c.frames.heads.Load()
}

// bodyPending reports whether the body of the HTTP/1 request being
// handled, after ambiguous counted it, has not been read to its end.
func (c *headerConn) bodyPending() bool {
	return c.served.Load() > c.frames.bodies.Load()
}

// trailersRefused reports whether net/http refused the trailer section of
// the HTTP/1 request being handled (see framing.checkTrailer), after
// ambiguous counted it.
func (c *headerConn) trailersRefused() bool {
	i := c.frames.trailerRefused.Load()
	return i > 0 && i == c.served.Load()
}

// takeNames returns the non-canonical header names of the HTTP/1 request
// being handled, after ambiguous counted it, and forgets those of requests
// before it (answered by net/http itself).
func (c *headerConn) takeNames() upstream.HeaderNames {
	f := &c.frames
	if f.nCased.Load() == 0 {
		return nil
	}
	i := c.served.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	var names upstream.HeaderNames
	n := 0
	for n < len(f.cased) && f.cased[n].head <= i {
		if f.cased[n].head == i {
			names = f.cased[n].names
		}
		n++
	}
	f.cased = append(f.cased[:0], f.cased[n:]...)
	f.nCased.Add(-int32(n))
	return names
}

// traceUpstream is the client trace of the connection's requests: it
// learns which upstream connection an HTTP/1 request went out on, whose
// response names upstream.ResponseHeaderNames then gives. One per
// connection, so that requests pay nothing for it.
func (c *headerConn) traceUpstream() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !c.h2.Load() { // HTTP/2 streams run at once and keep no case
			c.upstreamConn = info.Conn
		}
	}}
}

// framing follows HTTP/1 request framing the way net/http reads it
// (heads, Content-Length and chunked bodies, trailers), only far enough
// to count requests, see which header names each head has, and tell when
// net/http refuses a trailer section. It stops following (state frOff)
// where net/http would refuse the connection anyway, at the first
// ambiguous request (which is answered 400 and closes the connection),
// at a refused trailer section, at a malformed chunk (whose request's
// answer closes the connection, as its body never ends), and on HTTP/2
// connections. Bodies are
// skipped by length, never scanned, so a body that looks like a request
// is data.
type framing struct {
	state     uint8
	line      []byte // the current line, up to maxFramingLine bytes
	remaining int64  // of a Content-Length body or a chunk
	// heads counts the requests whose heads ended, as the handler counts
	// them. Atomic: net/http's background read may scan while a handler
	// checks it (see desynced).
	heads atomic.Int64
	// bodies counts the requests among them whose bodies have ended.
	bodies atomic.Int64
	// firstBad is 1 + the index of the first request with both
	// Content-Length and Transfer-Encoding, 0 if none.
	firstBad atomic.Int64

	// The head being read.
	http10, options     bool
	hasCL, hasTE, badCL bool
	cl                  int64
	teFields            int
	chunked             bool
	names               upstream.HeaderNames // non-canonical names, nil if none

	// The heads whose names were not all canonical, in order, until their
	// request's handler takes them (pipelined requests are read ahead).
	mu     sync.Mutex
	cased  []casedHead
	nCased atomic.Int32

	// The trailer section being checked (see checkTrailer): how many of
	// its first maxTrailerSection bytes are still to come, the last four
	// bytes seen, and its request as heads counts it (0 for OPTIONS *).
	trailerLeft int
	trailerTail uint32
	trailerHead int64
	// trailerRefused is 1 + the index of the request whose trailer
	// section net/http refused, 0 if none.
	trailerRefused atomic.Int64
}

// maxTrailerSection is as much of a chunked request's trailer section as
// net/http's HTTP/1 server looks at: it reads the section only if the
// CRLF CRLF that ends it lies within its 4 KiB read buffer, and fails the
// request body otherwise (transfer.go, seeUpcomingDoubleCRLF). So on
// HTTP/1.1 the limit on trailers is 4 KiB, not MaxHeaderBytes.
const maxTrailerSection = 4 << 10

// crlfcrlfWord is CRLF CRLF as framing.trailerTail holds four bytes.
const crlfcrlfWord = '\r'<<24 | '\n'<<16 | '\r'<<8 | '\n'

type casedHead struct {
	head  int64 // 1 + the request's index, as served counts
	names upstream.HeaderNames
}

const (
	frRequestLine = iota // empty lines, then a request line
	frHeaders
	frBody      // remaining bytes of a Content-Length body
	frChunkSize // a chunk-size line
	frChunkData // remaining bytes of a chunk
	frChunkEnd  // the CRLF after a chunk
	frTrailers
	frOff
)

// maxFramingLine bounds what is kept of a line: header names and the
// values of Content-Length and Transfer-Encoding are far shorter, and a
// longer one is invalid.
const maxFramingLine = 128

// scan follows p, the next bytes read, and reports whether they make a
// trailer section that net/http will refuse once it reads that far.
func (f *framing) scan(p []byte) (refusedTrailers bool) {
	if f.trailerLeft > 0 && f.checkTrailer(p) {
		return true
	}
	for len(p) > 0 && f.state != frOff {
		if f.state == frBody || f.state == frChunkData {
			n := min(int64(len(p)), f.remaining)
			p, f.remaining = p[n:], f.remaining-n
			if f.remaining == 0 {
				if f.state == frBody {
					f.bodyEnded()
				} else {
					f.state = frChunkEnd
				}
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		if room := maxFramingLine + 1 - len(f.line); room > 0 {
			if f.line == nil {
				f.line = make([]byte, 0, maxFramingLine+1)
			}
			f.line = append(f.line, part[:min(len(part), room)]...)
		}
		if i < 0 {
			return
		}
		p = p[i+1:]
		was := f.state
		f.endLine(bytes.TrimSuffix(f.line, []byte("\r")))
		f.line = f.line[:0]
		if f.state == frTrailers && was != frTrailers {
			f.trailerLeft, f.trailerTail, f.trailerHead = maxTrailerSection, '\r'<<8|'\n', f.heads.Load()
			if f.options {
				f.trailerHead = 0 // net/http answers it, and closes
			}
			if f.checkTrailer(p) {
				return true
			}
		}
	}
	return false
}

// checkTrailer looks at p, the next bytes from a trailer section on (or
// past its end, if a bare LF ended it), as net/http does: unless CRLF
// CRLF ends within the section's first maxTrailerSection bytes, the
// section is refused. The tail starts with the CRLF that ends the
// last-chunk line, so that an empty section is found at once, as net/http
// finds it.
func (f *framing) checkTrailer(p []byte) (refused bool) {
	for _, b := range p[:min(len(p), f.trailerLeft)] {
		f.trailerTail = f.trailerTail<<8 | uint32(b)
		f.trailerLeft--
		if f.trailerTail == crlfcrlfWord {
			f.trailerLeft = 0
			return false
		}
	}
	if f.trailerLeft > 0 {
		return false
	}
	// net/http fails the body, and forward answers 431 and closes the
	// connection: nothing more to follow.
	if f.trailerHead > 0 {
		f.trailerRefused.Store(f.trailerHead)
	}
	f.state = frOff
	return true
}

func (f *framing) endLine(line []byte) {
	long := len(line) > maxFramingLine
	switch f.state {
	case frRequestLine:
		if len(line) == 0 {
			return // net/http skips blank lines between requests
		}
		f.http10 = bytes.HasSuffix(line, []byte(" HTTP/1.0"))
		f.options = bytes.HasPrefix(line, []byte("OPTIONS * "))
		f.hasCL, f.hasTE, f.badCL, f.cl, f.teFields, f.chunked = false, false, false, 0, 0, false
		f.names = nil
		f.state = frHeaders
	case frHeaders:
		if len(line) == 0 {
			f.endHead()
			return
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || line[0] == ' ' || line[0] == '\t' {
			return // net/http refuses these, or they continue a value
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		f.names = upstream.AddHeaderName(f.names, name)
		switch {
		case asciiEqualFold(name, "content-length"):
			n, ok := parseDecimal(value)
			if !ok || long || (f.hasCL && n != f.cl) {
				f.badCL = true
			}
			f.hasCL, f.cl = true, n
		case asciiEqualFold(name, "transfer-encoding"):
			f.hasTE = true
			f.teFields++
			f.chunked = f.teFields == 1 && !long && asciiEqualFold(value, "chunked")
		}
	case frChunkSize:
		if i := bytes.IndexAny(line, "; \t"); i >= 0 {
			line = line[:i]
		}
		n, ok := parseHex(line)
		switch {
		case !ok:
			// net/http fails the body. The body never ends here, so the
			// answer closes the connection (closeIfBodyPending).
			f.state = frOff
		case n == 0:
			f.state = frTrailers
		default:
			f.state, f.remaining = frChunkData, n
		}
	case frChunkEnd:
		if len(line) != 0 {
			f.state = frOff // as a malformed chunk size
			return
		}
		f.state = frChunkSize
	case frTrailers:
		if len(line) == 0 {
			f.bodyEnded()
		}
	}
}

// bodyEnded marks the end of the current request: its body, if it has
// one, has been read whole.
func (f *framing) bodyEnded() {
	if !f.options {
		f.bodies.Add(1)
	}
	f.state = frRequestLine
}

func (f *framing) endHead() {
	// net/http answers "OPTIONS *" itself: the handler does not count it.
	if !f.options {
		heads := f.heads.Add(1)
		if f.names != nil {
			f.mu.Lock()
			f.cased = append(f.cased, casedHead{heads, f.names})
			f.mu.Unlock()
			f.nCased.Add(1)
		}
	}
	f.names = nil
	switch {
	case f.hasCL && f.hasTE:
		if !f.options {
			f.firstBad.Store(f.heads.Load())
		}
		f.state = frOff
	case f.hasTE && !f.http10: // net/http ignores Transfer-Encoding on HTTP/1.0
		if !f.chunked {
			f.state = frOff // net/http answers 501 and closes
			return
		}
		f.state = frChunkSize
	case f.hasCL:
		if f.badCL {
			f.state = frOff // net/http answers 400 and closes
			return
		}
		f.state, f.remaining = frBody, f.cl
		if f.cl == 0 {
			f.bodyEnded()
		}
	default:
		f.bodyEnded()
	}
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | int64(c)
	}
	return n, true
}
