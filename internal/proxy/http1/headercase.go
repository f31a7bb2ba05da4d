package http1

import (
	"bytes"
	"net/http"
	"net/textproto"
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

// maxHeaderNames bounds the names remembered for one message; the rest
// keep their canonical spelling.
const maxHeaderNames = 64

// addHeaderName records name in m when its spelling is not canonical and
// returns m, allocated on the first such name. name is a raw field name
// (the bytes before the colon).
func addHeaderName(m HeaderNames, name []byte) HeaderNames {
	if isCanonical(name) || len(m) >= maxHeaderNames || !validName(name) {
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

// ResponseHeads follows the response heads read on an HTTP/1.1 upstream
// connection (one that net/http's Transport reads), from the status line to the empty line, to remember the
// spelling of their header names. A request written arms it (the
// Transport writes a connection's next request only once the previous
// response was read to its end, so the next bytes read are a status
// line); 1xx heads are followed by another; the final head publishes its
// names and disarms it until the next request, so bodies are never
// scanned. A body written after an early response may re-arm it, which
// at worst makes a response body that starts like a response head be
// scanned: names only, case only (see above). A 101 ends it for good.
type ResponseHeads struct {
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

// RequestWritten arms the scanner for the next response.
func (rh *ResponseHeads) RequestWritten() {
	if rh.state.Load() == rhIdle {
		rh.state.CompareAndSwap(rhIdle, rhStatus)
	}
}

// Read scans bytes read from the connection. Only one goroutine reads.
func (rh *ResponseHeads) Read(p []byte) {
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

func (rh *ResponseHeads) endLine(st uint32, line []byte) uint32 {
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
		rh.current = addHeaderName(rh.current, line[:colon])
	}
	return st
}

func (rh *ResponseHeads) publish() {
	names := rh.current
	rh.current = nil
	rh.PublishNames(names)
}

// PublishNames makes names the last response's (nil: all canonical), for
// a reader that parsed the head itself.
func (rh *ResponseHeads) PublishNames(names HeaderNames) {
	if names == nil {
		rh.names.Store(nil)
		return
	}
	p := new(HeaderNames) // only here: &names would put every call's on the heap
	*p = names
	rh.names.Store(p)
}

// Names returns the non-canonical header names of the last final
// response head read (nil when they were all canonical).
func (rh *ResponseHeads) Names() HeaderNames {
	if p := rh.names.Load(); p != nil {
		return *p
	}
	return nil
}

// Header case on HTTP/1.1, as Envoy's header_key_format with the
// preserve_case stateful formatter: a header name reaches the next hop
// spelled as it arrived (x-lower, X-MiXeD-CaSe, SOAPAction), in both
// directions. net/http canonicalises names when it parses a message but
// writes a Header map's keys as they are, so the spelling is learnt from
// the raw bytes (Framing for requests, ResponseHeads or the response
// parser for responses) and the keys are renamed just before the message is
// written on. Names are case-insensitive (RFC 9110 §5.1): a name
// remembered wrongly can only change the case it is written with, never
// what the message means, and a name is renamed only when its canonical
// key is in the map. HTTP/2 names are lower case by the protocol.
//
// A few names stay canonical because net/http reads or writes them
// itself from the canonical key, so renaming would change the message:
// the framing and connection fields and those the Transport interprets
// (requestKept, responseKept). User-Agent (requests) and Content-Type
// and Date (responses) are renamed with an empty value left under the
// canonical key, net/http's documented way to keep it from adding its
// own.

var requestKept = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true,
	"Connection": true, "Upgrade": true, "Te": true, "Expect": true,
	"Idempotency-Key": true, "X-Idempotency-Key": true,
}

var requestPlaceholder = map[string]bool{"User-Agent": true}

var responseKept = map[string]bool{
	"Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Connection": true,
}

var responsePlaceholder = map[string]bool{"Content-Type": true, "Date": true}

// RestoreRequestNames renames the keys of a request header h that names
// spells otherwise, just before the request is written on.
func RestoreRequestNames(h http.Header, names HeaderNames) {
	restoreNames(h, names, requestKept, requestPlaceholder)
}

// RestoreResponseNames is RestoreRequestNames for a response header.
func RestoreResponseNames(h http.Header, names HeaderNames) {
	restoreNames(h, names, responseKept, responsePlaceholder)
}

func restoreNames(h http.Header, names HeaderNames, kept, placeholder map[string]bool) {
	for canon, orig := range names {
		vv, ok := h[canon]
		if !ok || len(vv) == 0 || kept[canon] {
			continue
		}
		delete(h, canon)
		if prior, ok := h[orig]; ok {
			vv = append(prior, vv...)
		}
		h[orig] = vv
		if placeholder[canon] {
			h[canon] = nil
		}
	}
}

// HeadNames returns the header names of a message head (start line to
// empty line) that are not spelled canonically, as addHeaderName keeps
// them: continuation lines and lines without a name are skipped.
func HeadNames(head []byte) HeaderNames {
	var names HeaderNames
	rest := head[bytes.IndexByte(head, '\n')+1:]
	for len(rest) > 0 {
		end := bytes.IndexByte(rest, '\n')
		if end < 0 {
			break
		}
		l := rest[:end]
		rest = rest[end+1:]
		if len(l) == 0 || l[0] == ' ' || l[0] == '\t' {
			continue
		}
		if colon := bytes.IndexByte(l, ':'); colon > 0 {
			names = addHeaderName(names, l[:colon])
		}
	}
	return names
}
