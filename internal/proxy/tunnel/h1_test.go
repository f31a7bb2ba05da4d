package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// serveConns runs ServeConn for every connection accepted on the server
// pod's IP, as the sidecar's tunnel listener does, and closes them all at
// the end.
func serveConns(t testing.TB, s *Server) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverPod, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() { s.ServeConn(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return addrPort(ln.Addr())
}

// HTTP/1.1 CONNECT gives a raw tunnel to the app: echo both ways, and
// half-close from either side passes through as TCP FIN.
func TestHTTP1ConnectEchoAndHalfClose(t *testing.T) {
	leak.Check(t)
	// The app answers after the client half-closed, then half-closes.
	a := startApp(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		c.Write(append([]byte("got "), b...))
		c.CloseWrite()
	})
	tunnel := serveConns(t, &Server{})
	d := newDialer(t)
	c, err := d.DialHTTP1(context.Background(), tunnel, a.addr.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello")
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got hello" {
		t.Errorf("read %q, %v; want %q", got, err, "got hello")
	}
	if src := <-a.peers; src.Addr() != serverPod {
		t.Errorf("the app saw %v, want the server pod's IP", src)
	}
}

// The app half-closing first still lets the client send: what HTTP/2
// streams on net/http cannot do.
func TestHTTP1ConnectAppHalfClosesFirst(t *testing.T) {
	leak.Check(t)
	a := startApp(t, func(c *net.TCPConn) {
		c.Write([]byte("hi "))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		if string(b) != "late bytes" {
			t.Errorf("the app read %q after its half-close, want %q", b, "late bytes")
		}
	})
	tunnel := serveConns(t, &Server{})
	c, err := newDialer(t).DialHTTP1(context.Background(), tunnel, a.addr.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, _ := io.ReadAll(c)
	if string(got) != "hi " {
		t.Errorf("read %q", got)
	}
	io.WriteString(c, "late bytes")
	c.(interface{ CloseWrite() error }).CloseWrite()
	time.Sleep(50 * time.Millisecond)
}

// Handle takes the connection itself; refusals are HTTP status errors;
// HTTP/2 (HBONE) on the same port still works.
func TestServeConnHandleRefusalsAndHTTP2(t *testing.T) {
	leak.Check(t)
	handled := make(chan netip.AddrPort, 1)
	s := &Server{Handle: func(target netip.AddrPort, peer Peer, c net.Conn) {
		handled <- target
		b := make([]byte, 5)
		io.ReadFull(c, b)
		c.Write(b)
	}}
	a := startApp(t, echo)
	tunnel := serveConns(t, s)
	d := newDialer(t)

	target := netip.AddrPortFrom(serverPod, 9080)
	c, err := d.DialHTTP1(context.Background(), tunnel, target.String(), http.Header{"Baggage": {"x=1"}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "hello")
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" || <-handled != target {
		t.Errorf("Handle round trip: %q, %v", got, err)
	}
	c.Close()

	_, err = d.DialHTTP1(context.Background(), tunnel, "127.10.0.99:80", nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Errorf("a target on another pod: %v, want a 403 StatusError", err)
	}

	// HBONE over the same port: the Handle hook is for HTTP/1.1 only, so
	// the stream dials the app.
	hc := dial(t, d, tunnel, a.addr)
	io.WriteString(hc, "h2 ok")
	hc.CloseWrite()
	if b, _ := io.ReadAll(hc); string(b) != "h2 ok" {
		t.Errorf("HTTP/2 CONNECT through ServeConn echoed %q", b)
	}
}

// Bytes a client sends in the same write as its CONNECT (no wait for the
// 200) reach the stream, in order, however many there are.
func TestHTTP1BytesBehindConnect(t *testing.T) {
	leak.Check(t)
	got := make(chan string, 1)
	s := &Server{Handle: func(_ netip.AddrPort, _ Peer, c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- string(b)
	}}
	tunnel := serveConns(t, s)
	c, err := net.Dial("tcp", tunnel.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := strings.Repeat("0123456789", 1000)
	io.WriteString(c, "CONNECT "+netip.AddrPortFrom(serverPod, 80).String()+" HTTP/1.1\r\nHost: x\r\n\r\n"+body)
	c.(*net.TCPConn).CloseWrite()
	select {
	case b := <-got:
		if b != body {
			t.Errorf("the stream got %d bytes, want the %d sent behind the CONNECT", len(b), len(body))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream never ended")
	}
}
