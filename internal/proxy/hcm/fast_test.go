package hcm_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// Pipelined plain requests are answered in order on one connection, and a
// request that needs net/http (Expect: 100-continue) later on the same
// connection is handed over with the bytes already read, and answered too.
func TestFastPathPipelinedThenHandedOver(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: svc\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc"+
		"HEAD /3 HTTP/1.1\r\nHost: svc\r\n\r\n")
	br := bufio.NewReader(c)
	for i, method := range []string{"GET", "POST", "HEAD"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (method != "HEAD") != (len(b) > 0) || resp.Header.Get("Date") == "" {
			t.Errorf("response %d to %s: %d, %d body bytes, Date %q", i+1, method, resp.StatusCode, len(b), resp.Header.Get("Date"))
		}
	}
	io.WriteString(c, "POST /4 HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("Expect: 100-continue after plain requests: %v, %v", resp, err)
	}
	io.WriteString(c, "xyz")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the handed-over request: %v, %v", resp, err)
	}
	resp.Body.Close()
	if got := f.Backend.Bodies(); strings.Join(got, ",") != ",abc,,xyz" {
		t.Errorf("backend bodies %q, want the four requests' in order", got)
	}
}

// Plain requests keep their connection alive on the fast path.
func TestFastPathKeepsConnectionsAlive(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 3 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on one connection: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Close {
			t.Fatalf("request %d: the connection is not kept alive", i+1)
		}
	}
}

// A request asking to close gets Connection: close and the connection
// ends after its response, as net/http does.
func TestFastPathConnectionClose(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{Outbound: true}, 5*time.Second)
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !resp.Close { // net/http reads Connection: close into Close
		t.Errorf("the response to Connection: close did not say close")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the response: %v, want EOF", err)
	}
}
