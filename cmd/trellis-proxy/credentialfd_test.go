package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/identity"
)

// runProxyWithCredentialFD starts the binary with token written to a
// pipe it inherits as fd 3 and TRELLIS_CREDENTIAL_FD=3, as trellis up
// starts sidecars.
func runProxyWithCredentialFD(t *testing.T, token string, args ...string) (logs *lockedBuffer, exited chan error, cmd *exec.Cmd, pipeID string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, token+"\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	pipeID, _ = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", r.Fd()))
	logs = &lockedBuffer{}
	cmd = exec.Command(buildProxy(t), args...)
	cmd.Env = append(os.Environ(), "TRELLIS_CREDENTIAL_FD=3")
	cmd.ExtraFiles = []*os.File{r}
	cmd.Stdout, cmd.Stderr = logs, logs
	err = cmd.Start()
	r.Close()
	if err != nil {
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
	return logs, ch, cmd, pipeID
}

func issueOnce(t *testing.T, cp *controlplane.ControlPlane) string {
	t.Helper()
	tok, err := cp.CA().Credentials.IssueOnce(cp.Identity("default", "reviews"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The proxy reads its single-use credential from the inherited fd, gets
// its certificate with it and serves; the descriptor is closed once read.
func TestProxyReadsItsCredentialFromAnFD(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	m, addr, rootFile, _ := secureMesh(t)
	tok := issueOnce(t, m.ControlPlane())
	logs, exited, cmd, pipeID := runProxyWithCredentialFD(t, tok, "--xds", addr, "--root-cert", rootFile,
		"--pod-ip", "127.78.2.20", "--pod-name", "reviews-fd", "--service-account", "reviews")
	waitHTTP(t, "http://127.78.2.20:15021/healthz/ready", http.StatusOK)
	resp, err := http.Get("http://127.78.2.20:15000/certs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"spiffe://cluster.local/ns/default/sa/reviews"`) {
		t.Errorf("/certs: %s", body)
	}
	// Nothing of the proxy's open files is the credential pipe any more.
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
	for _, fd := range fds {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", cmd.Process.Pid, fd.Name())); target == pipeID {
			t.Errorf("fd %s of the running proxy is still the credential pipe (%s)", fd.Name(), target)
		}
	}
	// The token was spent on that certificate.
	if _, ok := m.ControlPlane().CA().Credentials.Lookup(tok); ok {
		t.Error("the token still authenticates after the proxy got its certificate")
	}
	stop(t, cmd, exited)
	if strings.Contains(logs.String(), tok) {
		t.Error("the log shows the token")
	}
}

// A proxy whose single-use credential was already spent (the CA issued a
// certificate whose answer was lost) cannot get one: it exits non-zero
// with the reason, promptly, so its supervisor starts it with a new one.
func TestProxyWithASpentCredentialExits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	m, addr, rootFile, _ := secureMesh(t)
	cp := m.ControlPlane()
	tok := issueOnce(t, cp)
	spend(t, cp, tok)
	logs, exited, _, _ := runProxyWithCredentialFD(t, tok, "--xds", addr, "--root-cert", rootFile,
		"--pod-ip", "127.78.2.21", "--pod-name", "reviews-spent", "--service-account", "reviews")
	select {
	case err := <-exited:
		exited <- err
		if err == nil {
			t.Fatalf("exit 0, want a failure:\n%s", logs)
		}
		if s := logs.String(); !strings.Contains(s, "single-use credential") || !strings.Contains(s, "Unauthenticated") {
			t.Errorf("the exit does not say the credential was refused:\n%s", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the proxy kept running with a spent credential:\n%s", logs)
	}
}

// spend gets a certificate with tok through the control plane's CA
// service, as a proxy whose answer was then lost would have.
func spend(t *testing.T, cp *controlplane.ControlPlane, tok string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	svc := identity.NewService(cp.CA(), nil)
	if _, err := svc.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}); err == nil {
		t.Fatal("the token was not spent")
	}
}
