package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// fastBufSize is the read buffer of hcm's fast path, which never sees a
// longer head.
const fastBufSize = 4 << 10

// compareWithReadRequest parses msg's head with the fast parser, as the
// fast path does (only heads PlainHead lets through), and with
// http.ReadRequest, and fails when they disagree: on whether the head is
// refused, on any field of the request, or on its body. It returns the
// fast parser's verdict: "fast", "fallback", "refused" or "skipped" (not
// a plain head, or no complete head).
func compareWithReadRequest(t *testing.T, msg []byte) string {
	t.Helper()
	i := bytes.Index(msg, crlfcrlf)
	if i < 0 || i+4 > fastBufSize {
		return "skipped"
	}
	head := msg[:i+4]
	if !PlainHead(head) {
		return "skipped"
	}
	p := NewRequestParser(&http.Request{})
	br := bufio.NewReader(bytes.NewReader(msg))
	got, err := p.Parse(head, br)
	want, werr := http.ReadRequest(bufio.NewReader(bytes.NewReader(msg)))
	switch {
	case errors.Is(err, ErrFallback):
		return "fallback"
	case err != nil:
		if werr == nil {
			t.Errorf("%q: fast parser refused it (%v), http.ReadRequest did not", msg, err)
		}
		return "refused"
	case werr != nil:
		t.Errorf("%q: http.ReadRequest refused it (%v), the fast parser did not", msg, werr)
		return "fast"
	}
	br.Discard(len(head))
	type fields struct {
		Method, RequestURI, Proto, Host string
		ProtoMajor, ProtoMinor          int
		Close                           bool
		ContentLength                   int64
		TransferEncoding                []string
		Trailer                         http.Header
	}
	g := fields{got.Method, got.RequestURI, got.Proto, got.Host, got.ProtoMajor, got.ProtoMinor, got.Close, got.ContentLength, got.TransferEncoding, got.Trailer}
	w := fields{want.Method, want.RequestURI, want.Proto, want.Host, want.ProtoMajor, want.ProtoMinor, want.Close, want.ContentLength, want.TransferEncoding, want.Trailer}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%q:\nfast parser    %+v\nhttp.ReadRequest %+v", msg, g, w)
	}
	if !reflect.DeepEqual(*got.URL, *want.URL) {
		t.Errorf("%q: URL %#v, http.ReadRequest %#v", msg, *got.URL, *want.URL)
	}
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Errorf("%q: header %v, http.ReadRequest %v", msg, got.Header, want.Header)
	}
	gb, gerr := io.ReadAll(got.Body)
	wb, wrr := io.ReadAll(want.Body)
	if !bytes.Equal(gb, wb) || (gerr == nil) != (wrr == nil) {
		t.Errorf("%q: body %q (%v), http.ReadRequest %q (%v)", msg, gb, gerr, wb, wrr)
	}
	return "fast"
}

func TestRequestHeadLikeReadRequest(t *testing.T) {
	for _, tc := range []struct{ msg, verdict string }{
		{"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", "fast"},
		{"POST /echo HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: fortio.org/fortio-1.68.2\r\nContent-Length: 5\r\n\r\nhello", "fast"},
		{"GET /a/b;c=d/e?x=1&y=%20#f HTTP/1.1\r\nHost: svc\r\n\r\n", "fast"},
		{"GET /p?q?r HTTP/1.1\r\nHost: svc\r\n\r\n", "fast"},
		{"GET //double/slash HTTP/1.1\r\nHost: svc\r\n\r\n", "fast"},
		{"get /lower-method HTTP/1.1\r\nHost: svc\r\n\r\n", "fast"},
		{"PURGE /ext-method HTTP/1.1\r\nHost: svc\r\n\r\n", "fast"},
		{"GET / HTTP/1.1\r\n\r\n", "fast"}, // no Host: ReadRequest takes it
		{"GET / HTTP/1.1\r\nhost: svc\r\nx-lower: a\r\nX-MiXeD-CaSe: b\r\nSOAPAction: c\r\n\r\n", "fast"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Dup: a\r\nx-dup: b\r\nX-DUP: c\r\n\r\n", "fast"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Spaces: \t a b \t\r\nX-Empty:\r\nX-Empty2:   \r\n\r\n", "fast"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Obs-Text: caf\xc3\xa9 \xff\r\n\r\n", "fast"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, Close\r\n\r\n", "fast"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nConnection: closed\r\n\r\n", "fast"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nPragma: no-cache\r\n\r\n", "fast"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\n\r\n", "fast"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "fast"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\n\r\n", "fast"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 007\r\n\r\nabcdefg", "fast"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\nshort", "fast"}, // body cut short
		{"POST / HTTP/1.1\r\nHost: svc\r\nTrailer: X-T\r\nContent-Length: 1\r\n\r\na", "fast"},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "refused"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "refused"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: +3\r\n\r\nabc", "refused"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: -3\r\n\r\nabc", "refused"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3, 3\r\n\r\nabc", "refused"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length:\r\n\r\n", "refused"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 0x10\r\n\r\n", "refused"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 99999999999999999999\r\n\r\n", "refused"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Bad: a\x01b\r\n\r\n", "refused"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Bad: a\x7fb\r\n\r\n", "refused"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Bad: a\rb\r\n\r\n", "refused"},
		{"GET /a\x01b?c HTTP/1.1\r\nHost: svc\r\n\r\n", "fallback"},
		{"GET /a?b\x01c HTTP/1.1\r\nHost: svc\r\n\r\n", "refused"},
		{"GET /a b HTTP/1.1\r\nHost: svc\r\n\r\n", "refused"},
		{"G(T / HTTP/1.1\r\nHost: svc\r\n\r\n", "refused"},
		{" GET / HTTP/1.1\r\nHost: svc\r\n\r\n", "refused"},
		{"GET  / HTTP/1.1\r\nHost: svc\r\n\r\n", "refused"},
		{"GET /%41%2f HTTP/1.1\r\nHost: svc\r\n\r\n", "fallback"},
		{"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: svc\r\n\r\n", "fallback"},
		{"GET /p? HTTP/1.1\r\nHost: svc\r\n\r\n", "fallback"},
		{"GET /(x)! HTTP/1.1\r\nHost: svc\r\n\r\n", "fallback"},
		{"GET http://svc/abs HTTP/1.1\r\nHost: other\r\n\r\n", "fallback"},
		{"OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n", "fallback"},
		// Not plain: net/http reads them.
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Fold: a\r\n b\r\n\r\n", "skipped"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Bare: a\nX-Next: b\r\n\r\n", "skipped"},
		{"GET / HTTP/1.1\r\nHost : svc\r\n\r\n", "skipped"},
		{"GET / HTTP/1.0\r\nHost: svc\r\n\r\n", "skipped"},
		{"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "skipped"},
		{"GET / HTTP/1.1\r\nHost: svc\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\n\r\n", "skipped"},
	} {
		if got := compareWithReadRequest(t, []byte(tc.msg)); got != tc.verdict {
			t.Errorf("%q: %s, want %s", tc.msg, got, tc.verdict)
		}
	}
}

// More header lines than the parser keeps room for go to ReadRequest.
func TestRequestHeadManyFields(t *testing.T) {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: svc\r\n")
	for range maxHeadFields {
		b.WriteString("X-A: 1\r\n")
	}
	b.WriteString("\r\n")
	if got := compareWithReadRequest(t, []byte(b.String())); got != "fallback" {
		t.Errorf("%d fields: %s, want fallback", maxHeadFields+1, got)
	}
}

// A connection's requests share interned strings, and one request's
// header slices never reach into another's.
func TestRequestHeadReuse(t *testing.T) {
	p := NewRequestParser(&http.Request{})
	br := bufio.NewReader(strings.NewReader(""))
	parse := func(msg string) *http.Request {
		t.Helper()
		head := []byte(msg)
		r, err := p.Parse(head, br)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := parse("GET /1 HTTP/1.1\r\nHost: svc\r\nX-A: 1\r\nX-B: 2\r\n\r\n")
	r.Header.Add("X-A", "added")
	if got := r.Header.Get("X-B"); got != "2" {
		t.Fatalf("X-B after appending to X-A: %q", got)
	}
	h1 := r.Header
	r = parse("GET /2 HTTP/1.1\r\nHost: svc\r\nX-A: 3\r\n\r\n")
	if h1.Get("X-A") != "1" || r.Header.Get("X-A") != "3" || r.URL.Path != "/2" {
		t.Errorf("second request: %v %v %v", h1, r.Header, r.URL)
	}
	head := []byte("GET /2 HTTP/1.1\r\nHost: svc\r\nX-A: 3\r\nUser-Agent: test\r\n\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.Parse(head, br); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 { // the header map and the values' array
		t.Errorf("%v allocations per request head on a warm connection, want at most 3", allocs)
	}
}

// FuzzRequestHead checks the fast parser against http.ReadRequest on
// arbitrary bytes: whatever it takes, it reads as ReadRequest does; what
// ReadRequest refuses, it refuses.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: svc\r\n\r\n",
		"POST /echo?x=1 HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		"GET / HTTP/1.1\r\nhost: a\r\nConnection: close\r\nPragma: no-cache\r\nX-V:  a\t\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /a?b\x01c HTTP/1.1\r\nHost: svc\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: svc\r\nX-Fold: a\r\n b\r\n\r\n",
		"PUT /x HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\n\r\nshort",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		compareWithReadRequest(t, msg)
	})
}
