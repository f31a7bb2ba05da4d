package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// Pod IPs on loopback, as explicit mode assigns them.
var (
	clientPod = netip.MustParseAddr("127.10.0.1")
	serverPod = netip.MustParseAddr("127.10.0.2")
)

// countingListener counts accepted connections, so a test can tell how
// many HTTP/2 connections carried its tunnels.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
	peers    chan net.Addr
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
		select {
		case l.peers <- c.RemoteAddr():
		default:
		}
	}
	return c, err
}

// startServer serves s on the server pod's IP and shuts it down when the
// test ends.
func startServer(t testing.TB, s *Server) (netip.AddrPort, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverPod, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln, peers: make(chan net.Addr, 1)}
	served := make(chan error, 1)
	go func() { served <- s.Serve(cl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return addrPort(ln.Addr()), cl
}

// app is a TCP server standing for the pod's application.
type app struct {
	addr  netip.AddrPort
	peers chan netip.AddrPort // each connection's source
}

// startApp serves handle on the server pod's IP; each connection is
// closed after handle returns, and all are waited for when the test ends.
func startApp(t testing.TB, handle func(*net.TCPConn)) *app {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverPod, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	a := &app{addr: addrPort(ln.Addr()), peers: make(chan netip.AddrPort, 100)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case a.peers <- addrPort(c.RemoteAddr()):
			default:
			}
			wg.Go(func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return a
}

func echo(c *net.TCPConn) {
	copyBuffer(c, c)
	c.CloseWrite()
}

func newDialer(t testing.TB) *Dialer {
	d := &Dialer{Source: clientPod}
	t.Cleanup(func() { d.Close() })
	return d
}

func dial(t testing.TB, d *Dialer, tunnel, target netip.AddrPort) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.Dial(ctx, tunnel, target.String(), http.Header{"Baggage": {"k8s.namespace.name=default"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEcho(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	tunnel, _ := startServer(t, &Server{})
	c := dial(t, newDialer(t), tunnel, a.addr)

	for _, msg := range []string{"hello", "through", "the tunnel"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(msg, string(got)); diff != "" {
			t.Errorf("echo (-want +got):\n%s", diff)
		}
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c)
	if err != nil || len(rest) != 0 {
		t.Errorf("after CloseWrite: read %q, %v; want EOF", rest, err)
	}
}

func TestSourceAddresses(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	var peer Peer
	srv := &Server{Authorize: func(target netip.AddrPort, p Peer) error {
		peer = p
		return ownAddress(target, p)
	}}
	tunnel, cl := startServer(t, srv)
	c := dial(t, newDialer(t), tunnel, a.addr)
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))

	if got := addrPort((<-cl.peers)).Addr(); got != clientPod {
		t.Errorf("tunnel connection from %s, want the client pod %s", got, clientPod)
	}
	if got := (<-a.peers).Addr(); got != serverPod {
		t.Errorf("app connection from %s, want the server pod %s", got, serverPod)
	}
	if peer.Addr.Addr() != clientPod || peer.Local != tunnel {
		t.Errorf("Authorize saw peer %s local %s, want %s and %s", peer.Addr, peer.Local, clientPod, tunnel)
	}
	if diff := cmp.Diff([]string{"k8s.namespace.name=default"}, peer.Header["Baggage"]); diff != "" {
		t.Errorf("baggage (-want +got):\n%s", diff)
	}
	if got, want := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(), clientPod; got != want {
		t.Errorf("LocalAddr %s, want %s", got, want)
	}
	if got, want := c.RemoteAddr().String(), a.addr.String(); got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}
}

func TestConcurrentTunnelsShareOneConnection(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	tunnel, cl := startServer(t, &Server{})
	d := newDialer(t)

	const n = 50
	var (
		wg    sync.WaitGroup
		ready sync.WaitGroup // all tunnels open at once
		errs  = make(chan error, n)
	)
	ready.Add(n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := d.Dial(ctx, tunnel, a.addr.String(), nil)
			ready.Done()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			ready.Wait()
			msg := fmt.Appendf(nil, "tunnel %d", i)
			for range 10 {
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("tunnel %d read %q", i, got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := cl.accepted.Load(); got != 1 {
		t.Errorf("%d tunnels used %d TCP connections, want 1", n, got)
	}
}

func TestStreamLimitOpensAnotherConnection(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	tunnel, cl := startServer(t, &Server{MaxConcurrentStreams: 2})
	d := newDialer(t)
	for range 5 {
		c := dial(t, d, tunnel, a.addr)
		c.Write([]byte("x"))
		io.ReadFull(c, make([]byte, 1))
	}
	if got := cl.accepted.Load(); got != 3 {
		t.Errorf("5 open tunnels at 2 streams per connection used %d connections, want 3", got)
	}
}

func TestHalfClose(t *testing.T) {
	leak.Check(t)
	a := startApp(t, func(c *net.TCPConn) {
		got, err := io.ReadAll(c) // until the client's CloseWrite
		if err != nil {
			return
		}
		fmt.Fprintf(c, "read %d bytes: %s", len(got), got)
	})
	tunnel, _ := startServer(t, &Server{})
	c := dial(t, newDialer(t), tunnel, a.addr)
	c.Write([]byte("question"))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("read 8 bytes: question", string(reply)); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
}

func TestAppCloseEndsTunnel(t *testing.T) {
	leak.Check(t)
	// A close-delimited answer: the app replies and closes without
	// waiting for the client to finish sending.
	a := startApp(t, func(c *net.TCPConn) {
		c.Read(make([]byte, 10))
		c.Write([]byte("bye"))
	})
	tunnel, _ := startServer(t, &Server{})
	c := dial(t, newDialer(t), tunnel, a.addr)
	c.Write([]byte("hi"))
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "bye" {
		t.Errorf("read %q, %v; want bye and EOF", reply, err)
	}
}

func TestLargeTransfer(t *testing.T) {
	leak.Check(t)
	size := 64 << 20
	if testing.Short() {
		size = 8 << 20
	}
	a := startApp(t, echo)
	tunnel, _ := startServer(t, &Server{})
	c := dial(t, newDialer(t), tunnel, a.addr)

	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		rng := rand.NewChaCha8([32]byte{1})
		buf := make([]byte, 100_000) // not a multiple of any frame or buffer size
		for left := size; left > 0; {
			b := buf[:min(left, len(buf))]
			rng.Read(b)
			sent.Write(b)
			if _, err := c.Write(b); err != nil {
				werr <- err
				return
			}
			left -= len(b)
		}
		werr <- c.CloseWrite()
	}()
	recv := sha256.New()
	start := time.Now()
	n, err := io.Copy(recv, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if n != int64(size) {
		t.Fatalf("received %d bytes, sent %d", n, size)
	}
	if !bytes.Equal(sent.Sum(nil), recv.Sum(nil)) {
		t.Error("received bytes differ from those sent")
	}
	t.Logf("%d MiB each way in %v", size>>20, time.Since(start))
}

func TestRefusals(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	tunnel, _ := startServer(t, &Server{
		Authorize: func(target netip.AddrPort, p Peer) error {
			if target.Port() == 1 {
				return errors.New("not allowed")
			}
			return nil
		},
	})
	defaultTunnel, _ := startServer(t, &Server{})
	closedPort := mustClosedPort(t)
	d := newDialer(t)

	tests := []struct {
		name   string
		tunnel netip.AddrPort
		target string
		code   int
	}{
		{"authorize refuses", tunnel, netip.AddrPortFrom(serverPod, 1).String(), http.StatusForbidden},
		{"not this pod", defaultTunnel, netip.AddrPortFrom(netip.MustParseAddr("127.10.0.3"), a.addr.Port()).String(), http.StatusForbidden},
		{"the tunnel port itself", defaultTunnel, defaultTunnel.String(), http.StatusForbidden},
		{"app down", defaultTunnel, closedPort.String(), http.StatusServiceUnavailable},
		{"host name", defaultTunnel, "reviews:9080", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := d.Dial(ctx, tt.tunnel, tt.target, nil)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Dial: %v, want a *StatusError", err)
			}
			if se.Code != tt.code || se.Body == "" {
				t.Errorf("Dial: %v, want status %d with an explanation", err, tt.code)
			}
		})
	}
}

// mustClosedPort returns an address on the server pod where nothing
// listens.
func mustClosedPort(t *testing.T) netip.AddrPort {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverPod, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	ap := addrPort(ln.Addr())
	ln.Close()
	return ap
}

func TestNotConnect(t *testing.T) {
	leak.Check(t)
	tunnel, _ := startServer(t, &Server{})
	resp, err := getH2C(t, "http://"+tunnel.String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	if resp != http.StatusBadRequest {
		t.Errorf("GET answered %d, want 400", resp)
	}
}

func TestGracefulShutdown(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	srv := &Server{}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverPod, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	tunnel := addrPort(ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	d := newDialer(t)
	c := dial(t, d, tunnel, a.addr)
	c.Write([]byte("before"))
	io.ReadFull(c, make([]byte, 6))

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	// New tunnels are refused (the connection got GOAWAY, the port is
	// closed)...
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		nc, err := d.Dial(ctx, tunnel, a.addr.String(), nil)
		cancel()
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("new tunnels still accepted after Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ...while the open one carries on to its end.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a tunnel open", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.Write([]byte("after"))
	c.CloseWrite()
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "after" {
		t.Errorf("in-flight tunnel read %q, %v; want after and EOF", rest, err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestShutdownDeadlineCloses(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	srv := &Server{}
	tunnel, _ := startServer(t, srv)
	c := dial(t, newDialer(t), tunnel, a.addr)
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want deadline exceeded", err)
	}
	if _, err := io.ReadAll(c); err == nil {
		t.Error("tunnel ended cleanly, want an error after the forced close")
	}
}

func TestReadDeadline(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	tunnel, _ := startServer(t, &Server{})
	c := dial(t, newDialer(t), tunnel, a.addr)
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read: %v, want %v", err, os.ErrDeadlineExceeded)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Read: %v is not a timeout", err)
	}
}

func TestDialContextCancelled(t *testing.T) {
	leak.Check(t)
	// The app accepts but the Authorize hook stalls, so the answer never
	// comes before ctx ends.
	release := make(chan struct{})
	a := startApp(t, echo)
	tunnel, _ := startServer(t, &Server{Authorize: func(netip.AddrPort, Peer) error {
		<-release
		return nil
	}})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := newDialer(t).Dial(ctx, tunnel, a.addr.String(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial: %v, want deadline exceeded", err)
	}
}
