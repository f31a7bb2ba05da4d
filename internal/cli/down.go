package cli

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/local"
)

func newDownCmd() *cobra.Command {
	var (
		stateDir string
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop a running local mesh",
		Long: `Down stops the 'trellis up' that runs on the state dir, as Ctrl-C in its
terminal would: it sends SIGTERM, and 'trellis up' drains its pods, stops
every process it started and exits. Down waits until it has exited and
released the state dir. When no mesh runs there, it says so and exits 0.`,
		Example: `  trellis down
  trellis down --state-dir /tmp/mesh2 --timeout 2m`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageError(cmd, errors.New("down takes no arguments; it stops the mesh of the state dir (--state-dir or $"+local.StateDirEnv+")"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			sd := stateDirOr(stateDir)
			out := cmd.OutOrStdout()
			st, err := local.ReadState(sd)
			if err != nil {
				return err
			}
			if !st.Running() {
				fmt.Fprintf(out, "no mesh is running on state dir %s: nothing to stop\n", sd)
				return nil
			}
			fmt.Fprintf(out, "stopping the mesh from %s (trellis up, pid %d)\n", st.Dir, st.PID)
			// Running checked the start time just now, so the PID is
			// still that `trellis up`'s.
			if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil {
				if errors.Is(err, syscall.ESRCH) {
					fmt.Fprintln(out, "mesh stopped")
					return nil
				}
				return fmt.Errorf("cannot signal trellis up (pid %d): %w", st.PID, err)
			}
			deadline := time.Now().Add(timeout)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				locked, err := local.Locked(sd)
				if err != nil {
					return fmt.Errorf("cannot check the state dir's lock: %w", err)
				}
				if !st.Running() && !locked {
					fmt.Fprintln(out, "mesh stopped")
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("trellis up (pid %d) has not stopped within %s: see its output, wait longer with --timeout, or kill it with `kill -9 %d` (the next trellis up on %s stops what it leaves)", st.PID, timeout, st.PID, sd)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-tick.C:
				}
			}
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for the mesh to stop")
	stateDirFlag(cmd, &stateDir)
	return cmd
}
