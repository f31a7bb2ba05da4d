// Package filecert gives a proxyless gRPC workload its mesh identity as
// files: it gets a certificate for one identity from the mesh CA, writes
// cert-chain.pem, key.pem and root-cert.pem into a directory, and renews
// them at half their life, as Istio's agent does for proxyless gRPC. grpc-go
// reads them through the file_watcher certificate provider its bootstrap
// names (Bootstrap writes one), which is what the proxyless clusters and
// server listeners Trellis serves refer to (instance "default").
//
// The three files change together: each version lives in a directory of
// its own and the names are symlinks through one "..data" link that is
// swapped with a rename, as the kubelet updates a mounted Secret, so a
// reader never sees a certificate with another version's key or a file
// half written. (grpc-go reads the certificate and the key one after the
// other; if a swap falls between the reads it keeps its current pair and
// reads again at its next refresh.)
package filecert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/trellismesh/trellis/internal/identity"
)

// File names, Istio's.
const (
	CertChainFile = identity.CertChainFile
	KeyFile       = "key.pem"
	RootCertFile  = identity.RootCertFile

	dataLink = "..data"
)

// Issuer signs workload certificates: the mesh CA (*identity.CA) in the
// control plane's process.
type Issuer interface {
	// Sign returns the chain in PEM for the key in csrDER, naming id,
	// leaf first and root last.
	Sign(csrDER []byte, id identity.ID, ttl time.Duration) ([]string, error)
	// RootsPEM is the trust bundle (during a root rotation, old and new).
	RootsPEM() []byte
}

// Options configure a Writer.
type Options struct {
	// Dir receives the files; it is created 0700 if missing.
	Dir string
	// ID is the identity the certificate names.
	ID identity.ID
	CA Issuer
	// TTL is the lifetime asked for; 0 is the CA's default (24h).
	TTL time.Duration
	// RootCheck is how often the trust bundle is compared with the one
	// written, so a root rotation reaches the files without waiting for
	// the next renewal (default 30s).
	RootCheck time.Duration
	Log       *slog.Logger
}

// Writer keeps a directory's identity files current until Close.
type Writer struct {
	opts Options
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	leaf     *x509.Certificate
	next     time.Time // renewal due
	roots    []byte
	renewals int
	lastErr  error
}

// Start writes the files once (an error there is returned: nothing was
// written) and keeps renewing them in the background.
func Start(opts Options) (*Writer, error) {
	if opts.Dir == "" {
		return nil, errors.New("filecert: no directory given for the certificate files")
	}
	if opts.CA == nil {
		return nil, errors.New("filecert: no CA given to issue the certificate")
	}
	if err := opts.ID.Validate(); err != nil {
		return nil, fmt.Errorf("filecert: %w", err)
	}
	if opts.RootCheck <= 0 {
		opts.RootCheck = 30 * time.Second
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Writer{opts: opts, log: log.With("identity", opts.ID.String(), "dir", opts.Dir), stop: make(chan struct{}), done: make(chan struct{})}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("filecert: cannot create %s: %w", opts.Dir, err)
	}
	if err := w.renew(); err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

// Close stops renewing; the files stay.
func (w *Writer) Close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// CertFile, KeyFile and RootFile are the paths grpc-go's file_watcher
// reads.
func (w *Writer) CertFile() string { return filepath.Join(w.opts.Dir, CertChainFile) }

// KeyFile is the private key's path (mode 0600).
func (w *Writer) KeyFile() string { return filepath.Join(w.opts.Dir, KeyFile) }

// RootFile is the trust bundle's path.
func (w *Writer) RootFile() string { return filepath.Join(w.opts.Dir, RootCertFile) }

// Status is what the writer last wrote.
type Status struct {
	Serial    *big.Int
	NotBefore time.Time
	NotAfter  time.Time
	// RenewAt is when the next renewal is due.
	RenewAt time.Time
	// Renewals counts certificates written after the first.
	Renewals int
	// LastError is the last failed renewal's, nil after a success.
	LastError error
}

// Status reports the certificate now in the files.
func (w *Writer) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Status{Serial: w.leaf.SerialNumber, NotBefore: w.leaf.NotBefore, NotAfter: w.leaf.NotAfter,
		RenewAt: w.next, Renewals: w.renewals, LastError: w.lastErr}
}

// renewAt is half the certificate's life, less up to 1% of it at random,
// so workloads started together do not renew together (Istio's rule;
// earlier, never later).
func renewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	jitter := time.Duration(0)
	if n := int64(life / 100); n > 0 {
		if r, err := rand.Int(rand.Reader, big.NewInt(n)); err == nil {
			jitter = time.Duration(r.Int64())
		}
	}
	return c.NotBefore.Add(life/2 - jitter)
}

func (w *Writer) run() {
	defer close(w.done)
	w.mu.Lock()
	next := w.next
	w.mu.Unlock()
	backoff := time.Second
	check := time.NewTicker(w.opts.RootCheck)
	defer check.Stop()
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-check.C:
			w.mu.Lock()
			same := bytes.Equal(w.roots, w.opts.CA.RootsPEM())
			w.mu.Unlock()
			if same {
				continue
			}
			w.log.Info("the mesh trust bundle changed; renewing the certificate files")
		case <-timer.C:
		}
		if err := w.renew(); err != nil {
			w.mu.Lock()
			w.lastErr = err
			expires := w.leaf.NotAfter
			w.mu.Unlock()
			w.log.Warn("cannot renew the workload certificate; retrying", "err", err, "retry in", backoff, "current certificate expires", expires)
			timer.Reset(backoff)
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		w.mu.Lock()
		next = w.next
		w.mu.Unlock()
		timer.Reset(time.Until(next))
	}
}

// renew makes a key, has the CA sign it and writes the new version.
func (w *Writer) renew() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("filecert: cannot make a key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("filecert: cannot make a certificate request: %w", err)
	}
	roots := w.opts.CA.RootsPEM()
	chain, err := w.opts.CA.Sign(csr, w.opts.ID, w.opts.TTL)
	if err != nil {
		return fmt.Errorf("filecert: the CA refused a certificate for %s: %w", w.opts.ID, err)
	}
	if len(chain) == 0 {
		return fmt.Errorf("filecert: the CA returned no certificate for %s", w.opts.ID)
	}
	blk, _ := pem.Decode([]byte(chain[0]))
	if blk == nil {
		return fmt.Errorf("filecert: the CA returned a certificate that is not PEM")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("filecert: the CA returned an unreadable certificate: %w", err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("filecert: %w", err)
	}
	// The chain file holds the leaf and intermediates; the root is what
	// root-cert.pem vouches for, as Istio writes them.
	certs := chain
	if len(chain) > 1 {
		certs = chain[:len(chain)-1]
	}
	files := map[string][]byte{
		CertChainFile: []byte(strings.Join(certs, "")),
		KeyFile:       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}),
		RootCertFile:  roots,
	}
	if err := writeVersion(w.opts.Dir, files); err != nil {
		return err
	}
	w.mu.Lock()
	if w.leaf != nil {
		w.renewals++
	}
	w.leaf, w.roots, w.lastErr = leaf, roots, nil
	w.next = renewAt(leaf)
	w.mu.Unlock()
	w.log.Info("wrote workload certificate files", "serial", leaf.SerialNumber.Text(16), "expires", leaf.NotAfter)
	return nil
}

// writeVersion writes files into a new version directory, points ..data
// at it with one rename and removes older versions.
func writeVersion(dir string, files map[string][]byte) error {
	vdir, err := os.MkdirTemp(dir, "..version-")
	if err != nil {
		return fmt.Errorf("filecert: cannot write to %s: %w", dir, err)
	}
	fail := func(err error) error {
		os.RemoveAll(vdir)
		return fmt.Errorf("filecert: cannot write to %s: %w", dir, err)
	}
	for name, data := range files {
		mode := os.FileMode(0o644)
		if name == KeyFile {
			mode = 0o600
		}
		if err := writeFile(filepath.Join(vdir, name), data, mode); err != nil {
			return fail(err)
		}
	}
	if err := replaceLink(dir, dataLink, filepath.Base(vdir)); err != nil {
		return fail(err)
	}
	for name := range files {
		if target, err := os.Readlink(filepath.Join(dir, name)); err == nil && target == filepath.Join(dataLink, name) {
			continue
		}
		if err := replaceLink(dir, name, filepath.Join(dataLink, name)); err != nil {
			return fmt.Errorf("filecert: cannot write to %s: %w", dir, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // the new version is in place; old ones stay until next time
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..version-") && e.Name() != filepath.Base(vdir) {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// replaceLink makes dir/name a symlink to target, atomically replacing
// what was there.
func replaceLink(dir, name, target string) error {
	tmp := filepath.Join(dir, ".."+name+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// BootstrapOptions describe grpc-go's bootstrap.
type BootstrapOptions struct {
	// XDSAddress is the control plane's xDS address: plaintext (15010),
	// or with SecureXDS its secure port (15012).
	XDSAddress string
	// SecureXDS speaks xDS over mTLS with the workload's own files (the
	// control plane verified against root-cert.pem, the workload by its
	// certificate, which then decides its namespace and service account,
	// as for sidecars).
	SecureXDS bool
	// NodeID is Istio's node id, sidecar~IP~POD.NS~NS.svc.cluster.local:
	// the IP is the one the workload's xDS-enabled servers listen on.
	NodeID string
	// Metadata is the node's (GENERATOR grpc is added; NAMESPACE, LABELS
	// with security.istio.io/tlsMode: istio for a workload with an
	// identity, SERVICE_ACCOUNT).
	Metadata map[string]any
	// RefreshInterval is how often grpc-go rereads the files (default
	// 15 minutes, Istio's); keep it well under half the certificate's life.
	RefreshInterval time.Duration
}

// Bootstrap is grpc-go's bootstrap JSON for a workload whose identity
// files are in dir: the xDS server, the node, the "default" file_watcher
// certificate provider over dir's files, and the server listener name
// template that Trellis's server listeners answer.
func Bootstrap(dir string, o BootstrapOptions) ([]byte, error) {
	if o.XDSAddress == "" || o.NodeID == "" {
		return nil, errors.New("filecert: a bootstrap needs the xDS address and the node id")
	}
	refresh := o.RefreshInterval
	if refresh <= 0 {
		refresh = 15 * time.Minute
	}
	md := map[string]any{}
	for k, v := range o.Metadata {
		md[k] = v
	}
	md["GENERATOR"] = "grpc"
	files := map[string]any{
		"certificate_file":    filepath.Join(dir, CertChainFile),
		"private_key_file":    filepath.Join(dir, KeyFile),
		"ca_certificate_file": filepath.Join(dir, RootCertFile),
		"refresh_interval":    durationJSON(refresh),
	}
	creds := map[string]any{"type": "insecure"}
	if o.SecureXDS {
		creds = map[string]any{"type": "tls", "config": files}
	}
	b := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      o.XDSAddress,
			"channel_creds":   []any{creds},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": o.NodeID, "metadata": md},
		"certificate_providers": map[string]any{
			"default": map[string]any{
				"plugin_name": "file_watcher",
				"config":      files,
			},
		},
		"server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
	}
	return json.MarshalIndent(b, "", "  ")
}

// durationJSON is a duration as protobuf's JSON writes it ("1.5s").
func durationJSON(d time.Duration) string {
	s := fmt.Sprintf("%.9f", d.Seconds())
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "s"
}
