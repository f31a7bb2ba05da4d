// Command trellis is the Trellis command line: config validation today, the
// control plane and the local mesh as they land. Everything lives in
// internal/cli so that it can be tested in-process; main only wires the
// process (arguments, signals, exit code).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/trellismesh/trellis/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
