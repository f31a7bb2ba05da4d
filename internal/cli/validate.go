package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/analyze"
	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/inforce"
)

func newValidateCmd() *cobra.Command {
	var (
		recursive bool
		strict    bool
		filenames []string
	)
	cmd := &cobra.Command{
		Use:   "validate [-R] PATH...",
		Short: "Check mesh configuration files without applying them",
		Long: `Validate reads Kubernetes, Istio, SMI and Gateway API objects from files and
folders, checks each strictly (unknown fields, wrong types, bad values are
errors with their file, document and field path), then analyses all valid
objects together (routes to missing services or subsets, conflicting
policies, ...).

A folder gives its .yaml, .yml and .json files; its subfolders only with -R.
Kinds Trellis recognises but does not support (EnvoyFilter, WasmPlugin, ...)
are reported as warnings and skipped.

Every field that is accepted but not (fully) in force yet is reported as a
TRL0007 warning that says what happens instead, e.g.
  spec.trafficPolicy.proxyProtocol: PROXY protocol is not in force yet: no PROXY header is sent upstream
A security field that is not enforced (e.g. a DestinationRule's
credentialName, an AuthorizationPolicy condition on experimental.envoy.filters.*)
is printed as NOT ENFORCED instead; PeerAuthentication, AuthorizationPolicy
and RequestAuthentication themselves are enforced. docs/config.md lists
what is in force, field by field.

Exit status is 1 if any file has an error or analysis finds an Error-level
problem, or, with --strict, if anything is not in force or skipped; 0
otherwise.`,
		Example: `  # Check one file
  trellis validate reviews.yaml

  # Check every config file in a folder and its subfolders
  trellis validate -R manifests/

  # kubectl's -f spelling works too
  trellis validate -f reviews.yaml -f ratings.yaml

  # In CI: fail unless every field used is in force
  trellis validate --strict manifests/`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && len(filenames) == 0 {
				return usageError(cmd, errors.New("no files given: name the files or folders to validate, e.g. trellis validate examples/config"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			paths := append(append([]string(nil), filenames...), args...)
			if code := runValidateStrict(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), paths, recursive, strict); code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "also read the subfolders of the folders given")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail (exit 1) when any field used is not in force yet or any object is skipped, for pipelines that want a guarantee")
	cmd.Flags().StringArrayVarP(&filenames, "filename", "f", nil, "file or folder to validate (repeatable; same as a PATH argument)")
	return cmd
}

// runValidate is `trellis validate`: it prints a summary line per valid file
// on out and every problem on errOut, and returns the exit code.
func runValidate(ctx context.Context, out, errOut io.Writer, paths []string, recursive bool) int {
	return runValidateStrict(ctx, out, errOut, paths, recursive, false)
}

// runValidateStrict is runValidate; strict turns every warning (a field not
// in force, a skipped kind) into a failure.
func runValidateStrict(ctx context.Context, out, errOut io.Writer, paths []string, recursive, strict bool) int {
	files, err := config.Load(paths, recursive)
	if err != nil {
		fmt.Fprintf(errOut, "error: %v\n", err)
		return 1
	}
	if len(files) == 0 {
		fmt.Fprintf(errOut, "error: no .yaml, .yml or .json files found in %s (use -R to include subfolders)\n", strings.Join(paths, ", "))
		return 1
	}

	var fileErrs, badFiles, warnings, notInForce int
	for _, f := range files {
		for _, w := range f.Warnings {
			warnings++
			if config.IsNotInForce(w) {
				notInForce++
			}
			fmt.Fprintln(errOut, renderWarning(w))
		}
		for _, e := range f.Errors {
			fmt.Fprintln(errOut, e)
		}
		if len(f.Errors) > 0 {
			fileErrs += len(f.Errors)
			badFiles++
			continue
		}
		fmt.Fprintf(out, "ok   %s: %s\n", f.Path, kindSummary(f.Objects))
	}

	// Analysis may take a while on a large world; a Ctrl-C should not wait.
	if err := ctx.Err(); err != nil {
		fmt.Fprintf(errOut, "error: validation interrupted: %v\n", err)
		return 1
	}
	var analysisErrs int
	for _, m := range analyze.Run(config.Objects(files)) {
		fmt.Fprintln(errOut, m.String())
		if m.Severity == analyze.Error {
			analysisErrs++
		}
	}

	if notInForce > 0 {
		fmt.Fprintf(errOut, "%s not in force yet (TRL0007): the objects are used without them; docs/config.md lists what is in force\n", plural(notInForce, "setting"))
	}
	if fileErrs == 0 && analysisErrs == 0 && (!strict || warnings == 0) {
		return 0
	}
	var parts []string
	if fileErrs > 0 {
		parts = append(parts, fmt.Sprintf("%s in %s of %d", plural(fileErrs, "error"), plural(badFiles, "file"), len(files)))
	}
	if analysisErrs > 0 {
		parts = append(parts, plural(analysisErrs, "analysis error"))
	}
	if strict && warnings > 0 {
		parts = append(parts, plural(warnings, "warning")+" (--strict)")
	}
	fmt.Fprintf(errOut, "validation failed: %s\n", strings.Join(parts, ", "))
	return 1
}

// renderWarning prints a file warning. A security policy that is not
// enforced must not look like protection, so it is not called a warning.
func renderWarning(w error) string {
	var nf *config.NotInForceWarning
	if errors.As(w, &nf) {
		var e *config.Error
		errors.As(w, &e)
		label := "warning"
		if nf.Finding.Security() {
			label = "NOT ENFORCED"
		}
		return fmt.Sprintf("%s [%s] %s %s: %s", label, inforce.Code, e.Source, e.Object, nf.Finding)
	}
	return "warning: " + w.Error()
}

// kindSummary counts objects by kind in the order kinds first appear in the
// file, which is the order the user wrote them in: "2 Service, 3 Deployment".
func kindSummary(objs []*config.Object) string {
	if len(objs) == 0 {
		return "no objects"
	}
	var order []config.GroupKind
	count := map[config.GroupKind]int{}
	groups := map[string]int{} // kind name → number of groups using it
	for _, o := range objs {
		if count[o.GroupKind] == 0 {
			order = append(order, o.GroupKind)
			groups[o.Kind]++
		}
		count[o.GroupKind]++
	}
	parts := make([]string, 0, len(order))
	for _, gk := range order {
		name := gk.Kind
		// Istio's Gateway and Gateway API's Gateway can sit in one file.
		if groups[gk.Kind] > 1 {
			name = gk.String()
		}
		parts = append(parts, fmt.Sprintf("%d %s", count[gk], name))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
