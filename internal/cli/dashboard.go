package cli

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/spf13/cobra"
)

func newDashboardCmd() *cobra.Command {
	var (
		stateDir string
		noOpen   bool
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Open the web dashboard of a running local mesh",
		Long: `Dashboard prints the address of the web dashboard that 'trellis up' serves
(on 127.0.0.1; choose it with 'trellis up --dashboard-addr') and opens it in
your browser with xdg-open when there is one.

The dashboard shows the live service graph (workloads, the traffic between
them coloured by success rate, a lock on mutual-TLS edges), each service's
request rate, success rate and p50/p99 latency over the last minute, each
sidecar's config versions and sync state, the policies in force for each
workload and the newest requests from the sidecars' access logs. It reads
the sidecars' own metrics (no Prometheus needed) and works offline.`,
		Example: `  trellis dashboard
  trellis dashboard --no-open   # print the address only`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageError(cmd, errors.New("dashboard takes no arguments"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := runningMesh(stateDir)
			if err != nil {
				return err
			}
			if st.Dashboard == "" {
				return errors.New("this mesh serves no dashboard: restart it with `trellis up` without --dashboard-addr=off")
			}
			fmt.Fprintln(cmd.OutOrStdout(), st.Dashboard)
			if noOpen {
				return nil
			}
			if xdg, err := exec.LookPath("xdg-open"); err == nil {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				defer cancel()
				// A failing opener is not the command failing: the
				// address is printed.
				_ = exec.CommandContext(ctx, xdg, st.Dashboard).Run()
			}
			return nil
		},
	}
	stateDirFlag(cmd, &stateDir)
	cmd.Flags().BoolVar(&noOpen, "no-open", false, "print the address without opening a browser")
	return cmd
}
