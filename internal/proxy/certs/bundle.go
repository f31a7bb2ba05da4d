package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"sync"
)

// A Manager's trust bundle (Roots) is the root file as it is now plus the
// root the CA sent with the current certificate. The file is looked at
// (one fstat) at each call, that is at each handshake, and read again when
// it changed. After a root rotation the new bundle is published to every
// proxy's root file, and each proxy must trust the new root from that
// moment, not from its own next renewal (hours later with 24 h
// certificates):
//   - the control plane's serving certificate is reissued from the new
//     root at once, so a renewal verified against the roots of the last
//     issuance could never succeed again, and the certificate would
//     expire;
//   - a peer that renewed from the new root first would be refused by
//     every proxy that has not renewed yet.

// trustState caches the merged bundle; its lock is taken once per
// handshake, never per request.
type trustState struct {
	mu sync.Mutex
	// info is the root file as last read (nil: not read by Roots yet).
	info os.FileInfo
	// merged was built from file and cur.
	file   *rootSet
	cur    *issued
	merged *rootSet
}

// trustBundle is the current trust bundle.
func (m *Manager) trustBundle() *rootSet {
	m.trust.mu.Lock()
	defer m.trust.mu.Unlock()
	m.rereadRootsLocked()
	file, cur := m.fileRoots.Load(), m.cur.Load()
	if cur == nil {
		return file
	}
	if m.trust.merged != nil && m.trust.file == file && m.trust.cur == cur {
		return m.trust.merged
	}
	certs := file.certs
	if last := cur.chain[len(cur.chain)-1]; len(cur.chain) > 1 && isSelfSigned(last) {
		certs = append(certs[:len(certs):len(certs)], last)
	}
	m.trust.file, m.trust.cur, m.trust.merged = file, cur, newRootSet(certs)
	return m.trust.merged
}

// rereadRootsLocked reads the root file again if it is not the one read
// last (replaced, as a ConfigMap volume or an atomic write does, or
// rewritten). A file that cannot be read or holds no certificate keeps
// the roots read before, with one warning per change of the file.
func (m *Manager) rereadRootsLocked() {
	f, err := os.Open(m.opts.RootCertFile)
	if err != nil {
		return // renewals log it; the roots read before hold
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	if prev := m.trust.info; prev != nil && os.SameFile(prev, fi) && prev.Size() == fi.Size() && prev.ModTime().Equal(fi.ModTime()) {
		return
	}
	m.trust.info = fi
	roots, err := parseRoots(f, m.opts.RootCertFile)
	if err != nil {
		m.log.Warn("the root certificate file changed but cannot be used; keeping the roots read before", "err", err)
		return
	}
	m.fileRoots.Store(roots)
}

// Snapshot's CA certificates and Roots are the same set.
func (m *Manager) bundleCerts() []*x509.Certificate { return m.trustBundle().certs }

// parseRoots reads every certificate of a PEM file from f.
func parseRoots(f *os.File, path string) (*rootSet, error) {
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("certs: reading the root certificate: %w", err)
	}
	return decodeRoots(b, path)
}

// decodeRoots is every certificate of the PEM file at path, whose content
// is b.
func decodeRoots(b []byte, path string) (*rootSet, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: root certificate file %s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("certs: root certificate file %s holds no PEM certificate", path)
	}
	return newRootSet(certs), nil
}
