package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/local"
)

// Execute runs the trellis command line with args (without the program name)
// and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// trellis re-runs itself this way to start a process inside a local
	// mesh's pod; on success the process is replaced and never returns.
	if len(args) > 0 && args[0] == local.EnterCommand {
		err := local.EnterMain(args[1:])
		fmt.Fprintf(stderr, "trellis: cannot start the process in its pod: %v\n", err)
		return 127
	}
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	fmt.Fprintf(stderr, "error: %v\n", err)
	return 1
}

// exitCode is returned by a subcommand that has already printed why it
// failed; Execute turns it into the process exit code.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

func newRootCmd() *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:   "trellis",
		Short: "Trellis is a service mesh that reads Istio, SMI and Gateway API config",
		Long: `Trellis is a service mesh: a control plane serving Envoy xDS to sidecars and
proxyless gRPC clients, configured with the Istio, SMI and Gateway API objects
you already have.

Find more information at https://github.com/trellismesh/trellis`,
		// Errors are printed once, by Execute, with a hint; cobra's own
		// printing would duplicate them and bury them under the usage text.
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", logLevel)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log verbosity: debug, info, warn or error")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(cmd, err)
	})

	root.AddCommand(
		newValidateCmd(),
		newControlPlaneCmd(),
		newDemoCmd(),
		newUpCmd(),
		newExecCmd(),
		newStatusCmd(),
		newProxyStatusCmd(),
		newLogsCmd(),
		newDownCmd(),
		newPortForwardCmd(),
		newDashboardCmd(),
		newInjectCmd(),
	)
	return root
}

// usageError adds kubectl's pointer to the help text to a command-line
// mistake, instead of dumping the whole usage.
func usageError(cmd *cobra.Command, err error) error {
	return fmt.Errorf("%w\nSee '%s --help' for usage", err, strings.TrimSpace(cmd.CommandPath()))
}
