package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/controlplane"
)

func newControlPlaneCmd() *cobra.Command {
	var (
		configDir string
		recursive bool
		xdsAddr   string
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
("config not in force") whenever their file is read. Security policies that
are not enforced yet (AuthorizationPolicy, RequestAuthentication, STRICT
PeerAuthentication) are logged at Error level ("SECURITY POLICY NOT
ENFORCED") at start and after every config change.

The xDS port is plaintext: keep it on loopback.`,
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
	return cmd
}
