package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	svcReviews = `apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
`
	vsReviews = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
`
	saReviews = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: reviews
`
)

// writeFiles creates files (slash path → content) under a new temp dir.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// validate runs the command's core in dir (so printed paths are relative
// and stable) and returns exit code, stdout and stderr.
func validate(t *testing.T, dir string, recursive bool, paths ...string) (int, string, string) {
	t.Helper()
	t.Chdir(dir)
	var out, errOut bytes.Buffer
	code := runValidate(context.Background(), &out, &errOut, paths, recursive)
	return code, out.String(), errOut.String()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func TestValidateValidFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"reviews.yaml":   vsReviews,
		"manifests.yaml": svcReviews + "---\n" + saReviews + "---\n" + strings.Replace(svcReviews, "name: reviews", "name: reviews-v1", 1),
		"empty.yml":      "# nothing yet\n",
		"README.md":      "not read",
	})
	code, out, errOut := validate(t, dir, false, ".")
	want := []string{
		"ok   empty.yml: no objects",
		"ok   manifests.yaml: 2 Service, 1 ServiceAccount",
		"ok   reviews.yaml: 1 VirtualService",
	}
	if diff := cmp.Diff(want, lines(out)); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if code != 0 || errOut != "" {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	bad := svcReviews + `---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destinaton: {host: reviews}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBN}
`
	dir := writeFiles(t, map[string]string{"bad.yaml": bad, "good.yaml": saReviews})
	code, out, errOut := validate(t, dir, false, "bad.yaml", "good.yaml")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if diff := cmp.Diff([]string{"ok   good.yaml: 1 ServiceAccount"}, lines(out)); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	wantErr := []string{
		`bad.yaml#2 VirtualService default/reviews: spec.http[0].route[0].destinaton: unknown field (did you mean "destination"?)`,
		`bad.yaml#3 DestinationRule default/reviews: spec.trafficPolicy.loadBalancer.simple: unknown value "ROUND_ROBN": must be one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST`,
	}
	got := lines(errOut)
	if len(got) < len(wantErr) {
		t.Fatalf("stderr:\n%s", errOut)
	}
	if diff := cmp.Diff(wantErr, got[:len(wantErr)]); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
	if last := got[len(got)-1]; last != "validation failed: 2 errors in 1 file of 2" {
		t.Errorf("last stderr line %q", last)
	}
}

func TestValidateRecursive(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"top.yaml":         saReviews,
		"sub/svc.yaml":     svcReviews,
		"sub/deep/vs.yaml": vsReviews,
		".git/x.yaml":      "not: [config",
	})
	code, out, errOut := validate(t, dir, false, ".")
	if diff := cmp.Diff([]string{"ok   top.yaml: 1 ServiceAccount"}, lines(out)); diff != "" || code != 0 {
		t.Errorf("without -R: exit %d, stderr %q, stdout (-want +got):\n%s", code, errOut, diff)
	}
	code, out, errOut = validate(t, dir, true, ".")
	want := []string{
		"ok   sub/deep/vs.yaml: 1 VirtualService",
		"ok   sub/svc.yaml: 1 Service",
		"ok   top.yaml: 1 ServiceAccount",
	}
	if diff := cmp.Diff(want, lines(out)); diff != "" || code != 0 {
		t.Errorf("with -R: exit %d, stderr %q, stdout (-want +got):\n%s", code, errOut, diff)
	}
}

func TestValidateUnknownKind(t *testing.T) {
	dir := writeFiles(t, map[string]string{"x.yaml": "apiVersion: networking.istio.io/v1\nkind: VirtualServise\nmetadata: {name: r}\n"})
	code, out, errOut := validate(t, dir, false, "x.yaml")
	want := []string{
		`x.yaml#1 VirtualServise default/r: unknown kind "VirtualServise" in apiVersion "networking.istio.io/v1": Trellis reads Kubernetes core, Istio, SMI TrafficSplit and Gateway API kinds (see docs/config.md)`,
		"validation failed: 1 error in 1 file of 1",
	}
	if diff := cmp.Diff(want, lines(errOut)); diff != "" || code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q, stderr (-want +got):\n%s", code, out, diff)
	}
}

func TestValidateUnsupportedKindWarns(t *testing.T) {
	filter := `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: lua
  namespace: istio-system
spec:
  configPatches: []
`
	dir := writeFiles(t, map[string]string{"filter.yaml": filter, "sa.yaml": saReviews})
	code, out, errOut := validate(t, dir, false, ".")
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	wantOut := []string{"ok   filter.yaml: no objects", "ok   sa.yaml: 1 ServiceAccount"}
	if diff := cmp.Diff(wantOut, lines(out)); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	wantErr := []string{"warning: filter.yaml#1 EnvoyFilter istio-system/lua: EnvoyFilter is not supported and is ignored: Trellis proxies are not Envoy; EnvoyFilter patches cannot apply"}
	if diff := cmp.Diff(wantErr, lines(errOut)); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}

func TestValidateUnreadablePath(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := validate(t, dir, false, "missing.yaml")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "error: cannot read missing.yaml: ") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = validate(t, dir, false, ".")
	if code != 1 || !strings.Contains(errOut, "no .yaml, .yml or .json files found in .") {
		t.Errorf("empty folder: exit %d, stderr %q", code, errOut)
	}
}

// TestValidateAnalysisErrorFails checks that objects are analysed together
// across files and that an Error-level finding fails the run.
func TestValidateAnalysisErrorFails(t *testing.T) {
	vsToMissingSubset := strings.Replace(vsReviews, "host: reviews\n", "host: reviews\n        subset: v3\n", 1)
	dir := writeFiles(t, map[string]string{"svc.yaml": svcReviews, "vs.yaml": vsToMissingSubset})
	code, out, errOut := validate(t, dir, false, ".")
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, errOut)
	}
	if diff := cmp.Diff([]string{"ok   svc.yaml: 1 Service", "ok   vs.yaml: 1 VirtualService"}, lines(out)); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if !strings.Contains(errOut, "Error [") || !strings.Contains(errOut, "(VirtualService default/reviews vs.yaml#1)") {
		t.Errorf("stderr has no analysis error for the VirtualService:\n%s", errOut)
	}
	if !strings.HasSuffix(errOut, "analysis error\n") && !strings.HasSuffix(errOut, "analysis errors\n") {
		t.Errorf("stderr does not end with the failure summary:\n%s", errOut)
	}
}

// TestValidateSeedExamples runs the user's examples unchanged (the
// repository's copies in examples/config, which TestExamplesKeepSeedsUnchanged
// holds to the originals), with the workloads they assume, and requires a
// clean result.
func TestValidateSeedExamples(t *testing.T) {
	configDir, err := filepath.Abs(filepath.Join(repoRoot, "examples", "config"))
	if err != nil {
		t.Fatal(err)
	}
	support, err := os.ReadFile(filepath.Join(configDir, "reviews.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	payment, err := os.ReadFile(filepath.Join(configDir, "payment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := writeFiles(t, map[string]string{
		"workloads.yaml": string(support) + "---\n" + string(payment),
		"istio-system.yaml": `apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
`,
	})
	var seeds []string
	for _, f := range seedFiles {
		seeds = append(seeds, filepath.Join(configDir, f))
	}
	code, out, errOut := validate(t, dir, false, append(seeds, ".")...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, s := range seeds {
		if !strings.Contains(out, "ok   "+s+": 1 ") {
			t.Errorf("no ok line for %s in:\n%s", s, out)
		}
	}
	if strings.Contains(errOut, "Error [") {
		t.Errorf("analysis errors:\n%s", errOut)
	}
}

func TestExecute(t *testing.T) {
	dir := writeFiles(t, map[string]string{"sa.yaml": saReviews, "bad.yaml": "kind: Service\n"})
	t.Chdir(dir)
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string // substrings
	}{
		{"valid file", []string{"validate", "sa.yaml"}, 0, "ok   sa.yaml: 1 ServiceAccount", ""},
		{"kubectl -f spelling", []string{"validate", "-f", "sa.yaml", "--log-level=debug"}, 0, "ok   sa.yaml", ""},
		{"bad file", []string{"validate", "sa.yaml", "bad.yaml"}, 1, "ok   sa.yaml", "bad.yaml#1: apiVersion and kind are required"},
		{"no paths", []string{"validate"}, 1, "", "error: no files given: name the files or folders to validate, e.g. trellis validate examples/config\nSee 'trellis validate --help' for usage\n"},
		{"unknown flag", []string{"validate", "--bogus", "sa.yaml"}, 1, "", "error: unknown flag: --bogus\nSee 'trellis validate --help' for usage\n"},
		{"bad log level", []string{"--log-level=loud", "validate", "sa.yaml"}, 1, "", `error: invalid --log-level "loud": use debug, info, warn or error`},
		{"unknown command", []string{"valdate"}, 1, "", `unknown command "valdate" for "trellis"`},
		{"help", []string{"validate", "--help"}, 0, "trellis validate [-R] PATH...", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Execute(context.Background(), tc.args, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.err) {
				t.Errorf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
		})
	}
}
