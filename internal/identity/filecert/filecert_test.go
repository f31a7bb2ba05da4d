package filecert_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/identity"
	"github.com/trellismesh/trellis/internal/identity/filecert"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/translate"
)

var greeterID = identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "greeter"}

func newCA(t *testing.T) *identity.CA {
	t.Helper()
	ca, err := identity.NewCA(identity.CAOptions{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func start(t *testing.T, opts filecert.Options) *filecert.Writer {
	t.Helper()
	w, err := filecert.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// check reads the files as grpc-go does and verifies what they hold: a
// key pair that matches, a chain to a root in the bundle, one SPIFFE ID.
func check(t *testing.T, w *filecert.Writer, want identity.ID) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(w.CertFile(), w.KeyFile())
	if err != nil {
		t.Fatalf("certificate and key do not load as a pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(w.RootFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("root-cert.pem holds no certificate")
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, _ := x509.ParseCertificate(der)
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("certificate does not verify against root-cert.pem: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want.String() {
		t.Errorf("certificate names %v, want %s", leaf.URIs, want)
	}
	return leaf
}

func TestStartWritesIdentityFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	w := start(t, filecert.Options{Dir: dir, ID: greeterID, CA: newCA(t)})
	check(t, w, greeterID)

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", fi.Mode().Perm())
	}
	// Stat follows the link to the file itself.
	if fi, err := os.Stat(w.KeyFile()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if got, want := []string{w.CertFile(), w.KeyFile(), w.RootFile()}, []string{filepath.Join(dir, "cert-chain.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "root-cert.pem")}; !cmp.Equal(got, want) {
		t.Errorf("paths %v, want %v", got, want)
	}
}

func TestStartRefusesWhatCannotWork(t *testing.T) {
	ca := newCA(t)
	for name, opts := range map[string]filecert.Options{
		"no dir":         {ID: greeterID, CA: ca},
		"no CA":          {Dir: t.TempDir(), ID: greeterID},
		"no identity":    {Dir: t.TempDir(), CA: ca},
		"bad namespace":  {Dir: t.TempDir(), CA: ca, ID: identity.ID{TrustDomain: "cluster.local", Namespace: "a/b", ServiceAccount: "x"}},
		"dir is a file":  {Dir: filepath.Join(writeFile(t), "sub"), CA: ca, ID: greeterID},
		"TTL beyond max": {Dir: t.TempDir(), CA: expired(t), ID: greeterID},
	} {
		if w, err := filecert.Start(opts); err == nil {
			w.Close()
			t.Errorf("%s: Start succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// eventually polls f until it returns "" or within passes.
func eventually(t *testing.T, within time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// expired is an issuer that refuses, as a CA past its expiry does.
func expired(t *testing.T) filecert.Issuer { return refusing{newCA(t)} }

type refusing struct{ *identity.CA }

func (refusing) Sign([]byte, identity.ID, time.Duration) ([]string, error) {
	return nil, os.ErrDeadlineExceeded
}

// A short-lived certificate is renewed at half its life (less up to 1%),
// each time with a new key and certificate that still verify, and a
// reader of the files meanwhile never sees a partial file or a key that
// does not match its certificate.
func TestRotation(t *testing.T) {
	const ttl = 2 * time.Second
	w := start(t, filecert.Options{Dir: t.TempDir(), ID: greeterID, CA: newCA(t), TTL: ttl})
	first := w.Status()
	if life := first.NotAfter.Sub(first.NotBefore); life < ttl || life > ttl+ttl/10+time.Second {
		t.Fatalf("certificate lives %v, want about %v", life, ttl)
	}
	half := first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore) / 2)
	if first.RenewAt.After(half) || first.RenewAt.Before(half.Add(-first.NotAfter.Sub(first.NotBefore)/100)) {
		t.Errorf("renewal due at %v, want within 1%% before half life %v", first.RenewAt, half)
	}

	var reads, torn atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			// One resolution of the link for both files, as a reader
			// that opens them through ..data at once would.
			dataDir, err := filepath.EvalSymlinks(filepath.Join(filepath.Dir(w.CertFile()), "..data"))
			if err != nil {
				continue // removed between resolving and reading: a retry
			}
			cert, err1 := os.ReadFile(filepath.Join(dataDir, "cert-chain.pem"))
			key, err2 := os.ReadFile(filepath.Join(dataDir, "key.pem"))
			if err1 != nil || err2 != nil {
				continue // an old version removed meanwhile; never partial
			}
			reads.Add(1)
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				torn.Add(1)
			}
			if b, _ := pem.Decode(cert); b == nil {
				torn.Add(1)
			}
		}
	})
	eventually(t, 10*time.Second, func() string {
		if w.Status().Renewals < 3 {
			return "fewer than 3 renewals"
		}
		return ""
	})
	close(stop)
	wg.Wait()
	w.Close() // no renewal in flight while the directory is inspected
	st := w.Status()
	if st.Serial.Cmp(first.Serial) == 0 {
		t.Errorf("serial unchanged after %d renewals", st.Renewals)
	}
	if st.LastError != nil {
		t.Errorf("last renewal error: %v", st.LastError)
	}
	leaf := check(t, w, greeterID)
	if leaf.SerialNumber.Cmp(st.Serial) != 0 {
		t.Errorf("files hold serial %v, status says %v", leaf.SerialNumber, st.Serial)
	}
	if torn.Load() > 0 {
		t.Errorf("%d of %d reads saw a partial file or a mismatched key", torn.Load(), reads.Load())
	}
	entries, _ := os.ReadDir(filepath.Dir(w.CertFile()))
	if len(entries) > 5 { // 3 links, ..data, one version
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("old versions left behind: %v", names)
	}
	t.Logf("%d renewals, %d consistent reads", st.Renewals, reads.Load())
}

// A root rotation reaches root-cert.pem (old and new root) and the
// certificate is reissued by the new root, without waiting for half life.
func TestRootRotation(t *testing.T) {
	ca := newCA(t)
	w := start(t, filecert.Options{Dir: t.TempDir(), ID: greeterID, CA: ca, RootCheck: 50 * time.Millisecond})
	oldRoot := ca.Root()
	if err := ca.Rotate(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() string {
		b, _ := os.ReadFile(w.RootFile())
		if !bytes.Equal(b, ca.RootsPEM()) {
			return "root-cert.pem does not hold the new bundle"
		}
		return ""
	})
	leaf := check(t, w, greeterID)
	if err := leaf.CheckSignatureFrom(ca.Root()); err != nil {
		t.Errorf("certificate not reissued by the new root: %v", err)
	}
	if ca.Root().Equal(oldRoot) {
		t.Fatal("Rotate kept the root")
	}
}

// The bootstrap names the files, the file_watcher plugin and the server
// listener names Trellis serves.
func TestBootstrap(t *testing.T) {
	dir := "/run/greeter/certs"
	b, err := filecert.Bootstrap(dir, filecert.BootstrapOptions{
		XDSAddress: "127.0.0.1:15010", NodeID: "sidecar~127.0.0.1~greeter.default~default.svc.cluster.local",
		Metadata: map[string]any{"NAMESPACE": "default"}, RefreshInterval: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		XDSServers []struct {
			ServerURI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
		} `json:"node"`
		Providers map[string]struct {
			Plugin string            `json:"plugin_name"`
			Config map[string]string `json:"config"`
		} `json:"certificate_providers"`
		Template string `json:"server_listener_resource_name_template"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Template != translate.GRPCServerListenerPrefix+"%s" {
		t.Errorf("template %q, want the prefix Trellis serves: %q", got.Template, translate.GRPCServerListenerPrefix+"%s")
	}
	want := map[string]string{
		"certificate_file":    dir + "/cert-chain.pem",
		"private_key_file":    dir + "/key.pem",
		"ca_certificate_file": dir + "/root-cert.pem",
		"refresh_interval":    "1.5s",
	}
	p := got.Providers[translate.GRPCCertProviderInstance]
	if p.Plugin != "file_watcher" || !cmp.Equal(p.Config, want) {
		t.Errorf("provider %q: %+v, want file_watcher %v", translate.GRPCCertProviderInstance, p, want)
	}
	if got.Node.Metadata["GENERATOR"] != "grpc" || got.Node.Metadata["NAMESPACE"] != "default" || len(got.XDSServers) != 1 || got.XDSServers[0].ServerURI != "127.0.0.1:15010" {
		t.Errorf("bootstrap: %s", b)
	}
	if !strings.Contains(string(b), `"type": "insecure"`) {
		t.Errorf("plaintext xDS bootstrap without insecure channel creds: %s", b)
	}

	// Over the secure port, the channel is mTLS with the same files.
	b, err = filecert.Bootstrap(dir, filecert.BootstrapOptions{XDSAddress: "127.0.0.1:15012", NodeID: "n", SecureXDS: true})
	if err != nil {
		t.Fatal(err)
	}
	var sec struct {
		XDSServers []struct {
			Creds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
	}
	if err := json.Unmarshal(b, &sec); err != nil {
		t.Fatal(err)
	}
	want["refresh_interval"] = "900s"
	if c := sec.XDSServers[0].Creds; len(c) != 1 || c[0].Type != "tls" || !cmp.Equal(c[0].Config, want) {
		t.Errorf("secure xDS channel creds: %+v, want tls with %v", c, want)
	}

	if _, err := filecert.Bootstrap(dir, filecert.BootstrapOptions{}); err == nil {
		t.Error("a bootstrap without an xDS address was made")
	}
}

// A workload outside the control plane's process gets its files through
// the CA service on the secure port with its per-pod credential: the
// identity is the credential's, a credential for another identity is
// refused before anything is written, and a revoked one stops renewals.
func TestRemoteCA(t *testing.T) {
	m := meshtest.New(t, "", meshtest.WithCA())
	cp := m.ControlPlane()
	dir := t.TempDir()
	rootFile, credFile := filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "credential")
	if err := os.WriteFile(rootFile, cp.RootCertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := cp.IssueCredential("default", "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(credFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := filecert.DialCA(cp.SecureAddr().String(), rootFile, credFile)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()

	w := start(t, filecert.Options{Dir: filepath.Join(dir, "certs"), ID: greeterID, CA: ca, TTL: 2 * time.Second})
	check(t, w, greeterID)
	eventually(t, 10*time.Second, func() string {
		if w.Status().Renewals < 1 {
			return "no renewal through the CA service"
		}
		return ""
	})
	check(t, w, greeterID)

	other := identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "payments"}
	if w2, err := filecert.Start(filecert.Options{Dir: filepath.Join(dir, "other"), ID: other, CA: ca}); err == nil {
		w2.Close()
		t.Error("a credential for greeter got files for payments")
	} else if !strings.Contains(err.Error(), "not "+other.String()) {
		t.Errorf("refusal does not say which identity: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other", "key.pem")); err == nil {
		t.Error("files were written for a refused identity")
	}

	cp.RevokeCredential(tok)
	eventually(t, 10*time.Second, func() string {
		if w.Status().LastError == nil {
			return "renewal with a revoked credential did not fail"
		}
		return ""
	})
	t.Logf("after revocation: %v", w.Status().LastError)
}
