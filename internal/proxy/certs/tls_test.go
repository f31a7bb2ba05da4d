package certs_test

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/testing/certtest"
)

// handshake runs a real TLS 1.3 handshake over loopback between a server
// holding srv and a client holding cli, and returns the server's view of
// the connection and the client's and the server's errors.
func handshake(t *testing.T, srv, cli certs.Source, allowServer, allowClient func(string) bool) (state tls.ConnectionState, cliErr, srvErr error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := lis.Accept()
		if err != nil {
			srvErr = err
			return
		}
		defer c.Close()
		tc := tls.Server(c, certs.ServerConfig(srv, allowClient))
		srvErr = tc.Handshake()
		state = tc.ConnectionState()
		if srvErr == nil {
			_, _ = tc.Write([]byte("ok"))
		}
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, certs.ClientConfig(cli, allowServer))
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	cliErr = tc.Handshake()
	if cliErr == nil {
		// TLS 1.3 clients finish before the server has checked the
		// client's certificate: a refusal shows on the first read.
		_, cliErr = io.ReadAll(io.LimitReader(tc, 2))
	}
	<-done
	return state, cliErr, srvErr
}

func TestMutualTLS(t *testing.T) {
	ca := certtest.NewCA(t)
	other := certtest.NewCA(t)
	payment := certtest.SPIFFE("default", "payment")
	checkout := certtest.SPIFFE("default", "checkout")
	only := func(id string) func(string) bool { return func(s string) bool { return s == id } }

	t.Run("accepted", func(t *testing.T) {
		srv := certs.NewStatic(ca.Leaf(t, payment, certtest.LeafOptions{}), ca.Pool())
		cli := certs.NewStatic(ca.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool())
		st, cliErr, srvErr := handshake(t, srv, cli, only(payment), only(checkout))
		if cliErr != nil || srvErr != nil {
			t.Fatalf("client %v, server %v", cliErr, srvErr)
		}
		if st.Version != tls.VersionTLS13 {
			t.Errorf("version %x, want TLS 1.3", st.Version)
		}
		if st.CurveID != tls.X25519MLKEM768 {
			t.Errorf("key exchange %v, want X25519MLKEM768", st.CurveID)
		}
		if got := certs.PeerID(&st); got != checkout {
			t.Errorf("server sees peer %q, want %q", got, checkout)
		}
	})
	t.Run("intermediate chain", func(t *testing.T) {
		inter := ca.Intermediate(t)
		srv := certs.NewStatic(inter.Leaf(t, payment, certtest.LeafOptions{}), ca.Pool())
		cli := certs.NewStatic(inter.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool())
		if _, cliErr, srvErr := handshake(t, srv, cli, only(payment), nil); cliErr != nil || srvErr != nil {
			t.Fatalf("client %v, server %v", cliErr, srvErr)
		}
	})
	refused := []struct {
		name     string
		srv, cli certs.Source
		allowSrv func(string) bool
		want     string
	}{
		{"server not the expected identity", certs.NewStatic(ca.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool()), certs.NewStatic(ca.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool()), only(payment), "not expected"},
		{"client from another CA", certs.NewStatic(ca.Leaf(t, payment, certtest.LeafOptions{}), ca.Pool()), certs.NewStatic(other.Leaf(t, checkout, certtest.LeafOptions{}), other.Pool().Clone()), nil, ""},
		{"server from another CA", certs.NewStatic(other.Leaf(t, payment, certtest.LeafOptions{}), ca.Pool()), certs.NewStatic(ca.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool()), nil, "unknown authority"},
		{"expired server", certs.NewStatic(ca.Leaf(t, payment, certtest.LeafOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), ca.Pool()), certs.NewStatic(ca.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool()), nil, "expired"},
		{"not yet valid server", certs.NewStatic(ca.Leaf(t, payment, certtest.LeafOptions{NotBefore: time.Now().Add(time.Hour)}), ca.Pool()), certs.NewStatic(ca.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool()), nil, "not yet valid"},
		{"server without SPIFFE ID", certs.NewStatic(ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"payment"}}), ca.Pool()), certs.NewStatic(ca.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool()), nil, "no SPIFFE ID"},
		{"server with two SPIFFE IDs", certs.NewStatic(ca.Leaf(t, payment, certtest.LeafOptions{URIs: []string{checkout}}), ca.Pool()), certs.NewStatic(ca.Leaf(t, checkout, certtest.LeafOptions{}), ca.Pool()), nil, "no SPIFFE ID"},
		{"client without certificate", certs.NewStatic(ca.Leaf(t, payment, certtest.LeafOptions{}), ca.Pool()), &certs.Static{}, nil, ""},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, cliErr, srvErr := handshake(t, tc.srv, tc.cli, tc.allowSrv, nil)
			if cliErr == nil || srvErr == nil {
				t.Fatalf("handshake accepted: client %v, server %v", cliErr, srvErr)
			}
			if tc.want != "" && !strings.Contains(cliErr.Error()+srvErr.Error(), tc.want) {
				t.Errorf("errors %q / %q do not say %q", cliErr, srvErr, tc.want)
			}
		})
	}
}
