package tunnel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

func TestFullPoolWaitsForAStream(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	tunnel, cl := startServer(t, &Server{MaxConcurrentStreams: 1})
	d := &Dialer{Source: clientPod, MaxConnsPerTunnel: 1}
	t.Cleanup(func() { d.Close() })
	first := dial(t, d, tunnel, a.addr)

	// The only stream is taken: a Dial waits, and gives up with its ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d.Dial(ctx, tunnel, a.addr.String(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial on a full pool: %v, want deadline exceeded", err)
	}
	// Once the first tunnel ends, a waiting Dial gets its stream.
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := d.Dial(ctx, tunnel, a.addr.String(), nil)
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	first.CloseWrite()
	io.Copy(io.Discard, first)
	if err := <-got; err != nil {
		t.Errorf("Dial after the stream freed: %v", err)
	}
	if n := cl.accepted.Load(); n != 1 {
		t.Errorf("used %d connections, want 1", n)
	}
}

func TestTLS(t *testing.T) {
	leak.Check(t)
	cert, pool := selfSigned(t, serverPod)
	a := startApp(t, echo)
	var peerTLS *tls.ConnectionState
	tunnel, _ := startServer(t, &Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Authorize: func(target netip.AddrPort, p Peer) error {
			peerTLS = p.TLS
			return ownAddress(target, p)
		},
	})
	d := &Dialer{Source: clientPod, TLSConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(func() { d.Close() })
	c := dial(t, d, tunnel, a.addr)
	c.Write([]byte("secret"))
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "secret" {
		t.Fatalf("read %q, %v", got, err)
	}
	if peerTLS == nil || peerTLS.NegotiatedProtocol != "h2" {
		t.Errorf("Authorize saw TLS %+v, want h2 over TLS", peerTLS)
	}
}

func selfSigned(t *testing.T, ip netip.Addr) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tunnel test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{ip.AsSlice()},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// A burst to a new peer must learn the server's stream limit before
// piling onto the first connection, or the tunnels beyond the limit would
// queue behind long-lived ones instead of opening another connection.
func TestBurstRespectsServerStreamLimit(t *testing.T) {
	leak.Check(t)
	a := startApp(t, echo)
	tunnel, cl := startServer(t, &Server{MaxConcurrentStreams: 2})
	d := newDialer(t)
	const n = 6
	conns := make(chan *Conn, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := d.Dial(ctx, tunnel, a.addr.String(), nil)
			if err != nil {
				errs <- err
				return
			}
			conns <- c
		}()
	}
	for range n {
		select {
		case c := <-conns:
			defer c.Close()
		case err := <-errs:
			t.Error(err)
		}
	}
	if got := cl.accepted.Load(); got != 3 {
		t.Errorf("%d open tunnels at 2 streams per connection used %d connections, want 3", n, got)
	}
}

func TestClientCloseClosesApp(t *testing.T) {
	leak.Check(t)
	ended := make(chan error, 1)
	a := startApp(t, func(c *net.TCPConn) {
		_, err := io.Copy(io.Discard, c)
		ended <- err
	})
	tunnel, _ := startServer(t, &Server{})
	c := dial(t, newDialer(t), tunnel, a.addr)
	c.Write([]byte("partial"))
	c.Close()
	select {
	case <-ended: // EOF or reset: either way the app's connection ended
	case <-time.After(5 * time.Second):
		t.Fatal("the app's connection outlived the tunnel")
	}
	if _, err := c.Write([]byte("more")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want %v", err, net.ErrClosed)
	}
}

func TestWriteDeadline(t *testing.T) {
	leak.Check(t)
	// An app that never reads: the windows fill and Write blocks.
	stall := make(chan struct{})
	a := startApp(t, func(*net.TCPConn) { <-stall })
	defer close(stall)
	tunnel, _ := startServer(t, &Server{})
	c := dial(t, newDialer(t), tunnel, a.addr)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 1<<20)
	var err error
	for err == nil {
		_, err = c.Write(buf)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write: %v, want %v", err, os.ErrDeadlineExceeded)
	}
}
