package upstream

import (
	"bytes"
	"net"
	"net/textproto"
	"strings"
	"sync/atomic"
)

// Header case on HTTP/1.1 (Envoy's header_key_format with the
// preserve_case stateful formatter). net/http canonicalises header names
// when it parses a message (x-custom-Case becomes X-Custom-Case) but
// writes the keys of a Header map exactly as they are, so a proxy built
// on it keeps the spelling of a name by remembering it from the raw bytes
// and renaming the key before the message is written on. Names are
// case-insensitive (RFC 9110 §5.1): a name remembered wrongly can only
// change the case it is written with, never what the message means.

// HeaderNames maps the canonical form of a header name to the spelling a
// message used, for the names whose spelling was not canonical. It is nil
// for the common message whose names all are. When one name comes in
// several spellings, the first non-canonical one is kept.
type HeaderNames map[string]string

// MaxHeaderNames bounds the names remembered for one message; the rest
// keep their canonical spelling.
const MaxHeaderNames = 64

// AddHeaderName records name in m when its spelling is not canonical and
// returns m, allocated on the first such name. name is a raw field name
// (the bytes before the colon).
func AddHeaderName(m HeaderNames, name []byte) HeaderNames {
	if isCanonical(name) || len(m) >= MaxHeaderNames || !validName(name) {
		return m
	}
	orig := string(name)
	canon := textproto.CanonicalMIMEHeaderKey(orig)
	if _, ok := m[canon]; ok {
		return m
	}
	if m == nil {
		m = HeaderNames{}
	}
	m[canon] = orig
	return m
}

// isCanonical reports whether name is spelled as CanonicalMIMEHeaderKey
// would spell it: upper case at the start and after each '-', lower case
// elsewhere.
func isCanonical(name []byte) bool {
	upper := true
	for _, c := range name {
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// validName reports whether name is a token (RFC 9110 §5.6.2), the only
// names net/http canonicalises (and accepts).
func validName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ResponseHeaderNames returns the non-canonical header names of the last
// final (non-1xx) HTTP/1.1 response read on c, the upstream connection
// that httptrace's GotConn reported for a request; nil when they were all
// canonical or c is not one of this package's connections. Until the
// response's body is read, that response is the one the Transport just
// returned: it sends the connection's next request only after.
//
// Callers learn c from GotConn, so every path that sends HTTP/1.1
// requests on this package's connections must report the connection to
// the request's httptrace GotConn hook, as net/http's Transport does.
func ResponseHeaderNames(c net.Conn) HeaderNames {
	if cn, ok := c.(*conn); ok {
		if p := cn.heads.names.Load(); p != nil {
			return *p
		}
	}
	return nil
}

// responseHeads follows the response heads read on an HTTP/1.1 upstream
// connection, from the status line to the empty line, to remember the
// spelling of their header names. A request written arms it (the
// Transport writes a connection's next request only once the previous
// response was read to its end, so the next bytes read are a status
// line); 1xx heads are followed by another; the final head publishes its
// names and disarms it until the next request, so bodies are never
// scanned. A body written after an early response may re-arm it, which
// at worst makes a response body that starts like a response head be
// scanned: names only, case only (see above). A 101 ends it for good.
type responseHeads struct {
	state atomic.Uint32
	// names are the final head's names (nil: all canonical), stored
	// once per response by the reader, loaded by the request's caller.
	names atomic.Pointer[HeaderNames]

	// The reader's own (only the Transport's read loop reads).
	line    []byte // the current line, up to maxHeadLine+1 bytes
	status  int
	current HeaderNames
}

const (
	rhIdle   = iota // between a final head and the next request
	rhStatus        // a request was written: a status line comes next
	rhFields        // in a head's header fields
	rhOff           // upgraded (101): no more HTTP
)

// maxHeadLine bounds what is kept of a line: a status line's start and
// header names are far shorter.
const maxHeadLine = 128

// requestWritten arms the scanner for the next response.
func (rh *responseHeads) requestWritten() {
	if rh.state.Load() == rhIdle {
		rh.state.CompareAndSwap(rhIdle, rhStatus)
	}
}

// read scans bytes read from the connection.
func (rh *responseHeads) read(p []byte) {
	st := rh.state.Load()
	if st == rhIdle || st == rhOff {
		return
	}
	for len(p) > 0 && (st == rhStatus || st == rhFields) {
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		if room := maxHeadLine + 1 - len(rh.line); room > 0 {
			if rh.line == nil {
				rh.line = make([]byte, 0, maxHeadLine+1)
			}
			rh.line = append(rh.line, part[:min(len(part), room)]...)
		}
		if i < 0 {
			return
		}
		p = p[i+1:]
		st = rh.endLine(st, bytes.TrimSuffix(rh.line, []byte("\r")))
		rh.line = rh.line[:0]
		rh.state.Store(st)
	}
}

func (rh *responseHeads) endLine(st uint32, line []byte) uint32 {
	if st == rhStatus {
		// "HTTP/1.1 200 ...": anything else is not a head (a response
		// body after a wrong arming, or a server's garbage).
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return rhIdle
		}
		rh.status = 0
		for _, c := range line[9:12] {
			if c < '0' || c > '9' {
				return rhIdle
			}
			rh.status = rh.status*10 + int(c-'0')
		}
		rh.current = nil
		return rhFields
	}
	if len(line) == 0 {
		switch {
		case rh.status == 101:
			rh.publish()
			return rhOff
		case rh.status >= 100 && rh.status < 200:
			return rhStatus // the final head follows
		}
		rh.publish()
		return rhIdle
	}
	if line[0] == ' ' || line[0] == '\t' {
		return st // a continued value
	}
	if colon := bytes.IndexByte(line, ':'); colon > 0 {
		rh.current = AddHeaderName(rh.current, line[:colon])
	}
	return st
}

func (rh *responseHeads) publish() {
	names := rh.current
	rh.current = nil
	rh.publishNames(names)
}

// publishNames makes names the last response's (nil: all canonical).
func (rh *responseHeads) publishNames(names HeaderNames) {
	if names == nil {
		rh.names.Store(nil)
		return
	}
	p := new(HeaderNames) // only here: &names would put every call's on the heap
	*p = names
	rh.names.Store(p)
}
