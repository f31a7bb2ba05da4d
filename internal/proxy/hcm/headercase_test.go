package hcm_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// caseBackend is an HTTP/1.1 server written on bytes: it answers each
// request with the request head it received, byte for byte, under
// response header names of odd case.
func caseBackend(t *testing.T) string {
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
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head.String())))
					if err != nil {
						return
					}
					if req.Header.Get("Expect") == "100-continue" {
						io.WriteString(c, "HTTP/1.1 100 Continue\r\nx-interim: 1\r\n\r\n")
					}
					var body io.Reader = io.LimitReader(br, req.ContentLength)
					if len(req.TransferEncoding) > 0 {
						body = httputil.NewChunkedReader(br)
					}
					if _, err := io.Copy(io.Discard, body); err != nil {
						return
					}
					if len(req.TransferEncoding) > 0 { // trailers
						for {
							line, err := br.ReadString('\n')
							if err != nil {
								return
							}
							if line == "\r\n" {
								break
							}
						}
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nx-custom-Case: v\r\ncontent-type: text/plain\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Canonical: c\r\nContent-Length: %d\r\n\r\n%s", head.Len(), head.String())
				}
			})
		}
	})
	return ln.Addr().String()
}

// fieldNames are the header names of a message head, as spelled.
func fieldNames(head string) []string {
	var names []string
	for line := range strings.SplitSeq(head, "\r\n") {
		if name, _, ok := strings.Cut(line, ":"); ok {
			names = append(names, name)
		}
	}
	return names
}

func hasName(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// Header names keep their spelling through the front end both ways, on
// pipelined requests with bodies that look like heads and on a
// 100-continue exchange; names net/http owns stay canonical; requests
// with canonical names stay canonical (nothing leaks from a request to
// the next).
func TestHeaderCasePreserved(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	host, port, _ := net.SplitHostPort(caseBackend(t))
	p, _ := strconv.Atoi(port)
	f.cluster.Update(&xdsresource.ClusterLoadAssignment{ClusterName: "backend", Localities: []xdsresource.LocalityEndpoints{{
		Weight: 1, Endpoints: []xdsresource.Endpoint{{Address: host, Port: uint32(p), Weight: 1, Healthy: true}},
	}}})

	inner := "GET / HTTP/1.1\r\nx-in-body: 1\r\n\r\n"
	raw := "GET /1 HTTP/1.1\r\nHost: svc\r\nx-lower: 1\r\nX-MiXeD-CaSe: 2\r\nSOAPAction: 3\r\nuser-agent: ua\r\ncontent-length: 0\r\nX-Canonical: 4\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nUser-Agent: ua\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(inner), inner) +
		"GET /3 HTTP/1.1\r\nHost: svc\r\nX-Lower: 5\r\nConnection: close\r\n\r\n"
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	wire, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	var heads, seen []string
	rest := string(wire)
	for range 3 {
		head, after, ok := strings.Cut(rest, "\r\n\r\n")
		if !ok {
			t.Fatalf("no response head in %q (all: %q)", rest, wire)
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head+"\r\n\r\n")), nil)
		if err != nil || resp.ContentLength < 0 || int(resp.ContentLength) > len(after) {
			t.Fatalf("response %q: %v", head, err)
		}
		heads = append(heads, head)
		seen = append(seen, after[:resp.ContentLength])
		rest = after[resp.ContentLength:]
	}

	// What the backend received.
	at1 := fieldNames(seen[0])
	for _, n := range []string{"x-lower", "X-MiXeD-CaSe", "SOAPAction", "user-agent", "X-Canonical", "Host"} {
		if !hasName(at1, n) {
			t.Errorf("request 1: the backend got no %q in %q", n, at1)
		}
	}
	for _, n := range []string{"User-Agent", "X-Lower", "X-Mixed-Case", "Soapaction"} {
		if hasName(at1, n) {
			t.Errorf("request 1: the backend got %q too: %q", n, at1)
		}
	}
	if at2 := fieldNames(seen[1]); !hasName(at2, "User-Agent") || hasName(at2, "x-in-body") || hasName(at2, "x-lower") {
		t.Errorf("request 2: the backend got %q", at2)
	}
	if at3 := fieldNames(seen[2]); !hasName(at3, "X-Lower") {
		t.Errorf("request 3: the backend got %q, want X-Lower as sent", at3)
	}

	// What the client received. The handler finds the upstream
	// connection's names through httptrace's GotConn: a way of sending
	// requests upstream that does not report its connection there, as the
	// Transport does, loses them (see upstream.ResponseHeaderNames).
	for i, head := range heads {
		names := fieldNames(head)
		for _, n := range []string{"x-custom-Case", "content-type", "date", "X-Canonical", "Content-Length"} {
			if !hasName(names, n) {
				t.Errorf("response %d: no %q in %q (was GotConn told the upstream connection?)", i+1, n, names)
			}
		}
		for _, n := range []string{"X-Custom-Case", "Content-Type", "Date"} {
			if hasName(names, n) {
				t.Errorf("response %d: %q too in %q", i+1, n, names)
			}
		}
	}
}

// A 100-continue exchange: the interim answer's names do not leak into
// the final one's, and the body follows.
func TestHeaderCaseExpectContinue(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	host, port, _ := net.SplitHostPort(caseBackend(t))
	p, _ := strconv.Atoi(port)
	f.cluster.Update(&xdsresource.ClusterLoadAssignment{ClusterName: "backend", Localities: []xdsresource.LocalityEndpoints{{
		Weight: 1, Endpoints: []xdsresource.Endpoint{{Address: host, Port: uint32(p), Weight: 1, Healthy: true}},
	}}})
	c := f.dial(t, 10*time.Second)
	body := "hello after 100"
	fmt.Fprintf(c, "POST /e HTTP/1.1\r\nHost: svc\r\nx-before-continue: 1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("first answer %v, %v; want 100", resp, err)
	}
	io.WriteString(c, body)
	line, _ := br.ReadString('\n')
	var head []string
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
		head = append(head, strings.TrimRight(l, "\r\n"))
	}
	names := fieldNames(strings.Join(head, "\r\n"))
	if !strings.HasPrefix(line, "HTTP/1.1 200") || !hasName(names, "x-custom-Case") || hasName(names, "x-interim") {
		t.Errorf("final answer %q %q", line, names)
	}
}

// On the fast path the head parser gives the names' spelling, also for a
// head it leaves to http.ReadRequest (an escaped path), and nothing leaks
// from one request to the next on the connection.
func TestHeaderCaseFastPathFallback(t *testing.T) {
	leak.Check(t)
	f := startFrontEndTo(t, caseBackend(t), hcm.Config{Outbound: true}, 5*time.Second)
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /a%20b HTTP/1.1\r\nHost: svc\r\nx-lower: 1\r\nSOAPAction: 2\r\n\r\n"+
		"GET /2 HTTP/1.1\r\nHost: svc\r\nX-Lower: 3\r\nSoapaction: 4\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, tc := range []struct{ want, not []string }{
		{[]string{"x-lower", "SOAPAction"}, []string{"X-Lower", "Soapaction"}},
		{[]string{"X-Lower", "Soapaction"}, []string{"x-lower", "SOAPAction"}},
	} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		seen, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		names := fieldNames(string(seen))
		for _, n := range tc.want {
			if !hasName(names, n) {
				t.Errorf("request %d: the backend got no %q in %q", i+1, n, names)
			}
		}
		for _, n := range tc.not {
			if hasName(names, n) {
				t.Errorf("request %d: the backend got %q in %q", i+1, n, names)
			}
		}
	}
}
