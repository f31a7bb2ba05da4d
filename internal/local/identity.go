package local

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Workload identity in local mode. The control plane's CA serves on a
// Unix socket in the state dir (secureSocket, with xDS: the secure port);
// each pod's sidecar gets its own credential, bound by the CA to exactly
// spiffe://<trust domain>/ns/<pod namespace>/sa/<service account>, in a
// 0600 file under the pod's own folder, and only that sidecar is told its
// path. The sidecar makes its key, gets and renews its certificate with it
// and speaks xDS over mTLS; the credential is revoked when the pod is
// gone. The state dir holds the credentials and the root; the proxies'
// keys never touch the disk.

// secureSocketName is the secure port's socket in the state dir.
const secureSocketName = "xds-tls.sock"

// rootCertName is the mesh root, as Istio names the file sidecars trust.
const rootCertName = "root-cert.pem"

// caDirName keeps the CA's root across runs of trellis up.
const caDirName = "ca"

// podsDirName holds a folder per pod with what only its sidecar reads.
const podsDirName = "pods"

// identityDir is the pod's own folder for its credential.
func (p *pod) identityDir() string {
	return filepath.Join(p.s.stateDir, podsDirName, p.w.Namespace, p.name)
}

// sidecarIdentity issues the pod's credential, writes it and the mesh
// root to the state dir and returns the sidecar's env naming them; nil
// when the control plane serves no secure port. Until the sidecar has its
// first certificate it does not connect to xDS, so the pod waits.
func (p *pod) sidecarIdentity() []string {
	cp := p.s.cp
	if cp == nil {
		return nil // a pod planned without a control plane (unit tests)
	}
	addr := cp.SecureAddr()
	if addr == nil {
		return nil
	}
	sa := cmp.Or(p.w.Pod.ServiceAccount, "default")
	env, err := p.writeIdentity(sa)
	if err != nil {
		// The sidecar then has no credential and says so in its log,
		// and the pod stays not ready: safer than plaintext.
		p.s.console.printf("pod %s: cannot give its sidecar an identity: %v", p.key(), err)
	}
	return env
}

func (p *pod) writeIdentity(sa string) ([]string, error) {
	cp := p.s.cp
	target := "unix://" + cp.SecureAddr().String()
	root := filepath.Join(p.s.stateDir, rootCertName)
	env := []string{
		"XDS_ADDRESS=" + target,
		"CA_ADDR=" + target,
		"XDS_ROOT_CA=" + root,
		"TRUST_DOMAIN=" + cp.TrustDomain(),
	}
	// Written at each pod start, so a rotated root reaches new sidecars.
	if err := writePrivate(root, cp.RootCertPEM()); err != nil {
		return env, err
	}
	tok, err := cp.IssueCredential(p.w.Namespace, sa)
	if err != nil {
		return env, fmt.Errorf("spiffe://%s/ns/%s/sa/%s: %w", cp.TrustDomain(), p.w.Namespace, sa, err)
	}
	p.credential = tok
	p.identity = "spiffe://" + cp.TrustDomain() + "/ns/" + p.w.Namespace + "/sa/" + sa
	dir := p.identityDir()
	if err := os.MkdirAll(dir, stateDirMode); err != nil {
		return env, fmt.Errorf("cannot create the pod's state folder: %w", err)
	}
	cred := filepath.Join(dir, "credential")
	if err := writePrivate(cred, []byte(tok+"\n")); err != nil {
		return env, err
	}
	return append(env, "TRELLIS_CREDENTIAL_FILE="+cred), nil
}

// releaseIdentity revokes the pod's credential and removes its folder:
// the pod is gone, and nothing may get its identity any more.
func (p *pod) releaseIdentity() {
	if p.credential != "" {
		p.s.cp.RevokeCredential(p.credential)
	}
	_ = os.RemoveAll(p.identityDir())
}

// clearPodIdentities removes credentials left by an earlier trellis up:
// the control plane that issued them is gone and they authenticate
// nothing, but they are still tokens on disk.
func clearPodIdentities(stateDir string) error {
	err := os.RemoveAll(filepath.Join(stateDir, podsDirName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove the old pod credentials: %w", err)
	}
	return nil
}

// writePrivate writes a 0600 file whole: written aside and renamed, so a
// sidecar reading it never sees half of it.
func writePrivate(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(stateFileMode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}
