package certs

import (
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/certtest"
)

func writeRootFile(t *testing.T, path string, cas ...*certtest.CA) {
	t.Helper()
	var b []byte
	for _, ca := range cas {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})...)
	}
	// Replaced whole, as a ConfigMap volume or trellis up does.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A root published to the root file is trusted from the next handshake,
// without waiting for a renewal (with 24 h certificates, 12 hours away),
// and a broken rewrite of the file keeps the roots read before. Before,
// Roots were those of the last issuance: a peer renewed from a rotated
// root was refused, and so was the control plane's certificate, reissued
// from the new root, so renewals failed until the certificate expired.
func TestRootsFollowTheRootFile(t *testing.T) {
	oldCA, newCA := certtest.NewCA(t), certtest.NewCA(t)
	rootFile := filepath.Join(t.TempDir(), "root-cert.pem")
	writeRootFile(t, rootFile, oldCA)
	m, err := NewManager(ManagerOptions{CA: "127.0.0.1:1", RootCertFile: rootFile, CredentialFile: "unused", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	fromOld := oldCA.Leaf(t, certtest.SPIFFE("default", "old"), certtest.LeafOptions{}).Certificate
	fromNew := newCA.Leaf(t, certtest.SPIFFE("default", "new"), certtest.LeafOptions{}).Certificate
	verifies := func(chain [][]byte) bool {
		_, err := VerifyPeer(m, chain, nil)
		return err == nil
	}
	if !verifies(fromOld) || verifies(fromNew) {
		t.Fatal("before the rotation: want the old root trusted and the new one not")
	}

	writeRootFile(t, rootFile, newCA, oldCA)
	if !verifies(fromOld) || !verifies(fromNew) {
		t.Errorf("after the bundle with both roots was published: old root trusted %v, new root trusted %v; want both", verifies(fromOld), verifies(fromNew))
	}

	if err := os.WriteFile(rootFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !verifies(fromOld) || !verifies(fromNew) {
		t.Error("a root file rewritten with garbage dropped the roots read before")
	}

	writeRootFile(t, rootFile, newCA)
	if verifies(fromOld) || !verifies(fromNew) {
		t.Errorf("after the old root was removed from the bundle: old root trusted %v, new root trusted %v; want only the new one", verifies(fromOld), verifies(fromNew))
	}
}
