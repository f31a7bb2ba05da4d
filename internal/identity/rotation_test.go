package identity

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/certtest"
)

// recordLog keeps what a CA logs, for tests that look for an Error.
type recordLog struct {
	mu   sync.Mutex
	recs []string
}

func (r *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordLog) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, b.String())
	r.mu.Unlock()
	return nil
}
func (r *recordLog) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recordLog) WithGroup(string) slog.Handler      { return r }

// find is the first record with the prefix ("ERROR the plug-in…").
func (r *recordLog) find(prefix string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.recs {
		if strings.HasPrefix(s, prefix) {
			return s
		}
	}
	return ""
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func signChain(t *testing.T, ca *CA) []*x509.Certificate {
	t.Helper()
	_, csr := csrFor(t)
	chain, err := ca.Sign(csr, checkout, 0)
	if err != nil {
		t.Fatal(err)
	}
	return parseChain(t, chain)
}

// pluginRotation is a plug-in CA's files before and after a root
// rotation: intermediate 1 under root 1, then intermediate 2 under root 2
// with root-cert.pem holding both roots (new first), as Istio's docs
// have users do it.
type pluginRotation struct {
	root1, root2   *certtest.CA
	inter1, inter2 *certtest.CA
}

func newPluginRotation(t *testing.T) pluginRotation {
	r := pluginRotation{root1: certtest.NewCA(t), root2: certtest.NewCA(t)}
	r.inter1, r.inter2 = r.root1.Intermediate(t), r.root2.Intermediate(t)
	return r
}

func (r pluginRotation) writeOld(t *testing.T, dir string) {
	writePlugin(t, dir, r.inter1.Cert, r.inter1.Key, []*x509.Certificate{r.inter1.Cert, r.root1.Cert}, r.root1.Cert)
}

func (r pluginRotation) writeNew(t *testing.T, dir string) {
	writePlugin(t, dir, r.inter2.Cert, r.inter2.Key, []*x509.Certificate{r.inter2.Cert, r.root2.Cert}, r.root2.Cert, r.root1.Cert)
}

// Replacing a plug-in CA's files and reloading: new certificates come
// from the new intermediate and chain to the new root; certificates from
// the old one still verify while root-cert.pem holds both roots; the
// bundle is published before the first certificate from the new CA; a
// set that does not hang together changes nothing.
func TestReloadPlugin(t *testing.T) {
	r := newPluginRotation(t)
	dir := t.TempDir()
	r.writeOld(t, dir)
	var ca *CA
	var published [][]*x509.Certificate
	var signerAtPublish []*x509.Certificate
	ca = newCA(t, CAOptions{PluginDir: dir, Publish: func(b []byte) error {
		published = append(published, parsePEMCerts(t, b))
		if ca != nil {
			signerAtPublish = append(signerAtPublish, signChain(t, ca)[1])
		}
		return nil
	}})
	old := signChain(t, ca)
	if !old[1].Equal(r.inter1.Cert) {
		t.Fatal("the CA does not sign as intermediate 1")
	}
	if changed, err := ca.ReloadPlugin(); changed || err != nil {
		t.Fatalf("reload of unchanged files: changed %v, %v", changed, err)
	}
	gen := ca.Generation()

	r.writeNew(t, dir)
	if changed, err := ca.ReloadPlugin(); !changed || err != nil {
		t.Fatalf("reload of new files: changed %v, %v", changed, err)
	}
	if ca.Generation() == gen {
		t.Error("Generation did not change: the serving certificate would not be renewed")
	}
	now := signChain(t, ca)
	if !now[1].Equal(r.inter2.Cert) || !now[len(now)-1].Equal(r.root2.Cert) {
		t.Fatal("a new certificate does not chain through intermediate 2 to root 2")
	}
	if err := verify(now, ca.Roots()); err != nil {
		t.Errorf("a new certificate against the bundle: %v", err)
	}
	if err := verify(old, ca.Roots()); err != nil {
		t.Errorf("a certificate of the old CA against the bundle holding both roots: %v", err)
	}
	if got := parsePEMCerts(t, ca.RootsPEM()); len(got) != 2 || !got[0].Equal(r.root2.Cert) || !got[1].Equal(r.root1.Cert) {
		t.Errorf("bundle is not root 2, root 1")
	}
	if len(published) != 2 || len(published[1]) != 2 || !published[1][0].Equal(r.root2.Cert) {
		t.Fatalf("published %d bundles, want the first and root 2 + root 1", len(published))
	}
	if len(signerAtPublish) != 1 || !signerAtPublish[0].Equal(r.inter1.Cert) {
		t.Error("the new bundle was published after the CA had started signing with the new intermediate")
	}

	// Broken or half-written sets: the CA keeps intermediate 2.
	other := certtest.NewCA(t)
	for name, write := range map[string]func(d string){
		"key of another certificate": func(d string) {
			writePlugin(t, d, r.inter2.Cert, other.Key, []*x509.Certificate{r.inter2.Cert}, r.root2.Cert)
		},
		"new ca-cert, old key (half-written)": func(d string) {
			writePlugin(t, d, r.inter1.Cert, r.inter1.Key, []*x509.Certificate{r.inter1.Cert}, r.root1.Cert)
			if err := os.WriteFile(filepath.Join(d, CACertFile), certPEM(other.Cert), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated key": func(d string) {
			writePlugin(t, d, r.inter2.Cert, r.inter2.Key, []*x509.Certificate{r.inter2.Cert}, r.root2.Cert)
			if err := os.WriteFile(filepath.Join(d, CAKeyFile), []byte("-----BEGIN PRIVATE KEY-----\nMIGH"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			write(dir)
			gen := ca.Generation()
			if changed, err := ca.ReloadPlugin(); changed || err == nil {
				t.Fatalf("changed %v, err %v; want an error and no change", changed, err)
			}
			if ca.Generation() != gen {
				t.Error("Generation changed")
			}
			if c := signChain(t, ca); !c[1].Equal(r.inter2.Cert) {
				t.Error("the CA stopped signing as intermediate 2")
			}
		})
	}
}

// WatchPlugin notices replaced files by itself: a broken set is logged at
// Error level and the CA keeps signing as before; a good one is taken.
func TestWatchPlugin(t *testing.T) {
	r := newPluginRotation(t)
	dir := t.TempDir()
	r.writeOld(t, dir)
	rec := &recordLog{}
	ca, err := NewCA(CAOptions{PluginDir: dir, Log: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ca.WatchPlugin(ctx, 10*time.Millisecond) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	// ca-key.pem of another CA: broken.
	other := certtest.NewCA(t)
	writePlugin(t, dir, r.inter2.Cert, other.Key, []*x509.Certificate{r.inter2.Cert}, r.root2.Cert, r.root1.Cert)
	waitFor(t, "an Error about the broken files", func() bool {
		return rec.find("ERROR the plug-in CA's files changed but cannot be used") != ""
	})
	if s := rec.find("ERROR the plug-in CA's files"); !strings.Contains(s, dir) || !strings.Contains(s, "the key is not the certificate's") {
		t.Errorf("the Error does not say where and why: %s", s)
	}
	if c := signChain(t, ca); !c[1].Equal(r.inter1.Cert) {
		t.Fatal("the CA stopped signing as intermediate 1 after a broken replacement")
	}

	r.writeNew(t, dir)
	waitFor(t, "the CA to sign as intermediate 2", func() bool {
		return signChain(t, ca)[1].Equal(r.inter2.Cert)
	})
	if got := parsePEMCerts(t, ca.RootsPEM()); len(got) != 2 {
		t.Errorf("bundle holds %d roots, want both", len(got))
	}
}

// RootDue is Istio's rule: rotate once less than the grace period (a
// percentage of the root's life) is left; a plug-in CA never is.
func TestRootDue(t *testing.T) {
	ca := newCA(t, CAOptions{RootTTL: 100 * time.Hour})
	nb := ca.Root().NotBefore
	life := ca.Root().NotAfter.Sub(nb)
	for _, tc := range []struct {
		at   time.Duration
		pct  int
		want bool
	}{
		{life * 79 / 100, 20, false},
		{life * 81 / 100, 20, true},
		{life * 49 / 100, 50, false},
		{life * 51 / 100, 50, true},
		{life + time.Hour, 20, true},
	} {
		if got := ca.RootDue(nb.Add(tc.at), tc.pct); got != tc.want {
			t.Errorf("%s into a %s root, grace %d%%: due %v, want %v", tc.at, life, tc.pct, got, tc.want)
		}
	}
	dir := t.TempDir()
	r := newPluginRotation(t)
	r.writeOld(t, dir)
	plug := newCA(t, CAOptions{PluginDir: dir})
	if plug.RootDue(r.root1.Cert.NotAfter.Add(time.Hour), 20) {
		t.Error("a plug-in CA is due for Rotate, which it refuses")
	}
}

// The rotator rotates a self-signed root within its grace period by
// itself; the bundle (in memory, and the CA dir's root-cert.pem) then
// holds the new and the old root, and certificates from the old one
// verify.
func TestRootRotator(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, CAOptions{Dir: dir, RootTTL: 4 * time.Second})
	if b, err := os.ReadFile(filepath.Join(dir, RootCertFile)); err != nil || string(b) != string(ca.RootsPEM()) {
		t.Fatalf("the CA dir's root-cert.pem is not the bundle: %v", err)
	}
	first := ca.Root()
	old := signChain(t, ca)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ca.RunRootRotator(ctx, 20*time.Millisecond, 50) }()
	waitFor(t, "the root to be rotated (half its 4s life left)", func() bool { return !ca.Root().Equal(first) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if left, grace := time.Until(first.NotAfter), first.NotAfter.Sub(first.NotBefore)/2; left >= grace {
		t.Errorf("rotated with %s of its life left, before the grace period (%s)", left, grace)
	}
	got := parsePEMCerts(t, ca.RootsPEM())
	if len(got) != 2 || !got[0].Equal(ca.Root()) || !got[1].Equal(first) {
		t.Fatalf("bundle holds %d roots, want new then old", len(got))
	}
	if b, err := os.ReadFile(filepath.Join(dir, RootCertFile)); err != nil || string(b) != string(ca.RootsPEM()) {
		t.Errorf("the CA dir's root-cert.pem is not the new bundle: %v", err)
	}
	if err := verify(old, ca.Roots()); err != nil {
		t.Errorf("a certificate from the old root: %v", err)
	}
	if c := signChain(t, ca); !c[len(c)-1].Equal(ca.Root()) {
		t.Error("new certificates do not chain to the new root")
	}
	// The rotated root survives a restart, still trusting the old one.
	again := newCA(t, CAOptions{Dir: dir})
	if !again.Root().Equal(ca.Root()) || len(parsePEMCerts(t, again.RootsPEM())) != 2 {
		t.Error("a restart lost the rotated root or the old one")
	}
}

// A rotation whose bundle cannot be published changes nothing: signing
// under a root nobody was told to trust would break every handshake.
func TestRotateUnpublishedChangesNothing(t *testing.T) {
	fail := false
	ca := newCA(t, CAOptions{Publish: func([]byte) error {
		if fail {
			return os.ErrPermission
		}
		return nil
	}})
	first, gen := ca.Root(), ca.Generation()
	fail = true
	if err := ca.Rotate(); err == nil {
		t.Fatal("Rotate succeeded without publishing its bundle")
	}
	if !ca.Root().Equal(first) || ca.Generation() != gen {
		t.Error("the CA switched roots anyway")
	}
}
