package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/http1"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// rawServer answers each request on a connection with the response
// respond returns for it, written as given.
func rawServer(t *testing.T, respond func(i int) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	var n int // responses so far, under mu
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					mu.Lock()
					r := respond(n)
					n++
					mu.Unlock()
					if _, err := io.WriteString(c, r); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// Through a Cluster, the names of each response are those of the
// connection GotConn reported, response after response on one keep-alive
// connection, with 100-continue and bodies that look like heads.
func TestResponseHeaderNamesThroughCluster(t *testing.T) {
	leak.Check(t)
	const inBody = "HTTP/1.1 200 OK\r\nx-body: 1\r\n\r\n"
	responses := []string{
		fmt.Sprintf("HTTP/1.1 200 OK\r\nx-custom-Case: a\r\nContent-Length: %d\r\n\r\n%s", len(inBody), inBody),
		fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Canonical: b\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(inBody), inBody),
		"HTTP/1.1 100 Continue\r\nx-interim: 1\r\n\r\nHTTP/1.1 201 Created\r\nSOAPAction: c\r\nContent-Length: 0\r\n\r\n",
	}
	want := []http1.HeaderNames{{"X-Custom-Case": "x-custom-Case"}, nil, {"Soapaction": "SOAPAction"}}
	addr := rawServer(t, func(i int) string { return responses[i%len(responses)] })
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{}, assignment(&server{name: addr}))
	for i := range 2 * len(responses) {
		var body io.Reader
		if i%len(responses) == 2 {
			body = strings.NewReader("payload")
		}
		req, _ := http.NewRequest(http.MethodPost, "http://c/", body)
		if body != nil {
			req.Header.Set("Expect", "100-continue")
		}
		names, b, err := roundTripNames(t, c, req)
		if !maps.Equal(names, want[i%len(want)]) {
			t.Errorf("response %d: names %v, want %v", i, names, want[i%len(want)])
		}
		if err != nil || !strings.Contains(string(b), "x-body") && i%len(responses) < 2 {
			t.Errorf("response %d: body %q, %v", i, b, err)
		}
	}
	// One kept alive per path: the direct path's (bodiless and small
	// requests) and the Transport's (the Expect: 100-continue one).
	if n := c.Stats().CxTotal; n != 2 {
		t.Errorf("%d connections, want one kept alive per path", n)
	}
}

// On the direct path the names come from the head it reads, and from the
// scanner for a head longer than its buffer: both spellings of a long
// head are kept, and the next (short, canonical) response's replace them.
func TestResponseHeaderNamesLongHead(t *testing.T) {
	leak.Check(t)
	long := "HTTP/1.1 200 OK\r\nx-early: 1\r\nX-Pad: " + strings.Repeat("a", 6000) + "\r\nx-late-Name: 2\r\nContent-Length: 2\r\n\r\nok"
	short := "HTTP/1.1 200 OK\r\nX-Short: 3\r\nContent-Length: 2\r\n\r\nok"
	responses := []string{long, short, "HTTP/1.1 200 OK\r\nsoapaction: 4\r\nContent-Length: 2\r\n\r\nok"}
	want := []http1.HeaderNames{{"X-Early": "x-early", "X-Late-Name": "x-late-Name"}, nil, {"Soapaction": "soapaction"}}
	addr := rawServer(t, func(i int) string { return responses[i%len(responses)] })
	c := newCluster(t, &xdsresource.Cluster{Name: "c"}, Options{}, assignment(&server{name: addr}))
	for i := range 2 * len(responses) {
		req, _ := http.NewRequest(http.MethodGet, "http://c/", nil)
		names, b, err := roundTripNames(t, c, req)
		if !maps.Equal(names, want[i%len(want)]) {
			t.Errorf("response %d: names %v, want %v", i, names, want[i%len(want)])
		}
		if err != nil || string(b) != "ok" {
			t.Errorf("response %d: body %q, %v", i, b, err)
		}
	}
	if n := c.Stats().CxTotal; n != 1 {
		t.Errorf("%d connections, want one kept alive", n)
	}
}

// roundTripNames sends req through c as the HCM does, learning the
// upstream connection from httptrace's GotConn, and returns the response
// header names' spelling that the connection recorded, and the body.
func roundTripNames(t *testing.T, c *Cluster, req *http.Request) (http1.HeaderNames, []byte, error) {
	t.Helper()
	var got net.Conn
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { got = info.Conn },
	})
	req = req.WithContext(ctx)
	resp, _, err := c.RoundTrip(ctx, req, &Call{})
	if err != nil {
		t.Fatal(err)
	}
	names := ResponseHeaderNames(got)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return names, b, err
}
