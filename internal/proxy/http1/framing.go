package http1

import (
	"bytes"
	"sync"
	"sync/atomic"
)

// Framing follows HTTP/1 request framing the way net/http reads it
// (heads, Content-Length and chunked bodies, trailers), only far enough
// to count requests, see which header names each head has, and tell when
// net/http refuses a trailer section. Scan is fed every byte the server
// reads; NextRequest is called as each request reaches the handler, and
// the handler's questions (Desynced, BodyPending, TrailersRefused,
// TakeNames) compare the two counts. What a guard does with the answers
// is the caller's. It stops following (state frOff)
// where net/http would refuse the connection anyway, at the first
// ambiguous request (which is answered 400 and closes the connection),
// at a refused trailer section, at a malformed chunk (whose request's
// answer closes the connection, as its body never ends), and on HTTP/2
// connections. Bodies are
// skipped by length, never scanned, so a body that looks like a request
// is data.
type Framing struct {
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
	names               HeaderNames // non-canonical names, nil if none

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

	// served counts the requests handed to the handler (NextRequest),
	// whose index is what the counts above report.
	served atomic.Int64
}

// maxTrailerSection is as much of a chunked request's trailer section as
// net/http's HTTP/1 server looks at: it reads the section only if the
// CRLF CRLF that ends it lies within its 4 KiB read buffer, and fails the
// request body otherwise (transfer.go, seeUpcomingDoubleCRLF). So on
// HTTP/1.1 the limit on trailers is 4 KiB, not MaxHeaderBytes.
const maxTrailerSection = 4 << 10

// crlfcrlfWord is CRLF CRLF as Framing.trailerTail holds four bytes.
const crlfcrlfWord = '\r'<<24 | '\n'<<16 | '\r'<<8 | '\n'

type casedHead struct {
	head  int64 // 1 + the request's index, as served counts
	names HeaderNames
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

// Scan follows p, the next bytes read, and reports whether they make a
// trailer section that net/http will refuse once it reads that far.
func (f *Framing) Scan(p []byte) (refusedTrailers bool) {
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
func (f *Framing) checkTrailer(p []byte) (refused bool) {
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

func (f *Framing) endLine(line []byte) {
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
		f.names = addHeaderName(f.names, name)
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
func (f *Framing) bodyEnded() {
	if !f.options {
		f.bodies.Add(1)
	}
	f.state = frRequestLine
}

func (f *Framing) endHead() {
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

// NextRequest counts a request handed to the handler (call it once per
// request, in order) and reports whether it, or one before it on the
// connection, had both Content-Length and Transfer-Encoding.
func (f *Framing) NextRequest() (ambiguous bool) {
	i := f.served.Add(1) // 1 + the request's index
	bad := f.firstBad.Load()
	return bad > 0 && i >= bad
}

// Desynced reports whether the server is reading the request being
// handled, after NextRequest counted it, from bytes that were not a
// request head as the client framed them: the rest of a body it gave up
// on (a malformed chunk, a body still arriving when the route timed out).
// A server serving full duplex would carry on and serve a body's bytes as
// a request (request smuggling); Framing, which follows the bytes as the
// client framed them, has counted fewer heads.
func (f *Framing) Desynced() bool {
	return f.served.Load() > f.heads.Load()
}

// BodyPending reports whether the body of the request being handled,
// after NextRequest counted it, has not been read to its end.
func (f *Framing) BodyPending() bool {
	return f.served.Load() > f.bodies.Load()
}

// TrailersRefused reports whether net/http refused the trailer section of
// the request being handled (see checkTrailer), after NextRequest counted
// it.
func (f *Framing) TrailersRefused() bool {
	i := f.trailerRefused.Load()
	return i > 0 && i == f.served.Load()
}

// TakeNames returns the non-canonical header names of the request being
// handled, after NextRequest counted it, and forgets those of requests
// before it (answered by net/http itself).
func (f *Framing) TakeNames() HeaderNames {
	if f.nCased.Load() == 0 {
		return nil
	}
	i := f.served.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	var names HeaderNames
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
