package local_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/needs"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// copyDir copies the .yaml files of src into a fresh folder, so a test
// can edit them while a mesh watches.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// writeFile replaces a watched file in one rename, as editors do.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// curl runs curl in the sleep pod through the mesh, one request per URL
// (on one connection), and returns a line per response: the status code
// and the reviews version header.
func curl(t *testing.T, m *uptest.Mesh, extra []string, urls ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"exec", "sleep", "--", "curl", "-s", "-w", `%{http_code} %header{x-reviews-version}\n`}, extra...)
	for _, u := range urls {
		args = append(args, "-o", "/dev/null", u) // curl's -o is per URL
	}
	out, errOut, code := m.Trellis(ctx, args...)
	if code != 0 {
		t.Fatalf("trellis exec sleep -- curl: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return lines
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func count(lines []string) map[string]int {
	c := map[string]int{}
	for _, l := range lines {
		c[strings.TrimSpace(l)]++
	}
	return c
}

func readState(t *testing.T, m *uptest.Mesh) *local.State {
	t.Helper()
	s, err := local.ReadState(m.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pod(t *testing.T, s *local.State, name string) *local.PodState {
	t.Helper()
	p, err := s.FindPod("default", name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// outboundRequests is how many requests the sleep pod's sidecar has taken
// from its app.
func outboundRequests(t *testing.T, m *uptest.Mesh) int {
	t.Helper()
	p := pod(t, readState(t, m), "sleep")
	if p.Sidecar == nil {
		t.Fatal("the sleep pod has no sidecar")
	}
	return sidecarStat(t, p.Sidecar.AdminSocket, "http.outbound.downstream_rq_total")
}

// waitLoad waits until a load started in the background (after
// outboundRequests said started) has sent requests through the sleep
// pod's sidecar, so that what the test does next happens under load.
func waitLoad(t *testing.T, m *uptest.Mesh, started int) {
	t.Helper()
	eventually(t, 30*time.Second, "the load to start", func() string {
		if n := outboundRequests(t, m) - started; n < 5 {
			return fmt.Sprintf("%d requests through the sleep pod's sidecar", n)
		}
		return ""
	})
}

func eventually(t *testing.T, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after %s", what, why, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The demo mesh, run as a user runs it, answers through the sidecars with
// the user's routing; pods restart, config edits and Deployment rolls
// apply live without failed requests; and stopping leaves nothing behind.
//
// It runs in both modes; transparent mode (root) also checks that pods
// are network namespaces that apps use with no proxy settings, by DNS
// name, and that stopping removes every namespace.
func TestUpShop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole demo mesh")
	}
	inEachMode(t, testShop)
}

func testShop(t *testing.T, flags []string) {
	transparent := len(flags) > 0
	dir := copyDir(t, "../../examples/shop")
	m := uptest.Start(t, dir, flags...)
	const reviews = "http://reviews:9080/reviews/0"

	if transparent {
		sleep := pod(t, readState(t, m), "sleep")
		if sleep.NetNS == "" || !strings.HasPrefix(sleep.IP, "10.244.") {
			t.Fatalf("sleep pod %+v: want a network namespace and a 10.244/16 IP", sleep)
		}
		for _, c := range sleep.Containers {
			if !c.Sidecar && containsEnvName(c.Env, "HTTP_PROXY") {
				t.Fatalf("transparent mode sets HTTP_PROXY for the app: %v", c.Env)
			}
		}
		if got := curl(t, m, nil, "http://frontend.default.svc.cluster.local:9080/api/product"); got[0] != "200" {
			t.Errorf("frontend by its full name answered %v", got)
		}
	}

	t.Run("routing", func(t *testing.T) {
		got := count(curl(t, m, nil, repeat(reviews, 400)...))
		if got["200 v1"]+got["200 v2"] != 400 {
			t.Fatalf("400 requests to reviews answered %v, want all 200 from v1 or v2", got)
		}
		// The user's VirtualService: 90 % v1, 10 % v2, within ±5 points.
		if share := float64(got["200 v1"]) / 400; share < 0.85 || share > 0.95 {
			t.Errorf("v1 got %.1f%% of requests, want 90 ±5 (%v)", share*100, got)
		}
		hdr := count(curl(t, m, []string{"-H", "user: test-user"}, repeat(reviews, 20)...))
		if hdr["200 v2"] != 20 {
			t.Errorf("requests with user: test-user answered %v, want all 20 from v2", hdr)
		}
		// The issue's own first call.
		if got := curl(t, m, nil, "http://reviews:9080/"); got[0] != "200" {
			t.Errorf("curl http://reviews:9080/ answered %v, want 200", got)
		}
		// frontend → reviews → ratings, each hop through two sidecars.
		if got := curl(t, m, nil, "http://frontend:9080/api/product", "http://ratings:9080/ratings/1"); len(got) != 2 || got[0] != "200" || got[1] != "200" {
			t.Errorf("frontend and ratings answered %v, want 200 200", got)
		}
	})

	t.Run("crashed app restarts and serves again", func(t *testing.T) {
		p := pod(t, readState(t, m), "ratings")
		var app *local.ContainerState
		for i := range p.Containers {
			if p.Containers[i].Name == "ratings" {
				app = &p.Containers[i]
			}
		}
		if app == nil || app.PID == 0 {
			t.Fatalf("ratings pod has no running app container: %+v", p.Containers)
		}
		if err := syscall.Kill(app.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "ratings to restart and be ready", func() string {
			p := pod(t, readState(t, m), p.Name)
			for _, c := range p.Containers {
				if c.Name == "ratings" && (c.Restarts < 1 || !p.Ready) {
					return fmt.Sprintf("restarts %d, ready %v (%s)", c.Restarts, p.Ready, p.Status)
				}
			}
			return ""
		})
		// Ready in mesh.json is the probe's verdict; the endpoint then
		// reaches the other sidecars with the next push, as an
		// EndpointSlice update follows readiness in Kubernetes.
		eventually(t, 10*time.Second, "ratings to answer after its restart", func() string {
			if got := curl(t, m, nil, "http://ratings:9080/ratings/1"); got[0] != "200" {
				return fmt.Sprintf("answered %v", got)
			}
			return ""
		})
	})

	t.Run("config edit under load", func(t *testing.T) {
		var (
			wg   sync.WaitGroup
			load []string
		)
		started := outboundRequests(t, m)
		wg.Go(func() {
			load = curl(t, m, []string{"--rate", "100/s"}, repeat(reviews, 300)...)
		})
		waitLoad(t, m, started)
		writeFile(t, filepath.Join(dir, "reviews-vs.yaml"), `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
`)
		wg.Wait()
		for i, l := range load {
			if !strings.HasPrefix(l, "200 ") {
				t.Fatalf("request %d during the edit answered %q (all: %v)", i, l, count(load))
			}
		}
		eventually(t, 10*time.Second, "the edit to apply", func() string {
			if got := count(curl(t, m, nil, repeat(reviews, 20)...)); got["200 v2"] != 20 {
				return fmt.Sprint(got)
			}
			return ""
		})
	})

	t.Run("deployment edit rolls pods under load", func(t *testing.T) {
		path := filepath.Join(dir, "ratings.yaml")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		old := pod(t, readState(t, m), "ratings").Name
		var (
			wg   sync.WaitGroup
			load []string
		)
		started := outboundRequests(t, m)
		var loadDone atomic.Bool
		wg.Go(func() {
			load = curl(t, m, []string{"--rate", "50/s"}, repeat("http://ratings:9080/ratings/1", 300)...)
			loadDone.Store(true)
		})
		waitLoad(t, m, started)
		edited := strings.Replace(string(b), "        env:\n", "        env:\n        - name: ROLLED\n          value: \"yes\"\n", 1)
		if edited == string(b) {
			t.Fatal("ratings.yaml has no env to edit")
		}
		writeFile(t, path, edited)
		editedAt := time.Now()
		eventually(t, 30*time.Second, "ratings to roll to a new pod", func() string {
			s := readState(t, m)
			var names []string
			for _, p := range s.Pods {
				if p.Deployment == "ratings" {
					names = append(names, p.Name+":"+p.Status)
				}
			}
			if len(names) != 1 || strings.HasPrefix(names[0], old+":") || !pod(t, s, "ratings").Ready {
				return strings.Join(names, ", ")
			}
			return ""
		})
		// Requests must have crossed the whole roll, or the check below
		// could pass with none sent while the pods changed.
		if loadDone.Load() {
			t.Errorf("the load (300 requests at 50/s) ended before the roll did, %v after the edit: no request crossed it", time.Since(editedAt))
		}
		t.Logf("the roll took %v", time.Since(editedAt))
		wg.Wait()
		for i, l := range load {
			if !strings.HasPrefix(l, "200") {
				t.Fatalf("request %d during the roll answered %q (all: %v)", i, l, count(load))
			}
		}
		p := pod(t, readState(t, m), "ratings")
		for _, c := range p.Containers {
			if c.Name == "ratings" && !containsEnv(c.Env, "ROLLED=yes") {
				t.Errorf("the new ratings pod runs without the edited env")
			}
		}
	})

	t.Run("two meshes side by side", func(t *testing.T) {
		other := uptest.Start(t, "testdata/small", flags...)
		if got := curl(t, other, nil, "http://ratings:9080/ratings/1"); got[0] != "200" {
			t.Errorf("the second mesh's ratings answered %v", got)
		}
		if got := curl(t, m, nil, "http://ratings:9080/ratings/1"); got[0] != "200" {
			t.Errorf("the first mesh's ratings answered %v with a second mesh running", got)
		}
		a, b := pod(t, readState(t, m), "sleep"), pod(t, readState(t, other), "sleep")
		if transparent {
			// Each mesh's pod network lives in its own namespaces.
			if netnsPrefix(a) == netnsPrefix(b) {
				t.Errorf("two meshes share network namespaces: %s and %s", a.NetNS, b.NetNS)
			}
		} else if a.IP[:strings.LastIndexByte(a.IP, '.')] == b.IP[:strings.LastIndexByte(b.IP, '.')] {
			t.Errorf("two meshes share a pod network: %s and %s", a.IP, b.IP)
		}
	})

	t.Run("state is rewritten only on change", func(t *testing.T) {
		path := filepath.Join(m.StateDir, "mesh.json")
		before, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // six reconcile ticks
		after, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("mesh.json rewritten in a steady mesh (%s then %s)", before.ModTime(), after.ModTime())
		}
	})

	// Stopping (as Ctrl-C does) exits 0 and leaves no process (and no
	// network namespace) behind.
	s := readState(t, m)
	prefix := netnsPrefix(pod(t, s, "sleep"))
	var pids []int
	for _, p := range s.Pods {
		for _, c := range p.Containers {
			if c.PID > 0 {
				pids = append(pids, c.PID)
			}
		}
	}
	if len(pids) < 2*len(s.Pods)-1 {
		t.Fatalf("mesh.json lists %d running processes for %d pods", len(pids), len(s.Pods))
	}
	if err := m.Stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !strings.Contains(string(b), ") Z ") {
			t.Errorf("process %d (%s) still runs after the mesh stopped", pid, b)
		}
	}
	if !strings.Contains(m.Stdout(), "mesh stopped") {
		t.Errorf("no \"mesh stopped\" line:\n%s", m.Stdout())
	}
	if transparent {
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				t.Errorf("network namespace %s left after the mesh stopped", e.Name())
			}
		}
	}
}

// netnsPrefix is the mesh's part of a pod's namespace name
// (trellis-HASH-), "" in explicit mode.
func netnsPrefix(p *local.PodState) string {
	if p.NetNS == "" {
		return ""
	}
	name := filepath.Base(p.NetNS)
	return name[:len("trellis-")+strings.IndexByte(name[len("trellis-"):], '-')+1]
}

func containsEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

// Manifests that cannot run locally stop `trellis up` before anything
// starts, with the file, object and field of each problem.
func TestUpRefusesBadManifests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"missing command", `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
`, []string{"Deployment default/web: spec.template.spec.containers[0].command: required in local mode", "not starting"}},
		{"port clash", `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: x, command: [web], ports: [{containerPort: 15008}]}
`, []string{"spec.template.spec.containers[0].ports[0].containerPort: port 15008 is already used in this pod by the trellis-proxy sidecar", "not starting"}},
		{"unknown kind", `apiVersion: example.com/v1
kind: Gizmo
metadata: {name: g}
`, []string{"app.yaml", "Gizmo", "not starting"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "app.yaml"), tc.yaml)
			m := uptest.StartNoWait(t, dir)
			select {
			case <-m.Done():
			case <-time.After(60 * time.Second):
				t.Fatal("trellis up did not exit on bad manifests")
			}
			if m.ExitCode() == 0 || strings.Contains(m.Stdout(), "mesh ready") {
				t.Fatalf("exit %d on bad manifests; stdout:\n%s", m.ExitCode(), m.Stdout())
			}
			for _, w := range tc.want {
				if !strings.Contains(m.Stderr(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, m.Stderr())
				}
			}
		})
	}
}

// inEachMode runs test as a subtest with the flags of each mode: explicit,
// and transparent, which needs root (it makes network namespaces and
// nftables rules) and skips without it (fails in CI: see package needs).
func inEachMode(t *testing.T, test func(t *testing.T, flags []string)) {
	for _, flags := range [][]string{nil, {"--transparent"}} {
		t.Run(modeName(flags), func(t *testing.T) {
			if len(flags) > 0 && os.Geteuid() != 0 {
				needs.Skip(t, "transparent mode needs root (CI runs as root)")
			}
			test(t, flags)
		})
	}
}

func modeName(flags []string) string {
	if len(flags) > 0 {
		return "transparent"
	}
	return "explicit"
}

func containsEnvName(env []string, name string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, name+"=") {
			return true
		}
	}
	return false
}

// A mesh that does not become ready in time fails, naming what is not
// ready, and stops what it started.
func TestUpTimeoutNamesWhatIsNotReady(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app.yaml"), `apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      containers:
      - name: stuck
        image: x
        command: [trellis, demo, sleep]
        readinessProbe:
          tcpSocket: {port: 9999}
`)
	m := uptest.StartNoWait(t, dir, "--timeout", "5s")
	select {
	case <-m.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("trellis up did not give up after its timeout")
	}
	if m.ExitCode() == 0 {
		t.Fatalf("exit 0 on a mesh that never became ready\nstdout:\n%s", m.Stdout())
	}
	if want := "mesh not ready after 5s: pod default/stuck-0 is not ready (Running)"; !strings.Contains(m.Stderr(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, m.Stderr())
	}
}

// A `trellis up` killed outright leaves its state dir to the next one,
// which starts cleanly on it.
func TestUpAfterKilledUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	flags := []string{}
	if os.Geteuid() == 0 {
		flags = append(flags, "--transparent") // leftover namespaces too
	} else if needs.CI() {
		// Explicit mode alone would pass without checking what a killed
		// transparent mesh leaves behind.
		t.Fatalf("needs root to check the leftover network namespaces too %s", needs.CISuffix)
	}
	first := uptest.Start(t, "testdata/small", flags...)
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	second := uptest.Start(t, "testdata/small", append(flags, "--state-dir", first.StateDir)...)
	if got := curl(t, second, nil, "http://ratings:9080/ratings/1"); got[0] != "200" {
		t.Errorf("ratings answered %v in the mesh started after a killed one", got)
	}
}

// Pods with and without sidecars reach each other's Services, both ways,
// in both modes: in transparent mode a sidecar-less client's VIP traffic
// is load-balanced by the node namespace's Service rules (kube-proxy's
// job), and a sidecar-less server is reached at its pod IP.
func TestUpMixedSidecars(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	inEachMode(t, func(t *testing.T, flags []string) {
		m := uptest.Start(t, "testdata/mixed", flags...)
		for _, client := range []string{"sleep", "plain"} {
			if len(flags) == 0 && client == "plain" {
				continue // explicit mode: a pod without a sidecar has no proxy to name services
			}
			for _, server := range []string{"ratings", "plain-ratings"} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				out, errOut, code := m.Trellis(ctx, "exec", client, "--", "curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
					"http://"+server+":9080/ratings/1", "-o", "/dev/null", "http://"+server+":9080/ratings/2")
				cancel()
				if code != 0 || out != "200200" {
					t.Errorf("%s → %s: exit %d, codes %q, stderr %s", client, server, code, out, errOut)
				}
			}
		}
	})
}
