package tunnel

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/netio"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// mTLS tunnel connections run crypto/tls on raw I/O at both ends
// (netio.ForTLS), so the hot path's RawIO (Serve on the server's inbound
// side, WriteAwait on the client's upstream side) works through them:
// NewRawIO gives one for the dialed tunnel and for the one Handle gets,
// and bytes flow through it both ways, the peer still verified.
func TestHTTP1MTLSRawIO(t *testing.T) {
	if !rawIOAvailable(t) {
		t.Skip("no raw I/O here (not Linux, or the race detector)")
	}
	leak.Check(t)
	ca := certtest.NewCA(t)
	srvID, cliID := mtlsPair(t, ca)
	type handled struct {
		raw  bool
		peer string
	}
	got := make(chan handled, 1)
	s := &Server{TLSConfig: certs.ServerConfig(srvID, nil), Handle: func(target netip.AddrPort, peer Peer, c net.Conn) {
		r := netio.NewRawIO(c)
		got <- handled{raw: r != nil, peer: certs.PeerID(peer.TLS)}
		if r == nil {
			return
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(r, b); err != nil {
			return
		}
		r.Write(append(b, "-ok"...))
	}}
	tunnel := serveConns(t, s)
	d := &Dialer{Source: clientPod}
	t.Cleanup(func() { d.Close() })
	c, err := d.DialHTTP1TLS(context.Background(), tunnel, netip.AddrPortFrom(serverPod, 9080).String(), nil, certs.ClientConfig(cliID, only(idServer)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := netio.NewRawIO(c)
	if r == nil {
		t.Fatal("no raw I/O for the dialed mTLS tunnel")
	}
	if _, err := r.WriteAwait([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	h := <-got
	if !h.raw {
		t.Fatal("no raw I/O for the mTLS tunnel Handle got")
	}
	if h.peer != idClient {
		t.Errorf("Handle saw peer %q, want %q", h.peer, idClient)
	}
	b := make([]byte, 7)
	if _, err := io.ReadFull(r, b); err != nil || string(b) != "ping-ok" {
		t.Fatalf("answer %q, %v", b, err)
	}
}

// rawIOAvailable says whether NewRawIO gives raw I/O for TCP here.
func rawIOAvailable(t *testing.T) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return netio.NewRawIO(c) != nil
}
