package cli

import (
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/demo"
)

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo SERVICE",
		Short: "Run one of the shop demo's services (what examples/shop's pods run)",
		Long: `Run one service of the shop demo. The services are built into trellis so that
the demo's pods need no other build: a Deployment's container says
command: [trellis, demo, reviews].

Each service serves plain HTTP on $POD_IP:9080 (POD_IP defaulting to
127.0.0.1; --listen overrides), answers /healthz for readiness probes, calls
its upstreams by their mesh names through $HTTP_PROXY when set, and stops
cleanly on SIGTERM or Ctrl-C. See docs/demo.md for each one's endpoints and
environment.`,
		Example: `  # The reviews service, version 3 (red stars), on its own
  VERSION=v3 RATINGS_URL=http://127.0.0.1:9081 trellis demo reviews --listen 127.0.0.1:9082

  # The ratings it asks
  trellis demo ratings --listen 127.0.0.1:9081`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			errOut := cmd.ErrOrStderr()
			if len(args) == 0 {
				fmt.Fprintln(errOut, "error: name the demo service to run, e.g. trellis demo reviews")
			} else {
				fmt.Fprintf(errOut, "error: unknown demo service %q\n", args[0])
			}
			printDemoServices(errOut)
			return exitCode(2)
		},
	}
	for _, s := range demo.Services() {
		var listen string
		sub := &cobra.Command{
			Use:   s.Name,
			Short: s.Summary,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return demo.Run(cmd.Context(), s.Name, demo.Options{Listen: listen, Logger: slog.Default()})
			},
		}
		if s.Serves {
			sub.Flags().StringVar(&listen, "listen", "", "address to serve on (default $POD_IP:9080, POD_IP defaulting to 127.0.0.1)")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func printDemoServices(w io.Writer) {
	fmt.Fprintln(w, "\nDemo services:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range demo.Services() {
		fmt.Fprintf(tw, "  %s\t%s\n", s.Name, s.Summary)
	}
	tw.Flush()
}
