package identity

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// A plug-in CA is rotated by replacing its files, as Istio's istiod
// reloads its cacerts secret: a new ca-cert.pem and ca-key.pem (the new
// intermediate), cert-chain.pem, and a root-cert.pem that during a root
// rotation holds the old and the new root. WatchPlugin notices the change
// and ReloadPlugin switches to the new set once it hangs together; until
// then (a broken set, or one written file by file) the CA keeps signing
// with what it had.

// DefaultPluginCheckInterval is how often WatchPlugin looks at the files:
// four small reads, cheap enough to notice a replacement within seconds.
const DefaultPluginCheckInterval = 2 * time.Second

// pluginFiles are the plug-in CA's files, in a fixed order for
// fingerprinting.
var pluginFiles = []string{CACertFile, CAKeyFile, CertChainFile, RootCertFile}

// pluginFingerprint is a digest of the plug-in files' contents (a missing
// file counts as empty and marked), so a replacement is noticed however
// it is made (rename, rewrite, a Kubernetes volume's symlink swap) and a
// mere touch is not.
func pluginFingerprint(dir string) [sha256.Size]byte {
	h := sha256.New()
	for _, name := range pluginFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case err == nil:
			fmt.Fprintf(h, "%s %d\n", name, len(data))
			h.Write(data)
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(h, "%s missing\n", name)
		default:
			fmt.Fprintf(h, "%s error %v\n", name, err)
		}
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// ReloadPlugin reads the plug-in CA's files again and, if they describe a
// different CA that hangs together (the checks NewCA makes), signs with
// it from now on; the trust bundle becomes its root-cert.pem, published
// first. A set that does not hang together changes nothing and is
// returned as an error. changed is false when the files describe the CA
// in use.
func (ca *CA) ReloadPlugin() (changed bool, err error) {
	dir := ca.opts.PluginDir
	if dir == "" {
		return false, errors.New("CA: not a plug-in CA: there are no files to reload")
	}
	ca.rotating.Lock()
	defer ca.rotating.Unlock()
	a, err := loadPlugin(dir, ca.log)
	if err != nil {
		return false, err
	}
	cur := ca.cur.Load()
	if a.signer.Equal(cur.signer) && string(a.bundlePEM) == string(cur.bundlePEM) && string(pemAll(a.chain)) == string(pemAll(cur.chain)) {
		return false, nil
	}
	if !a.pool.Equal(cur.pool) {
		inter := x509.NewCertPool()
		for _, c := range cur.chain[1:] {
			inter.AddCert(c)
		}
		if _, err := cur.chain[0].Verify(x509.VerifyOptions{Roots: a.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			// Allowed (the user may mean to cut the old root off), but
			// every workload certificate issued until now stops verifying.
			ca.log.Warn("the new plug-in CA's root-cert.pem does not trust the previous CA: certificates issued until now are refused from here on; to rotate without breaking connections, put the old and new roots in root-cert.pem until every workload has renewed", "dir", dir)
		}
	}
	if err := ca.switchTo(cur, a); err != nil {
		return false, err
	}
	ca.log.Info("CA reloaded the plug-in CA; new certificates come from it", "dir", dir, "subject", a.signer.Subject.String(), "expires", a.notAfter, "roots trusted", len(a.roots))
	return true, nil
}

// WatchPlugin looks at the plug-in CA's files every interval until ctx
// ends and reloads them once a change has settled (the same contents at
// two looks in a row, so a set being copied in file by file is not read
// half-way). A set that does not hang together is logged at Error level,
// once per version of the files, and the current CA stays.
func (ca *CA) WatchPlugin(ctx context.Context, interval time.Duration) error {
	dir := ca.opts.PluginDir
	if dir == "" {
		return errors.New("CA: not a plug-in CA: there are no files to watch")
	}
	if interval <= 0 {
		return fmt.Errorf("CA: the plug-in CA check interval must be positive, not %s", interval)
	}
	// The files as last reloaded: unknown at first, so the first settled
	// look reloads (a no-op unless they changed since NewCA read them).
	var loaded [sha256.Size]byte
	last := pluginFingerprint(dir)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fp := pluginFingerprint(dir)
		settled := fp == last
		last = fp
		if fp == loaded || !settled {
			continue
		}
		loaded = fp
		if _, err := ca.ReloadPlugin(); err != nil {
			ca.log.Error("the plug-in CA's files changed but cannot be used; the CA keeps signing with the previous ones (fix the files and it reloads them)", "dir", dir, "err", err)
		}
	}
}
