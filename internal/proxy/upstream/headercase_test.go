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

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

func TestAddHeaderName(t *testing.T) {
	var m HeaderNames
	for _, n := range []string{"Content-Type", "X-Forwarded-For", "A", "X-1", "Www-Authenticate"} {
		if m = AddHeaderName(m, []byte(n)); m != nil {
			t.Fatalf("canonical %q recorded: %v", n, m)
		}
	}
	for _, n := range []string{"x-lower", "X-MiXeD-CaSe", "SOAPAction", "x-lower", "X-LOWER", "bad name", "bad\x00", ""} {
		m = AddHeaderName(m, []byte(n))
	}
	want := HeaderNames{"X-Lower": "x-lower", "X-Mixed-Case": "X-MiXeD-CaSe", "Soapaction": "SOAPAction"}
	if !maps.Equal(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
	if n := testing.AllocsPerRun(100, func() { AddHeaderName(nil, []byte("X-Canonical-Name")) }); n != 0 {
		t.Errorf("a canonical name costs %v allocations", n)
	}
}

// scanSplit feeds the response heads scanner a request and then the
// response bytes in two reads split at i.
func scanSplit(wire string, i int) *responseHeads {
	rh := &responseHeads{}
	rh.requestWritten()
	rh.read([]byte(wire[:i]))
	rh.read([]byte(wire[i:]))
	return rh
}

func names(rh *responseHeads) HeaderNames {
	if p := rh.names.Load(); p != nil {
		return *p
	}
	return nil
}

func TestResponseHeadsSplitAnywhere(t *testing.T) {
	const final = "HTTP/1.1 200 OK\r\nx-custom-Case: 1\r\nContent-Type: text/plain\r\nX-UP: 2\r\n continued\r\nTransfer-Encoding: chunked\r\n\r\n"
	// A chunked body whose data looks like a response head.
	const body = "21\r\nHTTP/1.1 200 OK\r\nx-in-body: 1\r\n\r\n\r\n0\r\n\r\n"
	for _, tc := range []struct {
		name, wire string
		want       HeaderNames
		after      uint32
	}{
		{"Final", final + body, HeaderNames{"X-Custom-Case": "x-custom-Case", "X-Up": "X-UP"}, rhIdle},
		{"Continue", "HTTP/1.1 100 Continue\r\n\r\n" + final + body, HeaderNames{"X-Custom-Case": "x-custom-Case", "X-Up": "X-UP"}, rhIdle},
		{"EarlyHintsNamesDoNotLeak", "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\nX-Fine: 1\r\n\r\n", nil, rhIdle},
		{"Canonical", "HTTP/1.1 200 OK\r\nContent-Length: 33\r\n\r\nHTTP/1.1 200 OK\r\nx-in-body: 1\r\n\r\n", nil, rhIdle},
		{"Upgrade", "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nx-in-frames: 1\r\n\r\n", HeaderNames{"Upgrade": "upgrade"}, rhOff},
		{"NotAResponse", "SSH-2.0-OpenSSH\r\nx-foo: 1\r\n\r\n", nil, rhIdle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i <= len(tc.wire); i++ {
				rh := scanSplit(tc.wire, i)
				if got := names(rh); !maps.Equal(got, tc.want) {
					t.Fatalf("split at %d: names %v, want %v", i, got, tc.want)
				}
				if st := rh.state.Load(); st != tc.after {
					t.Fatalf("split at %d: state %d after, want %d", i, st, tc.after)
				}
			}
		})
	}
}

// Bytes read while no request is outstanding (a body, say) are not
// scanned; the next request re-arms the scanner and replaces the names.
func TestResponseHeadsOnlyAfterARequest(t *testing.T) {
	rh := &responseHeads{}
	rh.read([]byte("HTTP/1.1 200 OK\r\nx-unasked: 1\r\n\r\n"))
	if got := names(rh); got != nil {
		t.Fatalf("unarmed scanner recorded %v", got)
	}
	rh.requestWritten()
	rh.read([]byte("HTTP/1.1 200 OK\r\nx-first: 1\r\nContent-Length: 33\r\n\r\n"))
	// Body bytes written after an early response re-arm it: the one case
	// where a response body that starts like a head is scanned (names
	// only, so case only).
	rh.requestWritten()
	rh.read([]byte("HTTP/1.1 200 OK\r\nx-second: 1\r\n\r\n"))
	rh.requestWritten()
	rh.read([]byte("HTTP/1.1 204 No Content\r\nX-Canonical: 1\r\n\r\n"))
	if got := names(rh); got != nil {
		t.Fatalf("names of an earlier response kept: %v", got)
	}
}

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
	want := []HeaderNames{{"X-Custom-Case": "x-custom-Case"}, nil, {"Soapaction": "SOAPAction"}}
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
	want := []HeaderNames{{"X-Early": "x-early", "X-Late-Name": "x-late-Name"}, nil, {"Soapaction": "soapaction"}}
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
func roundTripNames(t *testing.T, c *Cluster, req *http.Request) (HeaderNames, []byte, error) {
	t.Helper()
	var got net.Conn
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { got = info.Conn },
	})
	req = req.WithContext(ctx)
	resp, _, err := c.RoundTrip(ctx, req, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	names := ResponseHeaderNames(got)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return names, b, err
}
