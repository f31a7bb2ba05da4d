package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/fakeca"
)

// syncBuffer is a log sink the manager's goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func credential(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "credential")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newManager(t *testing.T, ca *fakeca.Server, token string, o ManagerOptions) (*Manager, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	o.CA = ca.Addr
	o.RootCertFile = ca.RootFile
	if o.CredentialFile == "" {
		o.CredentialFile = credential(t, token)
	}
	o.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	return m, logs
}

func run(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func waitReady(t *testing.T, m *Manager) {
	t.Helper()
	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("no certificate after 10s; last error: %v", m.Err())
	}
}

func currentKey(t *testing.T, m *Manager) *ecdsa.PrivateKey {
	t.Helper()
	c, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("key is %T, want ECDSA P-256", c.PrivateKey)
	}
	return key
}

var sleepID = certtest.SPIFFE("default", "sleep")

// The first certificate: the CSR carries a new P-256 key and the expected
// SPIFFE ID, the call carries the credential and the TTL, and the issued
// chain becomes the Source's certificate, verifiable against its roots.
func TestManagerIssuesFirstCertificate(t *testing.T) {
	ca := fakeca.Start(t, certtest.NewCA(t).Intermediate(t))
	ca.Allow("tok-sleep", sleepID)
	m, _ := newManager(t, ca, "tok-sleep", ManagerOptions{SPIFFEID: sleepID, TTL: time.Hour})
	if _, err := m.Certificate(); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("before issue: %v, want ErrNoCertificate", err)
	}
	run(t, m)
	waitReady(t, m)

	c, _ := m.Certificate()
	key := currentKey(t, m)
	if got := SPIFFEID(c.Leaf); got != sleepID {
		t.Errorf("SPIFFE ID %q, want %q", got, sleepID)
	}
	if !c.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Error("the leaf is not for the manager's key")
	}
	// The presented chain is the leaf and the intermediate, not the root.
	if len(c.Certificate) != 2 {
		t.Errorf("presented chain has %d certificates, want leaf + intermediate", len(c.Certificate))
	}
	if _, err := VerifyPeer(m, c.Certificate, func(id string) bool { return id == sleepID }); err != nil {
		t.Errorf("own chain does not verify against Roots: %v", err)
	}
	reqs := ca.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	want := fakeca.Request{Token: "tok-sleep", CSRURIs: []string{sleepID}, ValiditySeconds: 3600}
	reqs[0].Issued = nil
	if diff := cmp.Diff(want, reqs[0]); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap.SPIFFEID != sleepID || snap.SerialNumber != c.Leaf.SerialNumber.Text(16) || !snap.NotAfter.Equal(c.Leaf.NotAfter) {
		t.Errorf("snapshot %+v does not describe the leaf", snap)
	}
	if !strings.HasPrefix(snap.CertChainPEM, "-----BEGIN CERTIFICATE-----") || strings.Count(snap.CertChainPEM, "BEGIN CERTIFICATE") != 3 {
		t.Errorf("snapshot chain PEM is not leaf, intermediate and root:\n%s", snap.CertChainPEM)
	}
}

// A credential the CA does not accept is an error naming the cause, and
// the manager holds no certificate.
func TestManagerWrongTokenIsAClearError(t *testing.T) {
	ca := fakeca.Start(t, nil)
	ca.Allow("tok-sleep", sleepID)
	m, _ := newManager(t, ca, "tok-wrong", ManagerOptions{})
	err := m.Issue(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Unauthenticated") || !strings.Contains(err.Error(), "credential") {
		t.Fatalf("got %v, want an Unauthenticated error about the credential", err)
	}
	if _, err := m.Certificate(); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("after a refusal: %v, want ErrNoCertificate", err)
	}
	if snap, _ := m.Snapshot(); !strings.Contains(snap.LastError, "Unauthenticated") {
		t.Errorf("snapshot's last error %q does not say why", snap.LastError)
	}

	// No credential file at all: said before any call.
	m2, _ := newManager(t, ca, "", ManagerOptions{CredentialFile: filepath.Join(t.TempDir(), "missing")})
	if err := m2.Issue(context.Background()); err == nil || !strings.Contains(err.Error(), "reading the credential") {
		t.Errorf("missing credential: %v", err)
	}
	// A CA whose certificate the root file does not vouch for is refused.
	other := fakeca.Start(t, nil)
	other.Allow("tok-sleep", sleepID)
	m3, err := NewManager(ManagerOptions{CA: other.Addr, RootCertFile: ca.RootFile, CredentialFile: credential(t, "tok-sleep"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m3.Issue(context.Background()); err == nil || !strings.Contains(err.Error(), "XDS_ROOT_CA") {
		t.Errorf("CA with a foreign certificate: %v", err)
	}
	if n := len(other.Requests()); n != 0 {
		t.Errorf("the foreign CA got %d requests; the credential went to a server the proxy does not trust", n)
	}
}

// An answer that is not a usable certificate for this proxy is refused
// and the current certificate stays.
func TestManagerRefusesAMismatchedChain(t *testing.T) {
	ca := fakeca.Start(t, nil)
	ca.Allow("tok-sleep", sleepID)
	m, _ := newManager(t, ca, "tok-sleep", ManagerOptions{TTL: time.Hour})
	if err := m.Issue(context.Background()); err != nil {
		t.Fatal(err)
	}
	first, _ := m.Certificate()
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := certtest.NewCA(t)
	for _, tc := range []struct {
		name   string
		tamper func(chain []string, csr *x509.CertificateRequest) []string
		want   string
	}{
		{"leaf for another key", func(chain []string, _ *x509.CertificateRequest) []string {
			return append([]string{fakeca.Sign(t, ca.CA, &otherKey.PublicKey, time.Hour, sleepID)}, chain[1:]...)
		}, "public key is not the one"},
		{"signed by another CA", func(_ []string, csr *x509.CertificateRequest) []string {
			return append([]string{fakeca.Sign(t, otherCA, csr.PublicKey, time.Hour, sleepID)}, fakeca.ChainAbove(otherCA)...)
		}, "does not verify against the root"},
		{"two URI SANs", func(chain []string, csr *x509.CertificateRequest) []string {
			return append([]string{fakeca.Sign(t, ca.CA, csr.PublicKey, time.Hour, sleepID, certtest.SPIFFE("default", "admin"))}, chain[1:]...)
		}, "exactly one URI SAN"},
		{"no SPIFFE ID", func(chain []string, csr *x509.CertificateRequest) []string {
			return append([]string{fakeca.Sign(t, ca.CA, csr.PublicKey, time.Hour, "https://example.com/sleep")}, chain[1:]...)
		}, "exactly one URI SAN"},
		{"not PEM", func([]string, *x509.CertificateRequest) []string { return []string{"garbage"} }, "not a PEM certificate"},
		{"empty", func([]string, *x509.CertificateRequest) []string { return nil }, "cert_chain is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca.Tamper(tc.tamper)
			defer ca.Tamper(nil)
			err := m.Issue(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if cur, _ := m.Certificate(); cur != first {
				t.Error("the current certificate was replaced by a refused one")
			}
		})
	}
}

// Rotation happens at half the certificate's life (at most 1% earlier),
// with a new key, and a renewal authenticates with the current
// certificate: the credential has been revoked by then.
func TestManagerRotatesAtHalfLife(t *testing.T) {
	ca := fakeca.Start(t, nil)
	ca.Allow("tok-sleep", sleepID)
	m, logs := newManager(t, ca, "tok-sleep", ManagerOptions{TTL: 4 * time.Second})
	run(t, m)
	waitReady(t, m)
	updated := m.Updated()
	first, _ := m.Certificate()
	firstKey := currentKey(t, m)
	ca.Revoke("tok-sleep")

	select {
	case <-updated:
	case <-time.After(10 * time.Second):
		t.Fatalf("no rotation within 10s of a 4s certificate; last error: %v", m.Err())
	}
	at := time.Now()
	second, _ := m.Certificate()
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("rotated to the same certificate")
	}
	if currentKey(t, m).Equal(firstKey) {
		t.Error("the renewal reused the key")
	}
	life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	earliest := first.Leaf.NotBefore.Add(time.Duration(float64(life) * 0.49))
	latest := first.Leaf.NotBefore.Add(life / 2).Add(time.Second) // a call's latency on a busy machine
	if at.Before(earliest) || at.After(latest) {
		t.Errorf("rotated %s after NotBefore, want about %s (half of %s)", at.Sub(first.Leaf.NotBefore), life/2, life)
	}
	reqs := ca.Requests()
	if last := reqs[len(reqs)-1]; last.ClientCertID != sleepID || last.Token != "tok-sleep" {
		t.Errorf("renewal request %+v: want the current certificate (%s) and the token", last, sleepID)
	}
	if got := SPIFFEID(second.Leaf); got != sleepID {
		t.Errorf("renewed identity %q", got)
	}
	certtest.AssertNoPrivateKey(t, "the logs", logs.String(), firstKey)
	certtest.AssertNoPrivateKey(t, "the logs", logs.String(), currentKey(t, m))
	if !strings.Contains(logs.String(), "workload certificate renewed") {
		t.Errorf("no renewal logged:\n%s", logs)
	}
}

// While the CA is unreachable the manager retries until it answers.
func TestManagerRetriesUntilTheCAAnswers(t *testing.T) {
	ca := fakeca.Start(t, nil)
	ca.Allow("tok-sleep", sleepID)
	dir := t.TempDir()
	m, logs := newManager(t, ca, "tok-sleep", ManagerOptions{RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	// The manager's address is a socket nobody listens on yet.
	m.target.Address = filepath.Join(dir, "later.sock")
	run(t, m)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "no workload certificate yet") {
		if time.Now().After(deadline) {
			t.Fatal("no retry logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-m.Ready():
		t.Fatal("ready without a CA")
	default:
	}
	// The CA comes up at the address.
	if err := os.Symlink(strings.TrimPrefix(ca.Addr, "unix://"), m.target.Address); err != nil {
		t.Fatal(err)
	}
	waitReady(t, m)
}

func TestRotationTime(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(24 * time.Hour)
	if got := rotationTime(nb, na, 0); !got.Equal(nb.Add(12 * time.Hour)) {
		t.Errorf("no jitter: %s, want half life", got)
	}
	// The most jitter: 1% of the life earlier, never later.
	if got, want := rotationTime(nb, na, 0.999999), nb.Add(12*time.Hour-14*time.Minute-24*time.Second); got.Before(want) || !got.Before(nb.Add(12*time.Hour)) {
		t.Errorf("full jitter: %s, want within 1%% before half life (%s)", got, want)
	}
}

// The snapshot for the admin page carries no key.
func TestSnapshotHasNoKey(t *testing.T) {
	ca := fakeca.Start(t, nil)
	ca.Allow("tok-sleep", sleepID)
	m, logs := newManager(t, ca, "tok-sleep", ManagerOptions{})
	if err := m.Issue(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	key := currentKey(t, m)
	certtest.AssertNoPrivateKey(t, "the snapshot", string(b), key)
	certtest.AssertNoPrivateKey(t, "the logs", logs.String(), key)
	if !strings.Contains(string(b), sleepID) {
		t.Errorf("snapshot without the identity: %s", b)
	}
}
