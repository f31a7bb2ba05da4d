package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/textproto"
	"strconv"

	"github.com/trellismesh/trellis/internal/proxy/httplex"
)

// The direct path's response head parser. It reads the common response
// (HTTP/1.1, a Content-Length body or none, plain CRLF header lines) into
// an http.Response the way http.ReadResponse would, field for field, with
// one allocation for the response, its body and its header values'
// slices, and names and values interned per connection (a connection's
// responses repeat them). Anything else (chunked or close-delimited
// bodies, obs-fold, a head that does not fit the connection's buffer, a
// malformed one) is left to http.ReadResponse, which answers it as
// before. FuzzResponseHead checks it against http.ReadResponse.

// maxRespFields is the most header lines the parser takes.
const maxRespFields = 32

// maxInterned bounds a connection's interned strings, maxInternLen the
// length of one.
const (
	maxInterned  = 64
	maxInternLen = 128
)

// directResponse is a response read by the parser: the response, its
// body (with the Cluster's wrapper) and its values' array in one
// allocation.
type directResponse struct {
	resp http.Response
	body directBody
	wrap body // the Cluster's accounting around it
	vals [inlineValues]string
}

// inlineValues is the room for header values a directResponse has; a
// response with more fields allocates their array apart.
const inlineValues = 8

// headParser is a connection's parser state.
type headParser struct {
	strs   map[string]string
	last   map[string]string // the last value of each uniqueValue header
	fields [maxRespFields]struct{ name, value []byte }
}

func (p *headParser) intern(b []byte) string {
	return httplex.Intern(&p.strs, commonStrings, b, maxInterned, maxInternLen)
}

var commonStrings = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"200 OK", "201 Created", "204 No Content", "301 Moved Permanently", "302 Found",
		"304 Not Modified", "400 Bad Request", "401 Unauthorized", "403 Forbidden",
		"404 Not Found", "500 Internal Server Error", "502 Bad Gateway",
		"503 Service Unavailable", "504 Gateway Timeout",
		"Content-Length", "Content-Type", "Date", "Server", "Connection", "Cache-Control",
		"Content-Encoding", "Etag", "Last-Modified", "Location", "Set-Cookie", "Vary",
		"X-Content-Type-Options", "Grpc-Status", "Grpc-Message", "Keep-Alive", "Trailer",
		"0", "close", "keep-alive", "text/plain", "text/plain; charset=utf-8", "text/html",
		"text/html; charset=utf-8", "application/json", "application/octet-stream", "nosniff",
	} {
		m[s] = s
	}
	return m
}()

// uniqueValue are the response headers whose values change from response
// to response: interning them would only fill the connection's table.
var uniqueValue = map[string]bool{
	"Date": true, "Set-Cookie": true, "X-Request-Id": true, "Etag": true,
	"Last-Modified": true, "Expires": true, "Traceparent": true, "Tracestate": true,
}

// readResponse reads the next response on dc for req.
//
// The spelling of the head's header names (ResponseHeaderNames) comes
// from the head itself: the direct path does not arm the connection's
// responseHeads, which would scan every byte read a second time, except
// for a head longer than the buffer, which it scans from the buffer on.
func (dc *directConn) readResponse(ctx context.Context, req *http.Request) (*http.Response, error) {
	head := peekResponseHead(dc.br)
	if head == nil {
		if n := dc.br.Buffered(); n > 0 && dc.cn != nil {
			b, _ := dc.br.Peek(n)
			dc.cn.heads.requestWritten()
			dc.cn.heads.read(b)
		}
		return http.ReadResponse(dc.br, req)
	}
	if dc.cn != nil { // nil in the parser's own tests
		dc.cn.heads.publishNames(responseHeadNames(head))
	}
	if r := dc.hp.parse(head, req, spareHeader(ctx)); r != nil {
		dc.br.Discard(len(head))
		r.body.br = dc.br
		r.body.wrap = &r.wrap
		if r.resp.ContentLength > 0 && req.Method != http.MethodHead { // 0 for 1xx, 204, 304
			r.body.remaining = r.resp.ContentLength
		}
		r.resp.Body = &r.body
		return &r.resp, nil
	}
	return http.ReadResponse(dc.br, req)
}

// responseHeadNames returns the header names of a response head (status
// line to empty line) that are not spelled canonically, as responseHeads
// would have found them: continuation lines and lines without a name are
// skipped.
func responseHeadNames(head []byte) HeaderNames {
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
			names = AddHeaderName(names, l[:colon])
		}
	}
	return names
}

// peekResponseHead returns the buffered response head up to its empty
// line, waiting for more as long as it fits the buffer; nil when it does
// not, or on an error (http.ReadResponse then reports it).
func peekResponseHead(br *bufio.Reader) []byte {
	for n := 1; ; {
		b, err := br.Peek(n)
		if i := bytes.Index(b, endOfHead); i >= 0 {
			return b[:i+4]
		}
		if err != nil {
			return nil
		}
		if n = br.Buffered(); n < len(b)+1 {
			n = len(b) + 1
		}
		if n > br.Size() {
			return nil
		}
	}
}

// parse reads head as http.ReadResponse would read it for req, or
// returns nil to leave it to http.ReadResponse. The header goes into h
// when it is not nil (an empty map, the caller's to give away).
func (p *headParser) parse(head []byte, req *http.Request, h http.Header) *directResponse {
	nl := bytes.IndexByte(head, '\n')
	if nl < 13 || head[nl-1] != '\r' {
		return nil
	}
	line := head[:nl-1]
	// "HTTP/1.1 DDD" and an optional " reason".
	if string(line[:9]) != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return nil
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	n := 0
	rest := head[nl+1 : len(head)-2]
	for len(rest) > 0 {
		end := bytes.IndexByte(rest, '\n')
		if end < 1 || rest[end-1] != '\r' || n == maxRespFields {
			return nil
		}
		l := rest[:end-1]
		rest = rest[end+1:]
		colon := bytes.IndexByte(l, ':')
		if colon < 1 || !validName(l[:colon]) {
			return nil // obs-fold, no name, a space before the colon, ...
		}
		v := httplex.TrimOWS(l[colon+1:])
		for _, c := range v {
			if c < 0x80 && c != '\t' && (c < 0x20 || c == 0x7f) {
				return nil
			}
		}
		p.fields[n].name, p.fields[n].value = l[:colon], v
		n++
	}

	r := &directResponse{}
	vals := r.vals[:]
	if n > len(vals) {
		vals = make([]string, n)
	}
	resp := &r.resp
	resp.Status = p.intern(line[9:])
	resp.StatusCode = code
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	resp.Request = req
	if h == nil {
		h = make(http.Header, n)
	}
	var canon [64]byte
	for i := range n {
		f := &p.fields[i]
		var key string
		if len(f.name) <= len(canon) {
			key = p.intern(httplex.CanonicalName(canon[:0], f.name))
		} else {
			key = textproto.CanonicalMIMEHeaderKey(string(f.name))
		}
		var value string
		if uniqueValue[key] {
			// The last one may repeat (Date, for a second).
			if last, ok := p.last[key]; ok && last == string(f.value) {
				value = last
			} else {
				value = string(f.value)
				if p.last == nil {
					p.last = make(map[string]string, len(uniqueValue))
				}
				p.last[key] = value
			}
		} else {
			value = p.intern(f.value)
		}
		if vv, ok := h[key]; ok {
			h[key] = append(vv, value)
			continue
		}
		vals[i] = value
		h[key] = vals[i : i+1 : i+1]
	}
	resp.Header = h
	if _, ok := h["Transfer-Encoding"]; ok {
		return nil
	}
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" { // fixPragmaCacheControl
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	length := int64(-1)
	if cls := h["Content-Length"]; len(cls) > 0 {
		if len(cls) > 1 || cls[0] == "" {
			return nil
		}
		cl, err := strconv.ParseUint(cls[0], 10, 63)
		if err != nil {
			return nil
		}
		length = int64(cl)
	}
	for _, v := range h["Connection"] {
		if httplex.HasToken(v, "close") {
			resp.Close = true
		}
	}
	if resp.Close {
		delete(h, "Connection") // as shouldClose does for responses
	}
	switch {
	case req.Method == http.MethodHead:
		resp.ContentLength = length
	case code/100 == 1 || code == http.StatusNoContent || code == http.StatusNotModified:
		resp.ContentLength = 0
	case length < 0:
		return nil // a body to the connection's end
	default:
		resp.ContentLength = length
	}
	return r
}

// readLength reads a parsed response's body, its remaining bytes, from
// the connection's reader: a body cut short is io.ErrUnexpectedEOF, as
// net/http's.
func (b *directBody) readLength(p []byte) (int, error) {
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
	if err == nil && b.remaining == 0 {
		err = io.EOF
	}
	return n, err
}
