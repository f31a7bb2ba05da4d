package local

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// Workload identity in local mode. The control plane's CA serves on a
// Unix socket in the state dir (secureSocket, with xDS: the secure port).
// Each start of a pod's sidecar process gets a new single-use credential,
// bound by the CA to exactly spiffe://<trust domain>/ns/<pod
// namespace>/sa/<service account>, through a pipe only that process
// inherits (credentialFD): it never touches the disk or an environment,
// so no other process finds it in the state dir, and once the sidecar
// has its first certificate it is spent, so a copy taken later gets
// nothing. The sidecar makes its key, gets its certificate with the
// credential, renews with the certificate and speaks xDS over mTLS; a
// start's credential is revoked at the next start and when the pod is
// gone. The state dir holds the trust bundle (root-cert.pem, kept
// current by the control plane through root rotations); the proxies'
// keys never touch the disk.

// secureSocketName is the secure port's socket in the state dir.
const secureSocketName = "xds-tls.sock"

// rootCertName is the mesh root, as Istio names the file sidecars trust.
const rootCertName = "root-cert.pem"

// caDirName keeps the CA's root across runs of trellis up.
const caDirName = "ca"

// podsDirName holds a folder per pod with what only its workloads read:
// a proxyless pod's certificate files (proxyless.go). Versions before
// single-use credentials kept sidecars' credential files there too.
const podsDirName = "pods"

// credentialFD is the descriptor the sidecar reads its credential from:
// the first of exec.Cmd.ExtraFiles.
const credentialFD = 3

// identityDir is the pod's own folder in the state dir.
func (p *pod) identityDir() string {
	return filepath.Join(p.s.stateDir, podsDirName, p.w.Namespace, p.name)
}

// sidecarIdentity writes the mesh root to the state dir and returns the
// sidecar's env naming it, the CA and the credential's descriptor; nil
// when the control plane serves no secure port. Until the sidecar has its
// first certificate it does not connect to xDS, so the pod waits.
func (p *pod) sidecarIdentity() []string {
	cp := p.s.cp
	if cp == nil {
		return nil // a pod planned without a control plane (unit tests)
	}
	if cp.SecureAddr() == nil {
		return nil
	}
	sa := cmp.Or(p.w.Pod.ServiceAccount, "default")
	target := "unix://" + cp.SecureAddr().String()
	root := filepath.Join(p.s.stateDir, rootCertName)
	env := []string{
		"XDS_ADDRESS=" + target,
		"CA_ADDR=" + target,
		"XDS_ROOT_CA=" + root,
		"TRUST_DOMAIN=" + cp.TrustDomain(),
		"TRELLIS_CREDENTIAL_FD=" + strconv.Itoa(credentialFD),
	}
	p.identity = cp.Identity(p.w.Namespace, sa).String()
	// root is the control plane's to write (Options.RootCertFile): at
	// start and whenever the bundle changes, before anything is signed
	// under it (a rotation), so every sidecar's next handshake trusts the
	// new root. A write here could put back a bundle older than the one
	// being published.
	return env
}

// sidecarCredential issues a new single-use credential for a start of
// the sidecar process, revoking the previous start's, and returns it as
// the process's ExtraFiles: the read end of a pipe holding the token,
// whose write end is already closed. The caller closes the files once
// the process has started (or failed to).
func (p *pod) sidecarCredential() ([]*os.File, error) {
	cp := p.s.cp
	if cp == nil || cp.SecureAddr() == nil || cp.CA() == nil {
		return nil, nil
	}
	id := cp.Identity(p.w.Namespace, cmp.Or(p.w.Pod.ServiceAccount, "default"))
	tok, err := cp.CA().Credentials.IssueOnce(id)
	if err != nil {
		return nil, fmt.Errorf("credential for %s: %w", id, err)
	}
	p.mu.Lock()
	prev := p.credential
	p.credential = tok
	p.mu.Unlock()
	if prev != "" {
		cp.RevokeCredential(prev)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("cannot make the pipe for the sidecar's credential: %w", err)
	}
	// Tens of bytes: the pipe's buffer takes them without a reader.
	_, err = io.WriteString(w, tok+"\n")
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("cannot write the sidecar's credential to its pipe: %w", err)
	}
	return []*os.File{r}, nil
}

// releaseIdentity revokes the pod's credential and removes its folder:
// the pod is gone, and nothing may get its identity any more.
func (p *pod) releaseIdentity() {
	p.mu.Lock()
	tok := p.credential
	p.credential = ""
	p.mu.Unlock()
	if tok != "" {
		p.s.cp.RevokeCredential(tok)
	}
	_ = os.RemoveAll(p.identityDir())
}

// clearPodIdentities removes what an earlier trellis up left in the
// pods folder: proxyless pods' certificate files, and the credential
// files of versions before single-use credentials. The control plane
// that issued them is gone and they authenticate nothing, but they are
// still secrets on disk.
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
