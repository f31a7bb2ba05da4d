package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

var (
	idClient = certtest.SPIFFE("default", "sleep")
	idServer = certtest.SPIFFE("default", "payment")
)

func only(id string) func(string) bool { return func(s string) bool { return s == id } }

// mtlsPair is a tunnel server and a client identity issued by one CA.
func mtlsPair(t testing.TB, ca *certtest.CA) (server, client certs.Source) {
	return certs.NewStatic(ca.Leaf(t, idServer, certtest.LeafOptions{}), ca.Pool()),
		certs.NewStatic(ca.Leaf(t, idClient, certtest.LeafOptions{}), ca.Pool())
}

// HTTP/1.1 CONNECT inside mTLS: the bytes reach Handle, which learns the
// client's verified SPIFFE ID; the wire between the proxies carries no
// plaintext; one handshake each side.
func TestHTTP1ConnectOverMTLS(t *testing.T) {
	leak.Check(t)
	ca := certtest.NewCA(t)
	srvID, cliID := mtlsPair(t, ca)
	peers := make(chan Peer, 1)
	s := &Server{TLSConfig: certs.ServerConfig(srvID, nil), Handle: func(target netip.AddrPort, peer Peer, c net.Conn) {
		peers <- peer
		b := make([]byte, 6)
		io.ReadFull(c, b)
		c.Write(b)
	}}
	tunnel := serveConns(t, s)
	// Record what crosses the wire between the two proxies.
	wire := &recorder{}
	d := &Dialer{Source: clientPod}
	t.Cleanup(func() { d.Close() })
	tunnelVia := wire.proxy(t, tunnel)

	c, err := d.DialHTTP1TLS(context.Background(), tunnelVia, netip.AddrPortFrom(serverPod, 9080).String(), nil, certs.ClientConfig(cliID, only(idServer)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "secret")
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "secret" {
		t.Fatalf("echo %q, %v", got, err)
	}
	peer := <-peers
	if id := certs.PeerID(peer.TLS); id != idClient {
		t.Errorf("the server saw peer %q, want %q", id, idClient)
	}
	if peer.TLS.Version != tls.VersionTLS13 || peer.TLS.CurveID != tls.X25519MLKEM768 {
		t.Errorf("TLS version %x, curve %v; want TLS 1.3 with X25519MLKEM768", peer.TLS.Version, peer.TLS.CurveID)
	}
	c.Close()
	for _, plain := range []string{"CONNECT", "secret"} {
		if strings.Contains(wire.String(), plain) {
			t.Errorf("%q crossed the wire in plaintext", plain)
		}
	}
	if st := d.Stats(); st.Handshakes != 1 {
		t.Errorf("client handshakes %+v, want 1", st)
	}
	if st := s.Stats(); st.Handshakes != 1 {
		t.Errorf("server handshakes %+v, want 1", st)
	}
}

// HBONE (HTTP/2 CONNECT) inside mTLS on the same ServeConn port: the
// stream reaches DialPeer with the client's verified identity.
func TestHBONEOverMTLS(t *testing.T) {
	leak.Check(t)
	ca := certtest.NewCA(t)
	srvID, cliID := mtlsPair(t, ca)
	a := startApp(t, echo)
	peers := make(chan Peer, 1)
	s := &Server{TLSConfig: certs.ServerConfig(srvID, nil), DialPeer: func(ctx context.Context, target netip.AddrPort, peer Peer) (net.Conn, error) {
		peers <- peer
		return dialFromTarget(ctx, target)
	}}
	tunnel := serveConns(t, s)
	d := &Dialer{Source: clientPod, TLSConfig: certs.ClientConfig(cliID, only(idServer))}
	t.Cleanup(func() { d.Close() })
	c := dial(t, d, tunnel, a.addr)
	io.WriteString(c, "over h2")
	c.CloseWrite()
	if b, _ := io.ReadAll(c); string(b) != "over h2" {
		t.Errorf("echo %q", b)
	}
	peer := <-peers
	if id := certs.PeerID(peer.TLS); id != idClient || peer.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("DialPeer saw %q over %q, want %q over h2", id, peer.TLS.NegotiatedProtocol, idClient)
	}
	if d.Stats().Handshakes != 1 || s.Stats().Handshakes != 1 {
		t.Errorf("handshakes: client %+v, server %+v; want 1 each", d.Stats(), s.Stats())
	}
}

// Refusals: plaintext on a TLS tunnel port, a server that is not the
// identity the client expects, a client the server's roots do not vouch
// for, and expired or not-yet-valid certificates. Each fails the dial and
// is counted by the side that refused.
func TestMTLSRefusals(t *testing.T) {
	leak.Check(t)
	ca := certtest.NewCA(t)
	other := certtest.NewCA(t)
	srvID, cliID := mtlsPair(t, ca)
	target := netip.AddrPortFrom(serverPod, 9080).String()
	handled := make(chan struct{}, 10)
	newServer := func(id certs.Source) (*Server, netip.AddrPort) {
		s := &Server{TLSConfig: certs.ServerConfig(id, nil), Handle: func(netip.AddrPort, Peer, net.Conn) { handled <- struct{}{} }}
		return s, serveConns(t, s)
	}
	s, tunnel := newServer(srvID)
	d := &Dialer{Source: clientPod}
	t.Cleanup(func() { d.Close() })

	if _, err := d.DialHTTP1(context.Background(), tunnel, target, nil); err == nil {
		t.Error("a plaintext CONNECT to a TLS tunnel port was answered")
	}
	waitFor(t, func() bool { return s.Stats().HandshakeFailures == 1 }, "the server counts the plaintext connection it refused")

	_, err := d.DialHTTP1TLS(context.Background(), tunnel, target, nil, certs.ClientConfig(cliID, only(certtest.SPIFFE("default", "reviews"))))
	if err == nil || !strings.Contains(err.Error(), "not expected") {
		t.Errorf("a server of another identity: %v, want refused as not expected", err)
	}
	if d.Stats().HandshakeFailures != 1 {
		t.Errorf("client failures %+v, want 1", d.Stats())
	}

	past := certtest.LeafOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}
	future := certtest.LeafOptions{NotBefore: time.Now().Add(time.Hour)}
	for _, tc := range []struct {
		name     string
		cli, srv certs.Source
	}{
		{"client from another CA", certs.NewStatic(other.Leaf(t, idClient, certtest.LeafOptions{}), ca.Pool()), nil},
		{"expired client", certs.NewStatic(ca.Leaf(t, idClient, past), ca.Pool()), nil},
		{"client not yet valid", certs.NewStatic(ca.Leaf(t, idClient, future), ca.Pool()), nil},
		{"client without certificate", &staticRootsOnly{ca.Pool()}, nil},
		{"server from another CA", cliID, certs.NewStatic(other.Leaf(t, idServer, certtest.LeafOptions{}), ca.Pool())},
		{"expired server", cliID, certs.NewStatic(ca.Leaf(t, idServer, past), ca.Pool())},
		{"server not yet valid", cliID, certs.NewStatic(ca.Leaf(t, idServer, future), ca.Pool())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tun := tunnel
			if tc.srv != nil {
				_, tun = newServer(tc.srv)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if c, err := d.DialHTTP1TLS(ctx, tun, target, nil, certs.ClientConfig(tc.cli, nil)); err == nil {
				c.Close()
				t.Fatal("tunnel opened")
			}
		})
	}
	select {
	case <-handled:
		t.Error("a refused connection reached Handle")
	default:
	}
}

// staticRootsOnly trusts the roots but has no certificate of its own.
type staticRootsOnly struct{ roots *x509.CertPool }

func (s *staticRootsOnly) Certificate() (*tls.Certificate, error) { return nil, certs.ErrNoCertificate }
func (s *staticRootsOnly) Roots() *x509.CertPool                  { return s.roots }

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder is a TCP relay in front of a tunnel port that keeps every
// byte the client sends, to check what an observer of the wire sees.
type recorder struct {
	buf strings.Builder
	mu  chan struct{}
}

func (r *recorder) String() string {
	r.mu <- struct{}{}
	defer func() { <-r.mu }()
	return r.buf.String()
}

func (r *recorder) proxy(t testing.TB, to netip.AddrPort) netip.AddrPort {
	r.mu = make(chan struct{}, 1)
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverPod, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to.String())
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(c, up); c.Close() }()
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						r.mu <- struct{}{}
						r.buf.Write(buf[:n])
						<-r.mu
						up.Write(buf[:n])
					}
					if err != nil {
						up.Close()
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return addrPort(ln.Addr())
}

// BenchmarkTunnelHandshake opens a new tunnel connection per iteration
// (TCP connect, CONNECT, 200, close): plaintext against mTLS in the same
// run. It reports handshakes per second on one client goroutine and the
// process CPU (both proxies, user+system) per handshake; pooled upstream
// connections pay this once per connection, not per request.
func BenchmarkTunnelHandshake(b *testing.B) {
	ca := certtest.NewCA(b)
	srvID, cliID := mtlsPair(b, ca)
	for _, mode := range []string{"plaintext", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			s := &Server{Handle: func(_ netip.AddrPort, _ Peer, c net.Conn) { io.Copy(io.Discard, c) }}
			var cfg *tls.Config
			if mode == "mtls" {
				s.TLSConfig = certs.ServerConfig(srvID, nil)
				cfg = certs.ClientConfig(cliID, only(idServer))
			}
			tunnel := serveConns(b, s)
			d := &Dialer{Source: clientPod}
			b.Cleanup(func() { d.Close() })
			target := netip.AddrPortFrom(serverPod, 9080).String()
			ctx := context.Background()
			cpu0 := cpuTime()
			start := time.Now()
			for b.Loop() {
				c, err := d.DialHTTP1TLS(ctx, tunnel, target, nil, cfg)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "conns/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-µs/conn")
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
