package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/http1"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// compareWithReadResponse reads msg as the response to a method request
// with the head parser, as the direct path does, and with
// http.ReadResponse, and fails when they disagree on any field or on the
// body. It returns whether the parser took the head (false: it left it
// to http.ReadResponse).
func compareWithReadResponse(t *testing.T, msg []byte, method string) bool {
	t.Helper()
	req := &http.Request{Method: method}
	dc := &directConn{br: bufio.NewReader(bytes.NewReader(msg))}
	head := http1.PeekResponseHead(dc.br)
	if head == nil {
		return false
	}
	var r http.Response
	if !dc.hp.Scan(head) || !dc.hp.Fill(&r, nil, req, nil) {
		return false
	}
	got, err := dc.readResponse(req, nil)
	if err != nil {
		t.Fatalf("%q: the parser took it, then: %v", msg, err)
	}
	want, werr := http.ReadResponse(bufio.NewReader(bytes.NewReader(msg)), req)
	if werr != nil {
		t.Errorf("%q (%s): http.ReadResponse refused it (%v), the parser did not", msg, method, werr)
		return true
	}
	type fields struct {
		Status                 string
		StatusCode             int
		Proto                  string
		ProtoMajor, ProtoMinor int
		ContentLength          int64
		TransferEncoding       []string
		Close, Uncompressed    bool
		Trailer                http.Header
		Header                 http.Header
	}
	g := fields{got.Status, got.StatusCode, got.Proto, got.ProtoMajor, got.ProtoMinor, got.ContentLength, got.TransferEncoding, got.Close, got.Uncompressed, got.Trailer, got.Header}
	w := fields{want.Status, want.StatusCode, want.Proto, want.ProtoMajor, want.ProtoMinor, want.ContentLength, want.TransferEncoding, want.Close, want.Uncompressed, want.Trailer, want.Header}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%q (%s):\nparser              %+v\nhttp.ReadResponse %+v", msg, method, g, w)
	}
	// The body alone, without the connection's pooling around it.
	gb, gerr := io.ReadAll(readFunc(got.Body.(*directBody).readLength))
	wb, wrr := io.ReadAll(want.Body)
	if !bytes.Equal(gb, wb) || (gerr == nil) != (wrr == nil) {
		t.Errorf("%q (%s): body %q (%v), http.ReadResponse %q (%v)", msg, method, gb, gerr, wb, wrr)
	}
	return true
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

func TestResponseHeadLikeReadResponse(t *testing.T) {
	for _, tc := range []struct {
		msg, method string
		parsed      bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HEAD", true},
		{"HTTP/1.1 200 OK\r\n\r\n", "HEAD", true},
		{"HTTP/1.1 204 No Content\r\n\r\n", "GET", true},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", true},
		{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", "GET", true},
		{"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"HTTP/1.1 599 Whatever You Like\r\nContent-Length: 1\r\n\r\nx", "POST", true},
		{"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-lower: a\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\nabc", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, Close\r\n\r\nabc", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: closed\r\n\r\nabc", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nPragma: no-cache\r\n\r\nabc", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTrailer: X-T\r\n\r\nabc", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-V: \t a \xff \t\r\nX-E:\r\n\r\nabc", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\nA: 10\r\n\r\nabc", "GET", true},
		// Left to http.ReadResponse.
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\n\r\nuntil close", "GET", false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Fold: a\r\n b\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Bad: a\x01\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Bare: a\nX-B: b\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\nabc", "GET", false},
		{"HTTP/1.1  200 OK\r\nContent-Length: 3\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 20x OK\r\nContent-Length: 3\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 2000 OK\r\nContent-Length: 3\r\n\r\nabc", "GET", false},
		{"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\nContent-Length: 3\r\n\r\nabc", "GET", false},
	} {
		if got := compareWithReadResponse(t, []byte(tc.msg), tc.method); got != tc.parsed {
			t.Errorf("%q (%s): parsed %v, want %v", tc.msg, tc.method, got, tc.parsed)
		}
	}
}

// A warm connection's response heads cost one allocation for the response
// (its body and values) and its header map.
func TestResponseHeadAllocations(t *testing.T) {
	msg := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nDate: Wed, 25 Nov 2026 20:00:00 GMT\r\nContent-Length: 0\r\n\r\n")
	dc := &directConn{}
	req := &http.Request{Method: "GET"}
	rd := bytes.NewReader(msg)
	dc.br = bufio.NewReader(rd)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(msg)
		dc.br.Reset(rd)
		if _, err := dc.readResponse(req, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 { // the response and the header map (a Date repeats)
		t.Errorf("%v allocations per response head, want at most 3", allocs)
	}
}

// Responses of every framing, one after another on one kept-alive
// direct connection: the parsed ones and those left to http.ReadResponse
// alike arrive whole, and the connection is reused throughout.
func TestDirectPathResponseFramings(t *testing.T) {
	leak.Check(t)
	answers := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Case: a\r\n\r\nfirst",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\nX-Trailer: t\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfifth",
		"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlast",
	}
	want := []string{"first", "second", "", "fifth", "last"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan int, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- 1
			br := bufio.NewReader(c)
			for n < len(answers) {
				req, err := http.ReadRequest(br)
				if err != nil {
					break
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, answers[n])
				n++
			}
			c.Close()
		}
	}()
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{}, assignment(&server{name: ln.Addr().String()}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, w := range want {
		resp, body, err := directGet(t, c, ctx, http.MethodGet, "")
		if err != nil || body != w {
			t.Fatalf("response %d: %q, %v; want %q", i+1, body, err, w)
		}
		if i == 1 && resp.Trailer.Get("X-Trailer") != "t" {
			t.Errorf("chunked response's trailer: %v", resp.Trailer)
		}
	}
	ln.Close()
	<-done
	if n := len(accepted); n != 1 {
		t.Errorf("%d connections for %d responses, want 1", n, len(want))
	}
}

// FuzzResponseHead checks the parser against http.ReadResponse on
// arbitrary bytes: whatever it takes, it reads as ReadResponse does.
func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
		"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nConnection: close\r\nPragma: no-cache\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, msg []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		compareWithReadResponse(t, msg, method)
	})
}
