package xdsclient

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

var sleepSVID = certtest.SPIFFE("default", "sleep")

// tlsCP serves the control plane's xDS over TLS as its secure port does:
// the server certificate from ca for localhost, a client certificate
// required and verified against ca. Each verified client's SPIFFE ID goes
// to the returned channel.
func tlsCP(t *testing.T, ca *certtest.CA) (addr string, clients <-chan string) {
	t.Helper()
	ids := make(chan string, 16)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"localhost"}})},
		NextProtos:   []string{"h2"},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			select {
			case ids <- certs.PeerID(&cs):
			default:
			}
			return nil
		},
	}
	lis := listen(t, "tcp", "127.0.0.1:0")
	startCP(t, meshDir(t), tls.NewListener(lis, cfg))
	_, port, _ := strings.Cut(lis.Addr().String(), ":")
	// By name, so the server name checked is "localhost".
	return "localhost:" + port, ids
}

// Given a TLS config, the client dials the control plane over mTLS: its
// certificate reaches the server, the server's is verified against the
// mesh root, and config flows as over h2c.
func TestMTLSToTheControlPlane(t *testing.T) {
	leak.Check(t)
	ca := certtest.NewCA(t)
	addr, clients := tlsCP(t, ca)
	id := certs.NewStatic(ca.Leaf(t, sleepSVID, certtest.LeafOptions{}), ca.Pool())
	rec := &recorder{ch: make(chan Update[any], 64)}
	runClient(t, Config{Server: addr, TLS: certs.ControlPlaneConfig(id)}, testSubs(testDecode, rec.apply)...)
	init := rec.initial(t)
	if _, ok := init[xdsresource.ClusterType].Resources[reviewsCluster]; !ok {
		t.Errorf("no %s over mTLS: %v", reviewsCluster, sortedKeys(init[xdsresource.ClusterType].Resources))
	}
	select {
	case got := <-clients:
		if got != sleepSVID {
			t.Errorf("the server saw client %q, want %q", got, sleepSVID)
		}
	default:
		t.Error("the server verified no client certificate")
	}
}

// A server whose certificate the root does not vouch for gets no request:
// the stream fails with the reason.
func TestMTLSRefusesAForeignControlPlane(t *testing.T) {
	leak.Check(t)
	addr, clients := tlsCP(t, certtest.NewCA(t))
	ours := certtest.NewCA(t)
	id := certs.NewStatic(ours.Leaf(t, sleepSVID, certtest.LeafOptions{}), ours.Pool())
	c, err := newClient(Config{Server: addr, TLS: certs.ControlPlaneConfig(id), Node: testNode, Log: slog.New(slog.DiscardHandler)}, testSubs(testDecode, func(Update[any]) error { return nil })...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	healthy, err := c.session(ctx)
	if healthy || err == nil || !strings.Contains(err.Error(), "XDS_ROOT_CA") || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("session against a foreign control plane: healthy %v, %v", healthy, err)
	}
	select {
	case got := <-clients:
		t.Errorf("the client showed its certificate (%s) to a server it does not trust", got)
	default:
	}
}
