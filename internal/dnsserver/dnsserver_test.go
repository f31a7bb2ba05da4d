package dnsserver_test

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/dnsserver"
	"github.com/trellismesh/trellis/internal/testing/dnstest"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// echo answers every message with itself, and the message "slow" later
// with "late slow".
func echo(_ context.Context, msg []byte, _ bool) ([]byte, dnsserver.Slow) {
	if string(msg) == "slow" {
		return nil, func(_ context.Context, msg []byte) []byte { return append([]byte("late "), msg...) }
	}
	return bytes.Clone(msg), nil
}

// serve runs Serve with cfg on fresh loopback sockets until the test ends,
// checking that it then returns nil and leaves no goroutine behind.
func serve(t *testing.T, cfg dnsserver.Config) dnstest.Addrs {
	t.Helper()
	return dnstest.Serve(t, func(ctx context.Context, pc net.PacketConn, l net.Listener) error {
		cfg.UDP, cfg.TCP = []net.PacketConn{pc}, []net.Listener{l}
		return dnsserver.Serve(ctx, cfg)
	})
}

func dial(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(dnstest.Timeout))
	return c
}

// wantClosed checks that the server closed c.
func wantClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(dnstest.Timeout))
	// EOF, or a reset when the server closed with unread bytes.
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Errorf("client read: %v, want the connection closed by the server", err)
	}
}

// TestAnswers: answers go back over the transport the message came on, a
// slow answer too, and a TCP connection carries several messages of
// different sizes, answered in order.
func TestAnswers(t *testing.T) {
	a := serve(t, dnsserver.Config{Handle: echo})
	for _, tc := range []struct{ msg, want string }{{"hello", "hello"}, {"slow", "late slow"}} {
		if got := string(a.Exchange(t, "udp", []byte(tc.msg))); got != tc.want {
			t.Errorf("udp %q: answer %q, want %q", tc.msg, got, tc.want)
		}
	}
	c := dial(t, "tcp", a.TCP)
	big := string(bytes.Repeat([]byte("x"), 2000))
	for _, tc := range []struct{ msg, want string }{{"a", "a"}, {big, big}, {"slow", "late slow"}, {"b", "b"}} {
		if got := string(dnstest.ExchangeTCP(t, c, []byte(tc.msg))); got != tc.want {
			t.Errorf("tcp %.10q: answer %.10q, want %.10q", tc.msg, got, tc.want)
		}
	}
}

// TestNoAnswerClosesTCP: a message the handler does not answer ends its
// TCP connection, and the server keeps serving.
func TestNoAnswerClosesTCP(t *testing.T) {
	a := serve(t, dnsserver.Config{Handle: func(_ context.Context, msg []byte, _ bool) ([]byte, dnsserver.Slow) {
		if string(msg) == "garbage" {
			return nil, nil
		}
		return bytes.Clone(msg), nil
	}})
	c := dial(t, "tcp", a.TCP)
	dnstest.ExchangeTCP(t, c, []byte("ok"))
	dnsserver.WriteFramed(c, []byte("garbage"))
	wantClosed(t, c)
	if got := string(a.Exchange(t, "tcp", []byte("ok"))); got != "ok" {
		t.Errorf("answer after a closed connection: %q", got)
	}
}

// TestMaxTCPConns: past the bound new connections are closed at once, and
// accepted again once one ends.
func TestMaxTCPConns(t *testing.T) {
	a := serve(t, dnsserver.Config{Handle: echo, MaxTCPConns: 2})
	c1, c2 := dial(t, "tcp", a.TCP), dial(t, "tcp", a.TCP)
	// Both are tracked once each has been answered.
	dnstest.ExchangeTCP(t, c1, []byte("1"))
	dnstest.ExchangeTCP(t, c2, []byte("2"))
	wantClosed(t, dial(t, "tcp", a.TCP))
	c1.Close()
	deadline := time.Now().Add(dnstest.Timeout)
	for {
		c := dial(t, "tcp", a.TCP)
		dnsserver.WriteFramed(c, []byte("3"))
		if resp, err := dnsserver.ReadFramed(c); err == nil {
			if string(resp) != "3" {
				t.Errorf("answer %q, want 3", resp)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted after one of the two ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMaxUDPSlow: past the bound slow UDP messages are dropped and counted
// while fast ones are still answered; ending ctx ends the slow ones, and
// Serve waits for them (serve's leak check).
func TestMaxUDPSlow(t *testing.T) {
	var started, dropped atomic.Int64
	a := serve(t, dnsserver.Config{
		MaxUDPSlow: 2,
		Dropped:    func() { dropped.Add(1) },
		Handle: func(_ context.Context, msg []byte, _ bool) ([]byte, dnsserver.Slow) {
			if string(msg) != "slow" {
				return bytes.Clone(msg), nil
			}
			return nil, func(ctx context.Context, _ []byte) []byte {
				started.Add(1)
				<-ctx.Done() // until Serve stops
				return nil
			}
		},
	})
	c := dial(t, "udp", a.UDP)
	for range 2 {
		c.Write([]byte("slow"))
	}
	deadline := time.Now().Add(dnstest.Timeout)
	for started.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c.Write([]byte("slow"))
	// One socket reads in order: the third slow message was handled
	// before "fast" is answered.
	if got := string(a.Exchange(t, "udp", []byte("fast"))); got != "fast" {
		t.Errorf("answer %q, want fast", got)
	}
	if started.Load() != 2 || dropped.Load() != 1 {
		t.Errorf("%d slow calls started and %d dropped, want 2 and 1", started.Load(), dropped.Load())
	}
}

// TestServeStops: ending ctx closes idle and half-read TCP connections, and
// Serve returns with every goroutine gone, while the clients still hold
// their ends open.
func TestServeStops(t *testing.T) {
	leak.Check(t)
	pc, l := dnstest.Listen(t)
	a := dnstest.Addrs{UDP: pc.LocalAddr().String(), TCP: l.Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- dnsserver.Serve(ctx, dnsserver.Config{UDP: []net.PacketConn{pc}, TCP: []net.Listener{l}, Handle: echo})
	}()
	idle := dial(t, "tcp", a.TCP)
	half := dial(t, "tcp", a.TCP)
	half.Write([]byte{0, 40, 1, 2}) // announces 40 bytes, sends 2
	// Both connections are being served once a query on a third one is.
	a.Exchange(t, "tcp", []byte("q"))
	a.Exchange(t, "udp", []byte("q"))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after ctx ended", err)
		}
	case <-time.After(dnstest.Timeout):
		t.Fatal("Serve did not return after ctx ended")
	}
	wantClosed(t, idle)
	wantClosed(t, half)
}

// TestServeSocketFails: a socket closed under Serve stops it with an error,
// and the other socket with it.
func TestServeSocketFails(t *testing.T) {
	leak.Check(t)
	pc, l := dnstest.Listen(t)
	done := make(chan error, 1)
	go func() {
		done <- dnsserver.Serve(context.Background(), dnsserver.Config{UDP: []net.PacketConn{pc}, TCP: []net.Listener{l}, Handle: echo})
	}()
	l.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Serve = nil after its listener closed, want an error")
		}
	case <-time.After(dnstest.Timeout):
		t.Fatal("Serve still running after its listener closed")
	}
	if _, err := pc.WriteTo([]byte("x"), pc.LocalAddr()); err == nil {
		t.Error("the packet conn is still open after Serve returned")
	}
}

func TestServeNeedsASocketAndAHandler(t *testing.T) {
	if err := dnsserver.Serve(context.Background(), dnsserver.Config{Handle: echo}); err == nil {
		t.Error("Serve with nothing to serve succeeded")
	}
	pc, l := dnstest.Listen(t)
	defer pc.Close()
	defer l.Close()
	if err := dnsserver.Serve(context.Background(), dnsserver.Config{UDP: []net.PacketConn{pc}}); err == nil {
		t.Error("Serve without a handler succeeded")
	}
}

func TestFraming(t *testing.T) {
	var buf bytes.Buffer
	for _, msg := range [][]byte{{}, []byte("abc"), bytes.Repeat([]byte{7}, 65535)} {
		if err := dnsserver.WriteFramed(&buf, msg); err != nil {
			t.Fatalf("WriteFramed(%d bytes): %v", len(msg), err)
		}
		if p := buf.Bytes()[:2]; int(p[0])<<8|int(p[1]) != len(msg) {
			t.Errorf("prefix %x for %d bytes", p, len(msg))
		}
		got, err := dnsserver.ReadFramed(&buf)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("ReadFramed = %d bytes, %v; want the %d written", len(got), err, len(msg))
		}
	}
	if err := dnsserver.WriteFramed(&buf, make([]byte, 65536)); err == nil {
		t.Error("WriteFramed of 65536 bytes succeeded")
	}
	if _, err := dnsserver.ReadFramed(bytes.NewReader([]byte{0, 5, 1, 2})); err == nil {
		t.Error("ReadFramed of a cut-short message succeeded")
	}
}
