package controlplane

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellismesh/trellis/internal/identity"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/xds"
)

// DefaultSecureXDSAddress is Istio's secure xDS and CA port, on loopback.
const DefaultSecureXDSAddress = "127.0.0.1:15012"

// ServerDNSNames and ServerIPs are the names the secure port's certificate
// carries: Istio's service name for istiod (so Istio-configured clients
// verify it), Trellis's own, and loopback.
var (
	ServerDNSNames = []string{"istiod.istio-system.svc", "trellis-controlplane", "localhost"}
	ServerIPs      = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
)

// ServerServiceAccount is the SPIFFE identity the secure port's certificate
// also carries (Istio's istiod account), so a client that checks SPIFFE
// IDs rather than DNS names can verify the control plane too.
const ServerServiceAccount = "istiod"

// trustDomain is the mesh's trust domain: the override, else MeshConfig's
// trustDomain, else cluster.local.
func trustDomain(override string, st *store.Store) string {
	if override != "" {
		return override
	}
	if td := st.Snapshot().Mesh.GetTrustDomain(); td != "" {
		return td
	}
	return "cluster.local"
}

// newCA builds the mesh CA from the options.
func newCA(opts Options, rot rotation, td string, log *slog.Logger) (*identity.CA, error) {
	var publish func([]byte) error
	if opts.RootCertFile != "" {
		publish = func(b []byte) error { return writeBundle(opts.RootCertFile, b) }
	}
	ca, err := identity.NewCA(identity.CAOptions{
		Dir: opts.CADir, PluginDir: opts.PluginCADir, TrustDomain: td,
		DefaultTTL: opts.CertTTL, MaxTTL: opts.MaxCertTTL, RootTTL: rot.rootTTL,
		Publish: publish, Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot start the CA: %w", err)
	}
	return ca, nil
}

// newSecureServer is the TLS gRPC server of the secure port: the CA
// service for anyone (callers authenticate per request) and ADS for
// proxies with a mesh certificate, their identity taken from it.
func newSecureServer(ca *identity.CA, td string, srv *xds.Server, log *slog.Logger, servingTTL time.Duration, m *cpMetrics) *grpc.Server {
	sc := &identity.ServingCert{
		CA: ca, DNS: ServerDNSNames, IPs: ServerIPs, TTL: servingTTL,
		URIs: []*url.URL{identity.ID{TrustDomain: td, Namespace: "istio-system", ServiceAccount: ServerServiceAccount}.URL()},
	}
	g := grpc.NewServer(append(xds.ServerOptions(),
		grpc.Creds(credentials.NewTLS(ca.ServerTLSConfig(sc))),
		grpc.ChainStreamInterceptor(xds.RequireCertIdentity()),
		grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	srv.Register(g)
	securityv1alpha1.RegisterIstioCertificateServiceServer(g, countingCAService{IstioCertificateServiceServer: identity.NewService(ca, log), m: m})
	return g
}

// CA is the mesh CA. Its Credentials issue and revoke per-pod tokens
// (IssueCredential does it for the current trust domain).
func (cp *ControlPlane) CA() *identity.CA { return cp.ca }

// RootCertPEM is the trust bundle, what a sidecar's root-cert.pem holds.
// It changes when the root rotates.
func (cp *ControlPlane) RootCertPEM() []byte { return cp.ca.RootsPEM() }

// SecureAddr is the secure port's address (xDS and the CA over TLS), nil
// when the control plane serves none.
func (cp *ControlPlane) SecureAddr() net.Addr { return cp.secureAddr }

// TrustDomain is the mesh's trust domain now.
func (cp *ControlPlane) TrustDomain() string { return trustDomain(cp.trustDomainOverride, cp.Store) }

// Identity is the SPIFFE identity of a service account in the current
// trust domain.
func (cp *ControlPlane) Identity(namespace, serviceAccount string) identity.ID {
	return identity.ID{TrustDomain: cp.TrustDomain(), Namespace: namespace, ServiceAccount: serviceAccount}
}

// IssueCredential makes a per-pod token that gets certificates for
// namespace/serviceAccount and nothing else, until RevokeCredential. Hand
// it to that pod's sidecar alone (a 0600 file).
func (cp *ControlPlane) IssueCredential(namespace, serviceAccount string) (string, error) {
	return cp.ca.Credentials.Issue(cp.Identity(namespace, serviceAccount))
}

// RevokeCredential ends a token's use (the pod is gone).
func (cp *ControlPlane) RevokeCredential(token string) { cp.ca.Credentials.Revoke(token) }
