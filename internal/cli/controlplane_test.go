package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// `trellis controlplane` keeps its root in --ca-dir and serves TLS on
// --secure-xds-address with a certificate that root vouches for.
func TestControlPlaneSecureFlags(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	secure := freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Execute(ctx, []string{"controlplane", "--config", t.TempDir(), "--xds-address", freeLoopbackAddr(t),
			"--secure-xds-address", secure, "--ca-dir", caDir, "--cert-ttl", "1h", "--log-level", "error", "--monitoring-addr", ""}, &bytes.Buffer{}, &stderr)
	}()
	var conn *tls.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		root, err := os.ReadFile(filepath.Join(caDir, "ca-cert.pem"))
		if err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(root)
			conn, err = tls.Dial("tcp", secure, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2"}})
			if err == nil {
				break
			}
		}
		select {
		case code := <-done:
			t.Fatalf("controlplane exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS on %s verified by %s within 10s: %v", secure, caDir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got > time.Hour+time.Minute {
		t.Errorf("serving certificate lives %s, want --cert-ttl 1h", got)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

func TestControlPlaneBadPluginCA(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	code := Execute(context.Background(), []string{"controlplane", "--config", t.TempDir(), "--xds-address", freeLoopbackAddr(t),
		"--secure-xds-address", freeLoopbackAddr(t), "--plugin-ca-dir", dir}, &bytes.Buffer{}, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), filepath.Join(dir, "ca-cert.pem")) {
		t.Fatalf("exit %d, stderr %q: want a failure naming ca-cert.pem", code, stderr.String())
	}
}
