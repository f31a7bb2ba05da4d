package meshtest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/sidecar"
)

// WithCA makes the control plane serve its secure port (xDS and Istio's
// CA service over TLS) on a free loopback port, with its CA in memory, so
// that sidecars can get CA-issued identities (Mesh.Identity).
func WithCA() Option {
	return WithControlPlane(func(o *controlplane.Options) {
		if o.SecureXDSAddress == "" && o.SecureXDSListener == nil {
			o.SecureXDSAddress = "127.0.0.1:0"
		}
	})
}

// Identity is a workload certificate from the mesh CA, got and renewed as
// trellis-proxy does with --root-cert and --credential-file.
type Identity struct {
	*certs.Manager
	Namespace, ServiceAccount string
	// RootFile is the proxy's root-cert.pem; CredentialFile holds the
	// per-pod token the control plane issued for this identity (0600).
	RootFile, CredentialFile string
}

// Identity gets a certificate for namespace/serviceAccount from the mesh
// CA (the mesh needs WithCA): the control plane issues a per-pod
// credential, written with its trust bundle to a temporary folder, and a
// certs.Manager asks the CA with them for a lifetime of ttl (0: 24h),
// then renews it at half life until the test ends. It returns once the
// first certificate is issued. Give it to a sidecar with
// Mesh.WithIdentity.
func (m *Mesh) Identity(namespace, serviceAccount string, ttl time.Duration) *Identity {
	m.t.Helper()
	cp := m.ControlPlane()
	if cp.SecureAddr() == nil {
		m.t.Fatal("meshtest: Identity needs the control plane's secure port: meshtest.New(t, config, meshtest.WithCA())")
	}
	tok, err := cp.IssueCredential(namespace, serviceAccount)
	if err != nil {
		m.t.Fatalf("meshtest: issuing a credential for %s/%s: %v", namespace, serviceAccount, err)
	}
	dir := m.t.TempDir()
	id := &Identity{
		Namespace: namespace, ServiceAccount: serviceAccount,
		RootFile:       filepath.Join(dir, "root-cert.pem"),
		CredentialFile: filepath.Join(dir, "credential"),
	}
	if err := os.WriteFile(id.CredentialFile, []byte(tok), 0o600); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(id.RootFile, cp.RootCertPEM(), 0o600); err != nil {
		m.t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("TRELLIS_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("identity", namespace+"/"+serviceAccount)
	}
	mgr, err := certs.NewManager(certs.ManagerOptions{
		CA:             cp.SecureAddr().String(),
		RootCertFile:   id.RootFile,
		CredentialFile: id.CredentialFile,
		TTL:            ttl,
		SPIFFEID:       cp.Identity(namespace, serviceAccount).String(),
		RetryInitial:   20 * time.Millisecond,
		RetryMax:       200 * time.Millisecond,
		CallTimeout:    5 * time.Second,
		Log:            log,
	})
	if err != nil {
		m.t.Fatalf("meshtest: %v", err)
	}
	id.Manager = mgr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); mgr.Run(ctx) }()
	m.t.Cleanup(func() { cancel(); <-done })
	select {
	case <-mgr.Ready():
	case <-time.After(10 * time.Second):
		m.t.Fatalf("meshtest: no certificate for %s/%s within 10s: %v", namespace, serviceAccount, mgr.Err())
	}
	return id
}

// WithIdentity is a Sidecar option: the sidecar uses id as its workload
// certificate (mesh mTLS through the tunnel port) and speaks xDS over
// mTLS on the secure port with it, as trellis-proxy with --root-cert does;
// its node's namespace and service account are id's, as the control plane
// requires there.
func (m *Mesh) WithIdentity(id *Identity) func(*sidecar.Options) {
	addr := m.ControlPlane().SecureAddr().String()
	return func(o *sidecar.Options) {
		o.Identity = id.Manager
		o.XDS = addr
		o.XDSTLS = certs.ControlPlaneConfig(id.Manager)
		o.Node.Namespace = id.Namespace
		o.Node.ServiceAccount = id.ServiceAccount
	}
}

// PublishRoots writes the CA's current trust bundle to the root files of
// ids, as the mesh distributes it after a root rotation (trellis up
// rewrites each pod's root-cert.pem; Kubernetes, the istio-ca-root-cert
// ConfigMap). Each Manager reads it again at its next renewal.
func (m *Mesh) PublishRoots(ids ...*Identity) {
	m.t.Helper()
	pem := m.ControlPlane().RootCertPEM()
	for _, id := range ids {
		// Atomically, as a ConfigMap volume is updated: a Manager never
		// reads half a file.
		tmp := id.RootFile + ".tmp"
		if err := os.WriteFile(tmp, pem, 0o600); err != nil {
			m.t.Fatal(err)
		}
		if err := os.Rename(tmp, id.RootFile); err != nil {
			m.t.Fatal(err)
		}
	}
}
