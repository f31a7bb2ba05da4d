package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
)

// The request head parser of the connection manager's fast path. It
// reads the heads that PlainHead let through (an HTTP/1.1 request line, CRLF lines, token header names,
// none of Upgrade, Expect or Transfer-Encoding) into an http.Request the
// way http.ReadRequest would, field for field, but with what a connection
// reuses: one Request and URL per connection, header names and values
// interned per connection (a keep-alive connection's requests repeat
// them), and the values' slices cut from one array per request. Heads it
// does not know for certain how net/http reads (an absolute-form target,
// a path that url would escape, more header values than it keeps room
// for) go to http.ReadRequest instead (ErrFallback); heads net/http
// refuses are refused here too. FuzzRequestHead checks both against
// http.ReadRequest.

// ErrFallback says the head is for http.ReadRequest to read.
var ErrFallback = errors.New("http1: head not for the fast parser")

// errBadHead is a head that net/http refuses (400).
var errBadHead = errors.New("http1: malformed request head")

// maxHeadFields is the most header lines the fast parser takes.
const maxHeadFields = 64

// spareValues is the room a request's values array keeps for the headers
// a proxy adds (Spare).
const spareValues = 3

// requestMaxInterned bounds a connection's interned strings, and
// requestMaxInternLen the length of one.
const (
	requestMaxInterned  = 128
	requestMaxInternLen = 256
)

// RequestParser is one connection's parser state. The request Parse
// returns is the parser's, valid until the next Parse.
type RequestParser struct {
	req  http.Request // reset per request from tmpl
	tmpl *http.Request
	// Spare are the last request's unused values, room for the headers
	// a proxy adds (X-Forwarded-For, X-Request-Id, X-Forwarded-Proto).
	Spare []string
	// Names are the last request's header names not spelled canonically
	// (addHeaderName's), nil if none.
	Names HeaderNames
	// Header, when set, is an empty map for the next request: the last
	// one's, once nothing uses it after that request.
	Header http.Header
	url    url.URL
	strs   map[string]string // interned names and values
	fields [maxHeadFields]struct{ name, value []byte }
}

// NewRequestParser returns a connection's parser, whose requests are
// copies of tmpl (its context, say) with the head's fields set.
func NewRequestParser(tmpl *http.Request) *RequestParser {
	return &RequestParser{tmpl: tmpl}
}

// intern returns b as a string, the same string for the same bytes on
// one connection while there is room.
func (p *RequestParser) intern(b []byte) string {
	return internString(&p.strs, requestCommon, b, requestMaxInterned, requestMaxInternLen)
}

// requestCommon are names, methods and values that need no allocation on
// a connection's first request either.
var requestCommon = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE",
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Host", "If-Modified-Since",
		"If-None-Match", "Origin", "Pragma", "Referer", "User-Agent", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Request-Id", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid",
		"X-B3-Sampled", "Traceparent", "Tracestate", "Te", "Trailer", "Keep-Alive",
		"Grpc-Timeout", "Content-Encoding", "X-Envoy-Attempt-Count", "Baggage",
		"*/*", "0", "close", "keep-alive", "gzip", "trailers", "http", "no-cache",
		"application/json", "application/octet-stream", "text/plain", "application/grpc",
	} {
		m[s] = s
	}
	return m
}()

// requestUnique are the headers whose values differ from request to
// request: interning them would only fill the connection's table.
var requestUnique = map[string]bool{
	"X-Request-Id": true, "Traceparent": true, "Tracestate": true, "X-B3-Traceid": true,
	"X-B3-Spanid": true, "X-B3-Parentspanid": true, "X-Client-Trace-Id": true,
	"X-Cloud-Trace-Context": true, "Uber-Trace-Id": true, "Grpc-Timeout": true,
}

// Parse reads head (a complete request head that PlainHead accepted) as
// http.ReadRequest would and returns the request, whose body reads from
// br once head has been discarded from it.
func (p *RequestParser) Parse(head []byte, br *bufio.Reader) (*http.Request, error) {
	nl := indexByte(head, '\n')
	line := head[:nl-1] // without CRLF
	// "METHOD SP target SP HTTP/1.1" (PlainHead checked the version).
	sp1 := indexByte(line, ' ')
	if sp1 < 0 {
		return nil, errBadHead
	}
	method, rest := line[:sp1], line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 < 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return nil, errBadHead
	}
	target := rest[:sp2]
	if len(method) == 0 {
		return nil, errBadHead
	}
	for _, c := range method {
		if !tokenChar(c) {
			return nil, errBadHead
		}
	}
	if len(target) == 0 || target[0] != '/' {
		return nil, ErrFallback // "*", absolute form, or a refusal: net/http's
	}
	q := -1
	for i, c := range target {
		if c == '?' {
			q = i
			break
		}
		if !plainPathByte(c) {
			return nil, ErrFallback
		}
	}
	if q == len(target)-1 {
		return nil, ErrFallback // ForceQuery
	}
	for _, c := range target[max(q, 0):] {
		if c < ' ' || c == 0x7f {
			return nil, errBadHead // url's invalid control character
		}
	}

	// Header fields: PlainHead checked that each line ends in CRLF and
	// has a token name before its colon.
	n := 0
	rest = head[nl+1 : len(head)-2]
	for len(rest) > 0 {
		end := indexByte(rest, '\n')
		l := rest[:end-1]
		rest = rest[end+1:]
		if n == maxHeadFields {
			return nil, ErrFallback
		}
		colon := indexByte(l, ':')
		v := l[colon+1:]
		for _, c := range v {
			if !validValueByte(c) {
				return nil, errBadHead
			}
		}
		p.fields[n].name, p.fields[n].value = l[:colon], trimOWS(v)
		n++
	}

	// Every check passed: build the request.
	req := &p.req
	*req = *p.tmpl
	p.url = url.URL{}
	req.Method = p.intern(method)
	req.RequestURI = p.intern(target)
	if q >= 0 {
		p.url.Path, p.url.RawQuery = req.RequestURI[:q], req.RequestURI[q+1:]
	} else {
		p.url.Path = req.RequestURI
	}
	req.URL = &p.url
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	// A hint over 8 would make the map a table from the start; most
	// requests fit a small one, with Host kept out of it.
	h := p.Header
	if h == nil {
		h = make(http.Header, min(n+spareValues, 8))
	}
	p.Header = nil
	vals := make([]string, n+spareValues)
	p.Spare = vals[n:]
	var canon [64]byte
	hosts := 0
	p.Names = nil
	for i := range n {
		f := &p.fields[i]
		p.Names = addHeaderName(p.Names, f.name)
		var key string
		if len(f.name) <= len(canon) {
			key = p.intern(canonicalName(canon[:0], f.name))
		} else {
			key = textproto.CanonicalMIMEHeaderKey(string(f.name))
		}
		var value string
		if requestUnique[key] {
			value = string(f.value)
		} else {
			value = p.intern(f.value)
		}
		if key == "Host" {
			// http.ReadRequest takes the first, refuses a second and
			// leaves none in the header.
			if hosts++; hosts > 1 {
				return nil, errBadHead // "too many Host headers"
			}
			req.Host = value
			continue
		}
		if vv, ok := h[key]; ok {
			h[key] = append(vv, value)
			continue
		}
		vals[i] = value
		h[key] = vals[i : i+1 : i+1]
	}
	req.Header = h
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" { // fixPragmaCacheControl
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	for _, v := range h["Connection"] {
		if hasToken(v, "close") {
			req.Close = true
		}
	}
	// Content-Length as fixLength reads it: duplicates must agree, and
	// are folded into one.
	if cls := h["Content-Length"]; len(cls) > 0 {
		for _, cl := range cls[1:] {
			if cl != cls[0] {
				return nil, errBadHead
			}
		}
		if len(cls) > 1 {
			h["Content-Length"] = cls[:1:1]
		}
		cl, err := strconv.ParseUint(cls[0], 10, 63)
		if err != nil || cls[0] == "" {
			return nil, errBadHead
		}
		req.ContentLength = int64(cl)
	}
	req.Body = http.NoBody
	if req.ContentLength > 0 {
		req.Body = &Body{br: br, remaining: req.ContentLength}
	}
	return req, nil
}

// plainPathByte: the path bytes that url.ParseRequestURI keeps as they
// are (no RawPath): unreserved, and the sub-delims url does not escape
// in a path.
func plainPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
		return true
	}
	return false
}

// Body is a parsed request's Content-Length body, read from the
// connection's buffered reader. As net/http's: a body cut short is
// io.ErrUnexpectedEOF, and reading after Close is an error. Unlike
// net/http's, Close does not read the rest: the caller skips what is left
// (SkipRest) before the connection's next request.
type Body struct {
	mu        sync.Mutex
	br        *bufio.Reader
	remaining int64
	closed    bool
	err       error
}

func (b *Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	b.remaining -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	} else if b.remaining == 0 {
		err = io.EOF
	}
	return n, err
}

func (b *Body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// SkipRest discards what is left of the body, up to limit bytes; false
// when more is left or the body failed, and the connection cannot go on.
func (b *Body) SkipRest(limit int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.err != nil {
		return false
	}
	if b.remaining > limit {
		return false
	}
	n, err := b.br.Discard(int(b.remaining))
	b.remaining -= int64(n)
	return err == nil
}

// PeekHead returns the buffered request head, up to its empty line;
// bufio.ErrBufferFull when it is longer than br's buffer.
func PeekHead(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; {
		b, err := br.Peek(n)
		if i := bytes.Index(b, crlfcrlf); i >= 0 {
			return b[:i+4], nil
		}
		if err != nil {
			return nil, err
		}
		if n = br.Buffered(); n < len(b)+1 {
			n = len(b) + 1
		}
		if n > br.Size() {
			return nil, bufio.ErrBufferFull
		}
	}
}

var (
	crlfcrlf      = []byte("\r\n\r\n")
	fastUnplain   = []string{"upgrade", "expect", "transfer-encoding"}
	http11Request = []byte(" HTTP/1.1\r\n")
	h2Preface     = []byte("PRI * HTTP/2.0")
)

// PlainHead reports whether a request head is one RequestParser reads:
// an HTTP/1.1 request line, not CONNECT, and header names that are plain
// tokens, none of them Upgrade, Expect or Transfer-Encoding (matched
// without regard to case). Anything else, malformed heads included, is
// net/http's to answer.
func PlainHead(head []byte) bool {
	nl := bytes.IndexByte(head, '\n')
	line := head[:nl+1]
	if !bytes.HasSuffix(line, http11Request) || bytes.HasPrefix(line, []byte("CONNECT ")) || bytes.HasPrefix(line, h2Preface) {
		return false
	}
	rest := head[nl+1 : len(head)-2] // header lines, each ending in CRLF
	for len(rest) > 0 {
		end := bytes.IndexByte(rest, '\n')
		if end < 1 || rest[end-1] != '\r' {
			return false // bare LF and the like
		}
		l := rest[:end-1]
		rest = rest[end+1:]
		colon := bytes.IndexByte(l, ':')
		if colon < 1 {
			return false
		}
		name := l[:colon]
		for _, ch := range name {
			if !tokenChar(ch) {
				return false
			}
		}
		for _, u := range fastUnplain {
			if len(name) == len(u) && asciiEqualFold(name, u) {
				return false
			}
		}
	}
	return true
}
