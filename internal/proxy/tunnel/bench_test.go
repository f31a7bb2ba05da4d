package tunnel

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/testing/certtest"
)

// BenchmarkRoundTrip is one 1 KiB request and its 1 KiB echo through an
// open tunnel: the latency the tunnel adds to a request/response protocol.
// http1 is what sidecars dial (one HTTP/1.1 CONNECT tunnel per pooled
// connection), http1-mtls the same inside mutual TLS: on this machine the
// two are within noise of each other (about 40 µs), the handshake being
// the cost mTLS adds (BenchmarkTunnelHandshake).
func BenchmarkRoundTrip(b *testing.B) {
	for _, via := range []string{"direct", "tunnel", "http1", "http1-mtls"} {
		b.Run(via, func(b *testing.B) {
			c := benchConn(b, via, echo)
			msg := make([]byte, 1024)
			got := make([]byte, len(msg))
			b.SetBytes(int64(2 * len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkThroughput streams 1 MiB per iteration one way through a
// tunnel into an app that discards it.
func BenchmarkThroughput(b *testing.B) {
	for _, via := range []string{"direct", "tunnel"} {
		b.Run(via, func(b *testing.B) {
			c := benchConn(b, via, func(c *net.TCPConn) { copyBuffer(io.Discard, c) })
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDial opens and closes a tunnel on a warm connection: the cost
// of a CONNECT, the server's authorization and its dial to the app.
func BenchmarkDial(b *testing.B) {
	a := startApp(b, echo)
	tunnel, _ := startServer(b, &Server{})
	d := newDialer(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, err := d.Dial(ctx, tunnel, a.addr.String(), nil)
		if err != nil {
			b.Fatal(err)
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()
	}
}

func benchConn(b *testing.B, via string, handle func(*net.TCPConn)) net.Conn {
	a := startApp(b, handle)
	if via == "direct" {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientPod, 0)), Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", a.addr.String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	if via == "http1" || via == "http1-mtls" {
		// What sidecars dial: one HTTP/1.1 CONNECT tunnel per connection,
		// in plaintext or inside mTLS.
		s := &Server{}
		var cfg *tls.Config
		if via == "http1-mtls" {
			ca := certtest.NewCA(b)
			srv, cli := mtlsPair(b, ca)
			s.TLSConfig = certs.ServerConfig(srv, nil)
			cfg = certs.ClientConfig(cli, only(idServer))
		}
		tunnel := serveConns(b, s)
		c, err := newDialer(b).DialHTTP1TLS(context.Background(), tunnel, a.addr.String(), nil, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	tunnel, _ := startServer(b, &Server{})
	return dial(b, newDialer(b), tunnel, a.addr)
}
