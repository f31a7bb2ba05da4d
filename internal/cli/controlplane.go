package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/controlplane"
)

func newControlPlaneCmd() *cobra.Command {
	var (
		configDir string
		recursive bool
		xdsAddr   string
		secure    string
		caDir     string
		pluginCA  string
		certTTL   time.Duration
		maxTTL    time.Duration
		domain    string
		rootTTL   time.Duration
		rootCheck time.Duration
		rootGrace int
		monitor   string
	)
	cmd := &cobra.Command{
		Use:   "controlplane --config DIR",
		Short: "Run the control plane: watch a config folder and serve it over xDS",
		Long: `Run the control plane. It reads the config folder (as 'trellis validate'
does), serves Envoy xDS v3 ADS to sidecars and proxyless gRPC clients, and
pushes every change to the folder within a second. An invalid edit is logged
with its path-rooted error and the last good version of the object stays in
force.

Fields that are accepted but not in force yet are logged as TRL0007 warnings
("config not in force") whenever their file is read. PeerAuthentication,
AuthorizationPolicy, RequestAuthentication and DestinationRule tls are
enforced by the sidecars; a security field that is not (docs/config.md
lists them, e.g. a DestinationRule's credentialName) is logged at
Error level ("SECURITY POLICY NOT ENFORCED", with the policy, its file and
the field) at start and after every config change.

The plaintext xDS port (--xds-address) is for loopback and tests. The
secure port (--secure-xds-address, Istio's 15012) serves xDS and Istio's CA
service (istio.v1.auth.IstioCertificateService) over TLS. Its certificate
comes from the mesh CA: a self-signed root kept in --ca-dir (made on first
start; root-cert.pem there is the trust bundle sidecars trust), or your own
intermediate in --plugin-ca-dir (Istio's ca-cert.pem, ca-key.pem,
root-cert.pem, cert-chain.pem; sidecars trust its root-cert.pem).

Roots rotate as in Istio. A self-signed root is checked every
--self-signed-root-check-interval and replaced once less than
--self-signed-root-grace-percent of its life is left; the old root stays
in root-cert.pem until it expires, so certificates it issued keep
verifying. A plug-in CA's files are watched: replace them (root-cert.pem
holding the old and the new root while workloads move over) and the CA
signs with the new ones within seconds; a set that does not hang together
is logged at Error level and the CA keeps the one it had. Proxies get certificates with a per-pod
credential or by renewing with their current certificate; xDS on the secure
port needs a mesh certificate, and a proxy's namespace and service account
are its certificate's.

Prometheus metrics are served over plain HTTP at /metrics on
--monitoring-addr (istiod's monitoring port, 15014), under istiod's names
(pilot_xds_pushes, pilot_proxy_convergence_time, pilot_xds,
pilot_total_xds_rejects, citadel_server_csr_count, ...), so Istio's
control-plane dashboards read them unchanged; docs/observability.md lists
them. --monitoring-addr "" serves none.`,
		Example: `  trellis controlplane --config examples/config
  trellis controlplane --config ./mesh -R --xds-address 127.0.0.1:15010`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configDir == "" {
				return usageError(cmd, fmt.Errorf("--config is required"))
			}
			cp, err := controlplane.Start(cmd.Context(), controlplane.Options{
				ConfigPaths: []string{configDir},
				Recursive:   recursive,
				XDSAddress:  xdsAddr,

				SecureXDSAddress: secure,
				CADir:            caDir,
				PluginCADir:      pluginCA,
				CertTTL:          certTTL,
				MaxCertTTL:       maxTTL,
				TrustDomain:      domain,

				RootTTL:                rootTTL,
				RootCheckInterval:      rootCheck,
				RootGracePeriodPercent: rootGrace,

				MonitoringAddress: monitor,
			})
			if err != nil {
				return err
			}
			return cp.Wait()
		},
	}
	cmd.Flags().StringVar(&configDir, "config", "", "folder (or file) of mesh config to watch")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "also read subfolders of --config")
	cmd.Flags().StringVar(&xdsAddr, "xds-address", "127.0.0.1:15010", "plaintext xDS listen address (loopback and tests only)")
	cmd.Flags().StringVar(&secure, "secure-xds-address", controlplane.DefaultSecureXDSAddress, "TLS listen address for xDS and the CA (Istio's 15012); empty serves none")
	cmd.Flags().StringVar(&caDir, "ca-dir", defaultCADir(), "folder that keeps the CA's self-signed root (created 0700, files 0600); empty keeps it in memory only")
	cmd.Flags().StringVar(&pluginCA, "plugin-ca-dir", "", "your own CA in Istio's plug-in layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); replaces --ca-dir")
	cmd.Flags().DurationVar(&certTTL, "cert-ttl", 24*time.Hour, "lifetime of a workload certificate when the proxy asks for none")
	cmd.Flags().DurationVar(&maxTTL, "max-cert-ttl", 90*24*time.Hour, "longest workload certificate lifetime a proxy may ask for")
	cmd.Flags().DurationVar(&rootTTL, "self-signed-root-ttl", 0, "lifetime of a new self-signed root (default: $CITADEL_SELF_SIGNED_CA_CERT_TTL, else 87600h)")
	cmd.Flags().DurationVar(&rootCheck, "self-signed-root-check-interval", 0, "how often the self-signed root is checked for rotation; negative turns rotation off (default: $CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL, else 1h)")
	cmd.Flags().IntVar(&rootGrace, "self-signed-root-grace-percent", 0, "rotate the self-signed root once less than this percentage of its life is left (default: $CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE, else 20)")
	cmd.Flags().StringVar(&monitor, "monitoring-addr", controlplane.DefaultMonitoringAddress, "address serving Prometheus metrics at /metrics (istiod's monitoring port); empty serves none")
	cmd.Flags().StringVar(&domain, "trust-domain", "", "SPIFFE trust domain (default: MeshConfig trustDomain, else cluster.local)")
	return cmd
}

// defaultCADir is where `trellis controlplane` keeps its root unless told
// otherwise: the user's state directory (XDG), so a restart keeps trusting
// the certificates it issued.
func defaultCADir() string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "trellis", "ca")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".local", "state", "trellis", "ca")
}
