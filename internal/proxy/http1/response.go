package http1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strconv"
)

// The response head parser of the upstream direct path. It reads the common response
// (HTTP/1.1, a Content-Length body or none, plain CRLF header lines) into
// an http.Response the way http.ReadResponse would, field for field, with
// the response, its body and its header values' slices in memory the
// caller allocates at once (Scan first says whether to), and names and values interned per connection (a connection's
// responses repeat them). Anything else (chunked or close-delimited
// bodies, obs-fold, a head that does not fit the connection's buffer, a
// malformed one) is left to http.ReadResponse, which answers it as
// before. FuzzResponseHead checks it against http.ReadResponse.

// maxRespFields is the most header lines the parser takes.
const maxRespFields = 32

// responseMaxInterned bounds a connection's interned strings,
// responseMaxInternLen the length of one.
const (
	responseMaxInterned  = 64
	responseMaxInternLen = 128
)

// ResponseParser is a connection's parser state: Scan checks a head and
// Fill, called after it, builds the response.
type ResponseParser struct {
	strs   map[string]string
	last   map[string]string // the last value of each responseUnique header
	fields [maxRespFields]struct{ name, value []byte }
	// What Scan found, for Fill.
	n      int
	code   int
	status []byte
}

func (p *ResponseParser) intern(b []byte) string {
	return internString(&p.strs, responseCommon, b, responseMaxInterned, responseMaxInternLen)
}

var responseCommon = func() map[string]string {
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

// responseUnique are the response headers whose values change from response
// to response: interning them would only fill the connection's table.
var responseUnique = map[string]bool{
	"Date": true, "Set-Cookie": true, "X-Request-Id": true, "Etag": true,
	"Last-Modified": true, "Expires": true, "Traceparent": true, "Tracestate": true,
}

// PeekResponseHead returns the buffered response head up to its empty
// line, waiting for more as long as it fits the buffer; nil when it does
// not, or on an error (http.ReadResponse then reports it).
func PeekResponseHead(br *bufio.Reader) []byte {
	for n := 1; ; {
		b, err := br.Peek(n)
		if i := bytes.Index(b, crlfcrlf); i >= 0 {
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

// Scan checks head, a response head as PeekResponseHead returns it, and
// reports whether Fill may read it; false leaves it to http.ReadResponse.
func (p *ResponseParser) Scan(head []byte) bool {
	nl := bytes.IndexByte(head, '\n')
	if nl < 13 || head[nl-1] != '\r' {
		return false
	}
	line := head[:nl-1]
	// "HTTP/1.1 DDD" and an optional " reason".
	if string(line[:9]) != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return false
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return false
		}
		code = code*10 + int(c-'0')
	}
	n := 0
	rest := head[nl+1 : len(head)-2]
	for len(rest) > 0 {
		end := bytes.IndexByte(rest, '\n')
		if end < 1 || rest[end-1] != '\r' || n == maxRespFields {
			return false
		}
		l := rest[:end-1]
		rest = rest[end+1:]
		colon := bytes.IndexByte(l, ':')
		if colon < 1 || !validName(l[:colon]) {
			return false // obs-fold, no name, a space before the colon, ...
		}
		v := trimOWS(l[colon+1:])
		for _, c := range v {
			if c < 0x80 && c != '\t' && (c < 0x20 || c == 0x7f) {
				return false
			}
		}
		p.fields[n].name, p.fields[n].value = l[:colon], v
		n++
	}
	p.n, p.code, p.status = n, code, line[9:]
	return true
}

// Fill reads the head Scan accepted into resp as http.ReadResponse would
// read it for req, with the header's values in vals (when they fit) and
// the header in h when it is not nil (an empty map, the caller's to give
// away). False leaves the head to http.ReadResponse after all (a body
// framed other than by Content-Length, or by the connection's end).
func (p *ResponseParser) Fill(resp *http.Response, vals []string, req *http.Request, h http.Header) bool {
	n, code := p.n, p.code
	if n > len(vals) {
		vals = make([]string, n)
	}
	resp.Status = p.intern(p.status)
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
			key = p.intern(canonicalName(canon[:0], f.name))
		} else {
			key = textproto.CanonicalMIMEHeaderKey(string(f.name))
		}
		var value string
		if responseUnique[key] {
			// The last one may repeat (Date, for a second).
			if last, ok := p.last[key]; ok && last == string(f.value) {
				value = last
			} else {
				value = string(f.value)
				if p.last == nil {
					p.last = make(map[string]string, len(responseUnique))
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
		return false
	}
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" { // fixPragmaCacheControl
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	length := int64(-1)
	if cls := h["Content-Length"]; len(cls) > 0 {
		if len(cls) > 1 || cls[0] == "" {
			return false
		}
		cl, err := strconv.ParseUint(cls[0], 10, 63)
		if err != nil {
			return false
		}
		length = int64(cl)
	}
	for _, v := range h["Connection"] {
		if hasToken(v, "close") {
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
		return false // a body to the connection's end
	default:
		resp.ContentLength = length
	}
	return true
}
