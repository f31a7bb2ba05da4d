// Package cli implements the trellis command line.
//
// Each subcommand lives in its own file and exposes a constructor
// `newXxxCmd() *cobra.Command` that newRootCmd registers. Subcommands write
// to cmd.OutOrStdout()/cmd.ErrOrStderr() and honour cmd.Context(), so tests
// run them in-process; they log with slog.Default(), which the root command
// configures from --log-level before any subcommand runs. A subcommand that
// has already reported its failure returns exitCode(n) so that Execute exits
// with n without printing anything more.
package cli
