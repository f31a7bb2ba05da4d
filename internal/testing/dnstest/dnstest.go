package dnstest

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/dnsserver"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// Timeout bounds each exchange and how long a server may take to stop:
// generous, since a loaded CI machine may need seconds.
const Timeout = 5 * time.Second

// Addrs are where a server under test listens.
type Addrs struct {
	UDP, TCP string
}

// Listen returns a UDP socket and a TCP listener on 127.0.0.1 for the
// server under test, which owns and closes them.
func Listen(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	return pc, l
}

// Serve runs serve on a fresh Listen's sockets until the test ends, then
// checks that serve returns nil within Timeout of its ctx ending and leaves
// no goroutine behind. It calls leak.Check first, so call it before
// starting anything the check should cover.
func Serve(t testing.TB, serve func(ctx context.Context, pc net.PacketConn, l net.Listener) error) Addrs {
	t.Helper()
	leak.Check(t)
	pc, l := Listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, pc, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v, want nil after ctx ended", err)
			}
		case <-time.After(Timeout):
			t.Errorf("Serve did not return %v after ctx ended", Timeout)
		}
	})
	return Addrs{UDP: pc.LocalAddr().String(), TCP: l.Addr().String()}
}

// Resolver sends every query to a, over TCP only when tcpOnly (Go's
// resolver frames by connection type: a TCP conn gets RFC 7766 framing).
func (a Addrs) Resolver(tcpOnly bool) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			if tcpOnly || strings.HasPrefix(network, "tcp") {
				return d.DialContext(ctx, "tcp", a.TCP)
			}
			return d.DialContext(ctx, "udp", a.UDP)
		},
	}
}

// Exchange sends msg to a over network ("udp" or "tcp") on a connection of
// its own and returns the answer.
func (a Addrs) Exchange(t testing.TB, network string, msg []byte) []byte {
	t.Helper()
	addr := a.UDP
	if network == "tcp" {
		addr = a.TCP
	}
	c, err := net.DialTimeout(network, addr, Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(Timeout))
	if network == "tcp" {
		return ExchangeTCP(t, c, msg)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// ExchangeTCP sends msg on c, a TCP connection to a DNS server, and returns
// the next answer on it.
func ExchangeTCP(t testing.TB, c net.Conn, msg []byte) []byte {
	t.Helper()
	if err := dnsserver.WriteFramed(c, msg); err != nil {
		t.Fatal(err)
	}
	resp, err := dnsserver.ReadFramed(c)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
