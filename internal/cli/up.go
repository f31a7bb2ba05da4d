package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/local"
)

func newUpCmd() *cobra.Command {
	var (
		recursive   bool
		stateDir    string
		timeout     time.Duration
		transparent bool
		pluginCA    string
		dashAddr    string
		profile     string
	)
	cmd := &cobra.Command{
		Use:   "up DIR",
		Short: "Run a folder of Kubernetes manifests as a mesh on this machine",
		Long: `Up reads Deployments, Services and ServiceAccounts plus mesh config (Istio,
SMI, Gateway API) from DIR, checks them as 'trellis validate' does (printing
what is not in force yet, and security fields not enforced as NOT
ENFORCED), and runs the mesh locally: a control plane in this process and,
for every Deployment, its pods as local processes (each container's command
and args; the image is ignored) plus a trellis-proxy sidecar per pod. Each
sidecar gets a certificate for its pod's service account from the control
plane's CA and talks mTLS to the other sidecars; PeerAuthentication,
AuthorizationPolicy and RequestAuthentication are enforced by the sidecars.
In explicit mode nothing is captured, so a local process can still reach an
app's port directly; --transparent closes that gap.

Each pod gets its own IP from 127.10.0.0/16. Apps bind $POD_IP (set it with
a fieldRef to status.podIP) and reach other services through their sidecar,
which HTTP_PROXY points at. With --transparent (root), each pod is a network
namespace on a private bridge instead (10.244.0.0/16), Services get VIPs
(10.96.0.0/16) and DNS names, and the sidecar captures traffic as in
Kubernetes; nothing outside the mesh's namespaces is touched. Once every pod is ready and every sidecar has
its config, a line "mesh ready" is printed. Edits to DIR apply live; a
changed Deployment rolls its pods.

Certificates come from a self-signed root kept in the state dir, or, with
--plugin-ca-dir, from your own intermediate in Istio's plug-in layout
(ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem), checked before
any pod starts. Replace those files (root-cert.pem holding the old and the
new root while sidecars move over) and the running mesh signs with the new
ones within seconds. Either way <state>/root-cert.pem is the bundle the
sidecars trust. Istio's MAX_WORKLOAD_CERT_TTL caps the sidecars'
certificate lifetime (renewed at half of it).

--profile picks the starting point. default (the default) serves the
folder's config and nothing else: no PeerAuthentication means PERMISSIVE,
as in Istio. minimal adds one mesh-wide PERMISSIVE PeerAuthentication
(istio-system/` + local.ProfilePeerAuthenticationName + `, kept in the state
dir) so the mesh's mTLS mode is in config from the start. Your namespace
and workload PeerAuthentications win over it, and so does a mesh-wide one
named before it (the first mesh-wide policy by name is in force), such as
istio-system/default. Neither profile adds routing, retries beyond Istio's
defaults, or authorization, and both serve every file in DIR. Istio's metrics are on
in both. See docs/adoption.md.

Ctrl-C stops every process and exits 0. The mesh's state (logs, sockets)
lives in the state dir, where 'trellis status', 'exec', 'logs' and 'down'
find it.`,
		Example: `  # Run the demo mesh
  trellis up examples/shop

  # Then, from another terminal
  trellis exec sleep -- curl -s http://reviews:9080/reviews/0

  # Phase 1 of docs/adoption.md: observability only, mesh-wide PERMISSIVE
  trellis up --profile minimal examples/adoption/1-observability`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(cmd, errors.New("name one folder of manifests, e.g. trellis up examples/shop"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := local.ValidProfile(profile); err != nil {
				return usageError(cmd, err)
			}
			// Same checks, same messages, as trellis validate.
			if code := runValidate(cmd.Context(), out, errOut, args, recursive); code != 0 {
				fmt.Fprintln(errOut, "not starting: fix the errors above")
				return exitCode(code)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			err := local.Up(ctx, local.Options{
				Dir: args[0], Recursive: recursive, StateDir: stateDir, Timeout: timeout,
				Out: out, Console: errOut, Log: slog.Default(), Transparent: transparent,
				PluginCADir: pluginCA, Profile: profile, DashboardAddr: dashAddr,
			})
			var pe local.PlanErrors
			if errors.As(err, &pe) {
				for _, e := range pe {
					fmt.Fprintln(errOut, e)
				}
				fmt.Fprintln(errOut, "not starting: these manifests cannot run in local mode")
				return exitCode(1)
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "also read the subfolders of DIR")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "where the mesh keeps its state (default $"+local.StateDirEnv+" or ./.trellis)")
	cmd.Flags().BoolVar(&transparent, "transparent", false, "run pods in network namespaces with traffic captured by nftables, Service VIPs and mesh DNS, as in Kubernetes (root, Linux)")
	cmd.Flags().StringVar(&pluginCA, "plugin-ca-dir", "", "your own intermediate CA in Istio's plug-in layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) instead of the state dir's self-signed root; replaced files are reloaded")
	cmd.Flags().StringVar(&profile, "profile", local.ProfileDefault, "starting config: default (the folder's config only) or minimal (plus mesh-wide PERMISSIVE mTLS, which your PeerAuthentications override); see docs/adoption.md")
	cmd.Flags().StringVar(&dashAddr, "dashboard-addr", "", "where the web dashboard listens (default 127.0.0.1 on a free port, printed at start; \"off\" for none); trellis dashboard opens it")
	cmd.Flags().DurationVar(&timeout, "timeout", 120*time.Second, "fail if the mesh is not ready within this time")
	return cmd
}
