package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// runProxy starts the binary with args; its output goes to logs. It is
// stopped (SIGTERM, then killed) when the test ends, and must exit 0.
func runProxy(t *testing.T, args ...string) (logs *lockedBuffer, exited chan error, cmd *exec.Cmd) {
	t.Helper()
	logs = &lockedBuffer{}
	cmd = exec.Command(buildProxy(t), args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("trellis-proxy's log:\n%s", logs.String())
		}
		cmd.Process.Kill()
		<-ch
	})
	return logs, ch, cmd
}

// secureMesh is a control plane serving its secure port (xDS and the CA
// over TLS) on loopback, with a root file and a credential for
// default/reviews.
func secureMesh(t *testing.T) (m *meshtest.Mesh, secureAddr, rootFile, credFile string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m = meshtest.New(t, meshYAML, meshtest.WithControlPlane(func(o *controlplane.Options) { o.SecureXDSListener = lis }))
	cp := m.ControlPlane()
	dir := t.TempDir()
	rootFile = filepath.Join(dir, "root-cert.pem")
	if err := os.WriteFile(rootFile, cp.RootCertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := cp.IssueCredential("default", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	credFile = filepath.Join(dir, "credential")
	if err := os.WriteFile(credFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return m, cp.SecureAddr().String(), rootFile, credFile
}

// With --root-cert the binary gets its certificate from the control
// plane's CA with its credential, takes its config over mTLS from the
// secure port, and shows its identity on /certs, never its key.
func TestProxyGetsItsCertificateAndXDSOverMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	_, addr, rootFile, credFile := secureMesh(t)
	logs, exited, cmd := runProxy(t, "--xds", addr, "--root-cert", rootFile, "--credential-file", credFile,
		"--pod-ip", "127.78.2.2", "--pod-name", "reviews-v1", "--service-account", "reviews", "--labels", "app=reviews")
	waitHTTP(t, "http://127.78.2.2:15021/healthz/ready", http.StatusOK)

	resp, err := http.Get("http://127.78.2.2:15000/certs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var page struct {
		Certificates []struct {
			SPIFFEID string `json:"spiffe_id"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(body, &page); err != nil || len(page.Certificates) != 1 || page.Certificates[0].SPIFFEID != "spiffe://cluster.local/ns/default/sa/reviews" {
		t.Errorf("/certs: %s (%v)", body, err)
	}
	for _, path := range []string{"/config_dump", "/stats"} {
		resp, err := http.Get("http://127.78.2.2:15000" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "PRIVATE KEY") {
			t.Errorf("%s shows a private key", path)
		}
	}
	if !strings.Contains(logs.String(), "xds_mtls=true") {
		t.Errorf("the proxy did not say it speaks xDS over mTLS:\n%s", logs)
	}
	stop(t, cmd, exited)
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("the log shows a private key")
	}
}

// A credential the CA refuses: the proxy says why, does not start serving
// (no config without a certificate), keeps trying, and stops cleanly.
func TestProxyWithoutACertificateWaitsAndSaysWhy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	_, addr, rootFile, _ := secureMesh(t)
	bad := filepath.Join(t.TempDir(), "credential")
	if err := os.WriteFile(bad, []byte("not-a-credential"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs, exited, cmd := runProxy(t, "--xds", addr, "--root-cert", rootFile, "--credential-file", bad,
		"--pod-ip", "127.78.2.3", "--pod-name", "reviews-v2", "--service-account", "reviews")
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(logs.String(), "no workload certificate yet") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no repeated retry logged:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "Unauthenticated") || !strings.Contains(logs.String(), "credential") {
		t.Errorf("the log does not say the credential was refused:\n%s", logs)
	}
	if resp, err := http.Get("http://127.78.2.3:15021/healthz/ready"); err == nil {
		resp.Body.Close()
		t.Errorf("the proxy serves health (%d) without a certificate", resp.StatusCode)
	}
	stop(t, cmd, exited)
}

// stop sends SIGTERM and wants exit status 0 within 10s.
func stop(t *testing.T, cmd *exec.Cmd, exited chan error) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("trellis-proxy exited with %v after SIGTERM, want 0", err)
		}
		exited <- err // for runProxy's cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("trellis-proxy did not exit after SIGTERM")
	}
}

// A proxy that fails to start after getting its certificate exits with
// the error instead of hanging on its renewals.
func TestProxyWithACertificateExitsOnAStartFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	_, addr, rootFile, credFile := secureMesh(t)
	taken, err := net.Listen("tcp", "127.78.2.4:15001")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	logs, exited, _ := runProxy(t, "--xds", addr, "--root-cert", rootFile, "--credential-file", credFile,
		"--pod-ip", "127.78.2.4", "--pod-name", "reviews-v3", "--service-account", "reviews")
	select {
	case err := <-exited:
		if err == nil || !strings.Contains(logs.String(), "15001") {
			t.Errorf("exit %v, want a failure naming the port in use:\n%s", err, logs)
		}
		exited <- err
	case <-time.After(20 * time.Second):
		t.Fatalf("the proxy did not exit although it cannot listen:\n%s", logs)
	}
}
