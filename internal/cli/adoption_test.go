package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/needs"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// The four adoption phases of docs/adoption.md, each run as the doc runs
// it: `trellis up --profile minimal` on the phase's folder under
// examples/adoption, then real requests from pods in the mesh (and one
// outside it) through real sidecars.

var adoptionDir = filepath.Join(repoRoot, "examples", "adoption")

// TestAdoptionExamplesValidateStrict: every phase's folder is config in
// force today (docs/adoption.md tells users to run exactly this).
func TestAdoptionExamplesValidateStrict(t *testing.T) {
	bin := uptest.Binaries(t)
	for _, phase := range []string{"1-observability", "2-mtls", "2-mtls/extras", "3-traffic", "4-authorization"} {
		out, err := exec.Command(filepath.Join(bin, "trellis"), "validate", "--strict", filepath.Join(adoptionDir, phase)).CombinedOutput()
		if err != nil {
			t.Errorf("trellis validate --strict examples/adoption/%s: %v\n%s", phase, err, out)
		}
	}
}

// TestUpProfileFlag: --profile takes default and minimal only, and says so.
func TestUpProfileFlag(t *testing.T) {
	bin := uptest.Binaries(t)
	out, err := exec.Command(filepath.Join(bin, "trellis"), "up", "--profile", "demo", filepath.Join(adoptionDir, "1-observability")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `--profile "demo": use one of default, minimal`) {
		t.Errorf("trellis up --profile demo: %v\n%s", err, out)
	}
	help, err := exec.Command(filepath.Join(bin, "trellis"), "up", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "--profile") || !strings.Contains(string(help), "docs/adoption.md") {
		t.Errorf("trellis up --help does not describe --profile: %v\n%s", err, help)
	}
}

// execCurl runs curl in a pod with the args given and returns its stdout.
func execCurl(t *testing.T, m *uptest.Mesh, pod string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, errOut, _ := m.Trellis(ctx, append([]string{"exec", pod, "--", "curl", "-s", "-m", "5"}, args...)...)
	if errOut != "" {
		t.Logf("trellis exec %s -- curl %s: %s", pod, strings.Join(args, " "), errOut)
	}
	return out
}

// statusCode is one request's HTTP status as curl prints it ("000": no
// answer).
func statusCode(t *testing.T, m *uptest.Mesh, pod, url string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(execCurl(t, m, pod, append(append([]string{"-o", "/dev/null", "-w", "%{http_code}"}, args...), url)...))
}

// eventuallyCode polls until a request answers want: a config edit reaches
// the sidecars a moment after the file changes.
func eventuallyCode(t *testing.T, m *uptest.Mesh, pod, url, want string, args ...string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if got = statusCode(t, m, pod, url, args...); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("trellis exec %s -- curl %s: status %s after 30s, want %s", pod, url, got, want)
		}
	}
}

var reviewsVersion = regexp.MustCompile(`(?mi)^X-Reviews-Version: (v\d)\r?$`)

// reviewsVersions sends n GETs to reviews from sleep in one curl and counts
// which version answered each.
func reviewsVersions(t *testing.T, m *uptest.Mesh, n int, args ...string) map[string]int {
	t.Helper()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = "http://reviews:9080/reviews/0"
	}
	out := execCurl(t, m, "sleep", append(append([]string{"-D", "-", "-o", "/dev/null"}, args...), urls...)...)
	got := map[string]int{}
	for _, mm := range reviewsVersion.FindAllStringSubmatch(out, -1) {
		got[mm[1]]++
	}
	total := 0
	for _, c := range got {
		total += c
	}
	if total != n {
		t.Fatalf("%d of %d requests to reviews answered with a version:\n%s", total, n, out)
	}
	return got
}

func startPhase(t *testing.T, phase string, transparent bool) (*uptest.Mesh, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a whole mesh")
	}
	flags := []string{"--profile", local.ProfileMinimal}
	if transparent {
		if os.Geteuid() != 0 {
			needs.Skip(t, "transparent mode needs root (CI runs as root)")
		}
		flags = append(flags, "--transparent")
	}
	// A copy, so that a phase's edit never touches the example.
	dir := t.TempDir()
	src := filepath.Join(adoptionDir, phase)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dir, e.Name()))
		}
	}
	return uptest.Start(t, dir, flags...), dir
}

// TestAdoptionPhase1Observability: with only the minimal profile, traffic
// flows as before the mesh: no routing config, so reviews' three versions
// share the requests, and mTLS is PERMISSIVE, so a pod without a sidecar
// still reaches a meshed one in plaintext.
func TestAdoptionPhase1Observability(t *testing.T) {
	m, _ := startPhase(t, "1-observability", true)
	got := reviewsVersions(t, m, 30)
	for _, v := range []string{"v1", "v2", "v3"} {
		if got[v] == 0 {
			t.Errorf("no request answered by reviews %s with no routing config: %v", v, got)
		}
	}
	// The metrics phase 1 is for: reviews-v1's sidecar counted each of
	// sleep's requests it served, as Istio's istio_requests_total.
	want := fmt.Sprintf("%d", got["v1"])
	var series string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if series = sleepToReviewsV1(t, m); strings.HasSuffix(series, " "+want) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("reviews-v1's sidecar: istio_requests_total from sleep is %q, want a mutual_tls 200 series of %s", series, want)
			break
		}
	}
	if code := statusCode(t, m, "no-sidecar", "http://ratings:9080/ratings/1"); code != "200" {
		t.Errorf("plaintext from outside the mesh under the profile's PERMISSIVE: status %s, want 200", code)
	}
	if code := statusCode(t, m, "sleep", "http://ratings:9080/ratings/1"); code != "200" {
		t.Errorf("sleep to ratings through the mesh: status %s, want 200", code)
	}
}

var requestsSeries = regexp.MustCompile(`(?m)^istio_requests_total\{reporter="destination",source_workload="sleep",[^}]*destination_workload="reviews-v1",[^}]*response_code="200",[^}]*connection_security_policy="mutual_tls"\} \d+$`)

// sleepToReviewsV1 scrapes reviews-v1's sidecar (its admin socket's
// /stats/prometheus, the text :15090 serves) for the series counting
// sleep's mTLS requests answered 200.
func sleepToReviewsV1(t *testing.T, m *uptest.Mesh) string {
	t.Helper()
	sock := filepath.Join(m.StateDir, "run", "default.reviews-v1-0.admin.sock")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://admin/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return requestsSeries.FindString(string(b))
}

// TestAdoptionPhase2MTLS: PERMISSIVE admits the plaintext caller; the
// user's STRICT (extras/strict.yaml copied in, mesh-wide like the
// profile's own policy) is in force over the profile's PERMISSIVE and
// refuses it, while meshed callers still get through.
func TestAdoptionPhase2MTLS(t *testing.T) {
	m, dir := startPhase(t, "2-mtls", true)
	const url = "http://ratings:9080/ratings/1"
	if code := statusCode(t, m, "no-sidecar", url); code != "200" {
		t.Fatalf("PERMISSIVE: plaintext from outside the mesh got %s, want 200", code)
	}
	tmp := filepath.Join(t.TempDir(), "strict.yaml")
	copyFile(t, filepath.Join(adoptionDir, "2-mtls", "extras", "strict.yaml"), tmp)
	if err := os.Rename(tmp, filepath.Join(dir, "strict.yaml")); err != nil {
		t.Fatal(err)
	}
	eventuallyCode(t, m, "no-sidecar", url, "000")
	if code := statusCode(t, m, "sleep", url); code != "200" {
		t.Errorf("STRICT: sleep through its sidecar got %s, want 200", code)
	}
}

// TestAdoptionPhase3Traffic: the canary's 50/50 split between the v1 and v2
// subsets (v3 gets nothing), the header route always to v2, and the retry
// policy turning a flaky payment's first 503 into a paid checkout.
func TestAdoptionPhase3Traffic(t *testing.T) {
	m, _ := startPhase(t, "3-traffic", false)
	got := reviewsVersions(t, m, 30)
	if got["v1"] == 0 || got["v2"] == 0 || got["v3"] != 0 {
		t.Errorf("50/50 canary between v1 and v2: answered by %v", got)
	}
	if got := reviewsVersions(t, m, 10, "-H", "user: test-user"); got["v2"] != 10 {
		t.Errorf("user: test-user always goes to v2: answered by %v", got)
	}
	out := execCurl(t, m, "sleep", "-X", "POST", "-d", `{"order":"flaky-1","amount":3}`, "http://checkout-service:9080/checkout")
	if !strings.Contains(out, `"status": "paid"`) {
		t.Errorf("checkout of a flaky order with payment-retries.yaml: want paid (the retry answered), got:\n%s", out)
	}
}

// TestAdoptionPhase4Authorization: deny by default with an allow-list:
// sleep may call checkout-service, which may call payment-service (200,
// paid); sleep calling payment-service or refund-service is in no list and
// gets 403 "RBAC: access denied" from the callee's sidecar.
func TestAdoptionPhase4Authorization(t *testing.T) {
	m, _ := startPhase(t, "4-authorization", false)
	out := execCurl(t, m, "sleep", "-X", "POST", "-d", `{"order":"o-1","amount":12.5}`, "-w", "\n%{http_code}", "http://checkout-service:9080/checkout")
	if !strings.HasSuffix(out, "\n200") || !strings.Contains(out, `"status": "paid"`) {
		t.Errorf("sleep -> checkout-service -> payment-service, both allowed: want 200 and paid, got:\n%s", out)
	}
	for _, url := range []string{"http://payment-service:9080/pay", "http://refund-service:9080/refund"} {
		out := execCurl(t, m, "sleep", "-X", "POST", "-d", `{"order":"o-2","amount":5}`, "-w", "\n%{http_code}", url)
		if out != "RBAC: access denied\n403" {
			t.Errorf("sleep -> %s, not allowed: want 403 RBAC: access denied, got:\n%s", url, out)
		}
	}
	if got := reviewsVersions(t, m, 3); got["v1"]+got["v2"]+got["v3"] != 3 {
		t.Errorf("sleep -> reviews GET, allowed: %v", got)
	}
}
