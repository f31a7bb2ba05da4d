package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/needs"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// TestCompanionCommandsTransparent runs status, port-forward and down on a
// transparent-mode mesh, whose pod IPs exist only inside its network
// namespaces.
func TestCompanionCommandsTransparent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole mesh")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "transparent mode needs root (CI runs as root)")
	}
	m := uptest.Start(t, shopDir, "--transparent")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	row := regexp.MustCompile(`(?m)^default +frontend-0 +2/2 +Running +0 +\S+ +10\.244\.\d+\.\d+ +spiffe://cluster.local/ns/default/sa/frontend +SYNCED$`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		out, errOut, code := m.Trellis(ctx, "status")
		if code != 0 {
			t.Fatalf("trellis status exited %d: %s", code, errOut)
		}
		if row.MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status has no ready, synced frontend-0 on a 10.244 pod IP:\n%s", out)
		}
	}
	portForwardFrontend(t, m)
	down(ctx, t, m)
}

// down runs trellis down and checks that trellis up exited 0 at once.
func down(ctx context.Context, t *testing.T, m *uptest.Mesh) {
	t.Helper()
	out, errOut, code := m.Trellis(ctx, "down")
	if code != 0 || !strings.Contains(out, "mesh stopped") {
		t.Fatalf("trellis down: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("trellis down returned, and trellis up is still running")
	}
	if c := m.ExitCode(); c != 0 {
		t.Errorf("trellis up exited %d after trellis down, want 0", c)
	}
}

// TestCompanionCommands runs the shop demo with `trellis up` and drives it
// with status, logs, port-forward and, last, down, as a user would from
// another terminal. The subtests share the mesh and run in order.
func TestCompanionCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole mesh")
	}
	m := uptest.Start(t, shopDir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := local.ReadState(m.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	var podNames []string
	for _, p := range st.Pods {
		podNames = append(podNames, p.Name)
	}

	t.Run("in force", func(t *testing.T) {
		// Everything the shop's config asks for is in force (the user's
		// own examples), so trellis up has no TRL0007 line to print.
		for _, l := range strings.Split(m.Stderr(), "\n") {
			if strings.Contains(l, "[TRL0007]") {
				t.Errorf("trellis up printed %q, want no setting reported as not in force\nstderr:\n%s", l, m.Stderr())
			}
		}
	})

	// First, on the fresh mesh: the README's payments and the limit it
	// names (shop_security_test.go).
	t.Run("security", func(t *testing.T) {
		testShopPayments(t, m)
		testExplicitGap(t, m)
	})

	t.Run("status", func(t *testing.T) {
		// Every pod ready and synced: mesh ready said so, but a probe
		// that times out on a loaded machine may flip a pod for a moment,
		// so look again until the table settles.
		var problems []string
		var out string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			var errOut string
			var code int
			out, errOut, code = m.Trellis(ctx, "status")
			if code != 0 {
				t.Fatalf("trellis status exited %d: %s", code, errOut)
			}
			if problems = statusProblems(out, st, podNames); len(problems) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, p := range problems {
			t.Error(p)
		}
		if len(problems) > 0 {
			t.Logf("trellis status printed:\n%s", out)
		}
	})

	t.Run("status -o json", func(t *testing.T) {
		out, errOut, code := m.Trellis(ctx, "status", "-o", "json")
		if code != 0 {
			t.Fatalf("trellis status -o json exited %d: %s", code, errOut)
		}
		var got local.State
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v in:\n%s", err, out)
		}
		if !got.Running() || !got.Ready || got.Mode != "explicit" {
			t.Errorf("state says running %v, ready %v, mode %q: want a running, ready, explicit mesh", got.Running(), got.Ready, got.Mode)
		}
		var names []string
		for _, p := range got.Pods {
			names = append(names, p.Name)
		}
		if diff := cmp.Diff(podNames, names); diff != "" {
			t.Errorf("pods (-mesh.json +status):\n%s", diff)
		}
		var frontend *local.ServiceState
		for i, s := range got.Services {
			if s.Name == "frontend" {
				frontend = &got.Services[i]
			}
		}
		want := &local.ServiceState{Name: "frontend", Namespace: "default", Selector: map[string]string{"app": "frontend"}, Ports: []local.ServicePort{{Name: "http", Port: 9080, TargetPort: "9080"}}}
		if diff := cmp.Diff(want, frontend); diff != "" {
			t.Errorf("service frontend (-want +got):\n%s", diff)
		}
	})

	t.Run("logs", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"logs", "reviews-v1-0"}, "msg=listening service=reviews"},
			{[]string{"logs", "reviews-v2"}, "msg=listening service=reviews"},
			{[]string{"logs", "-c", "trellis-proxy", "frontend"}, "connected to the xDS server"},
		} {
			out, errOut, code := m.Trellis(ctx, tc.args...)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Errorf("trellis %s: exit %d, stdout:\n%s\nstderr:\n%s\nwant a line with %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
			}
		}
		_, errOut, code := m.Trellis(ctx, "logs", "-c", "nope", "frontend")
		if code != 1 || !strings.Contains(errOut, `pod frontend-0 has no container "nope" (it has: frontend, trellis-proxy)`) {
			t.Errorf("logs -c nope: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("logs -f", func(t *testing.T) {
		f := startBackground(t, m, "logs", "-f", "ratings")
		if _, err := f.waitLine(regexp.MustCompile(`msg=listening service=ratings`)); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := m.Trellis(ctx, "exec", "sleep", "--", "curl", "-sS", "http://ratings:9080/ratings/7")
		if code != 0 {
			t.Fatalf("curl through the mesh exited %d: %s%s", code, out, errOut)
		}
		if _, err := f.waitLine(regexp.MustCompile(`msg=request service=ratings method=GET path=/ratings/7 status=200`)); err != nil {
			t.Fatal(err)
		}
		if code := f.interrupt(); code != 0 {
			t.Errorf("logs -f exited %d after Ctrl-C, want 0; stderr:\n%s", code, f.stderr())
		}
	})

	t.Run("port-forward", func(t *testing.T) { portForwardFrontend(t, m) })

	t.Run("down", func(t *testing.T) {
		st, err := local.ReadState(m.StateDir)
		if err != nil {
			t.Fatal(err)
		}
		type proc struct {
			name  string
			pid   int
			start uint64
		}
		var procs []proc
		for _, p := range st.Pods {
			for _, c := range p.Containers {
				if c.PID == 0 {
					t.Errorf("container %s/%s has no PID in mesh.json", p.Name, c.Name)
					continue
				}
				procs = append(procs, proc{p.Name + "/" + c.Name, c.PID, c.StartTime})
			}
		}
		// These stop on their own when the mesh goes.
		follow := startBackground(t, m, "logs", "-f", "frontend")
		forward := startBackground(t, m, "port-forward", "deploy/reviews-v1", "9080")
		if _, err := forward.waitLine(regexp.MustCompile(`^Forwarding from`)); err != nil {
			t.Fatal(err)
		}

		down(ctx, t, m)
		for _, p := range procs {
			if procStart(p.pid) == p.start {
				t.Errorf("%s (pid %d) still runs after trellis down", p.name, p.pid)
			}
		}
		if code := follow.wait(30 * time.Second); code != 0 || !strings.Contains(follow.stderr(), "the mesh has stopped") {
			t.Errorf("logs -f: exit %d once the mesh stopped, stderr %q; want 0 and a note", code, follow.stderr())
		}
		if code := forward.wait(30 * time.Second); code != 1 || !regexp.MustCompile(`the mesh (is stopping|has stopped)`).MatchString(forward.stderr()) {
			t.Errorf("port-forward: exit %d once the mesh stopped, stderr %q; want 1 and why", code, forward.stderr())
		}

		out, _, code := m.Trellis(ctx, "down")
		if code != 0 || !strings.Contains(out, "nothing to stop") {
			t.Errorf("second trellis down: exit %d, %q; want 0 and nothing to stop", code, out)
		}
		_, errOut, code := m.Trellis(ctx, "status")
		if code != 1 || !strings.Contains(errOut, "no mesh is running on state dir "+m.StateDir) {
			t.Errorf("status of a stopped mesh: exit %d, %q", code, errOut)
		}
		// The logs stay in the state dir.
		out, errOut, code = m.Trellis(ctx, "logs", "ratings-0")
		if code != 0 || !strings.Contains(out, "msg=stopped service=ratings") {
			t.Errorf("logs of a stopped mesh: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
}

// statusProblems compares a status table with mesh.json: every pod
// listed, 2/2 Running with no restarts, its IP and the identity the CA
// issues its sidecar, SYNCED, and no POLICY column: the shop's security
// policies (STRICT mTLS, the AuthorizationPolicy) are all enforced.
func statusProblems(out string, st *local.State, podNames []string) []string {
	var problems []string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.Fields(lines[0]); !cmp.Equal(got, []string{"NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "IDENTITY", "PROXY"}) {
		problems = append(problems, fmt.Sprintf("header %q", lines[0]))
	}
	var names []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 9 {
			problems = append(problems, fmt.Sprintf("row %q: want 9 columns", l))
			continue
		}
		names = append(names, f[1])
		p, err := st.FindPod(f[0], f[1])
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		want := []string{p.Namespace, p.Name, "2/2", "Running", "0", f[5], p.IP, "spiffe://cluster.local/ns/default/sa/" + p.ServiceAccount, "SYNCED"}
		if diff := cmp.Diff(want, f[:9]); diff != "" {
			problems = append(problems, fmt.Sprintf("row of %s (-want +got):\n%s", p.Name, diff))
		}
	}
	if diff := cmp.Diff(podNames, names); diff != "" {
		problems = append(problems, fmt.Sprintf("pods (-mesh.json +status):\n%s", diff))
	}
	return problems
}

// portForwardFrontend forwards a random local port to the frontend
// Service and gets the shop's page through it.
func portForwardFrontend(t *testing.T, m *uptest.Mesh) {
	f := startBackground(t, m, "port-forward", "svc/frontend", ":9080")
	line, err := f.waitLine(regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> 9080$`))
	if err != nil {
		t.Fatal(err)
	}
	port := strings.TrimSuffix(strings.TrimPrefix(line, "Forwarding from 127.0.0.1:"), " -> 9080")
	if n, err := strconv.Atoi(port); err != nil || n == 0 {
		t.Fatalf("port-forward printed %q: want the random port it chose", line)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<h1>The Comedy of Errors</h1>") {
		t.Errorf("GET / through port-forward: %s\n%s", resp.Status, body)
	}
	if _, err := f.waitLine(regexp.MustCompile(`^Handling connection for ` + port + `$`)); err != nil {
		t.Error(err)
	}
	if code := f.interrupt(); code != 0 {
		t.Errorf("port-forward exited %d after Ctrl-C, want 0; stderr:\n%s", code, f.stderr())
	}
}

// procStart is a process's start time (/proc/PID/stat field 22), 0 when
// it does not exist.
func procStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 || f[0] == "Z" {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// background is a trellis command that runs until stopped (logs -f,
// port-forward); it is killed at the end of the test if still running.
type background struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed once the process has exited
	mu    sync.Mutex
	err   strings.Builder
}

func startBackground(t *testing.T, m *uptest.Mesh, args ...string) *background {
	t.Helper()
	b := &background{t: t, cmd: m.Command(context.Background(), args...), lines: make(chan string, 1024), done: make(chan struct{})}
	b.cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.err.Write(p)
	})
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case b.lines <- sc.Text():
			default: // nobody is waiting for this many lines
			}
		}
		_ = b.cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// waitLine waits (generously) for a stdout line matching re.
func (b *background) waitLine(re *regexp.Regexp) (string, error) {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-b.lines:
			if re.MatchString(l) {
				return l, nil
			}
		case <-b.done:
			for {
				select {
				case l := <-b.lines:
					if re.MatchString(l) {
						return l, nil
					}
				default:
					return "", &waitError{b.cmd.Args, re, "exited (" + b.cmd.ProcessState.String() + ")", b.stderr()}
				}
			}
		case <-timeout:
			return "", &waitError{b.cmd.Args, re, "printed nothing like it within 30s", b.stderr()}
		}
	}
}

type waitError struct {
	args   []string
	re     *regexp.Regexp
	what   string
	stderr string
}

func (e *waitError) Error() string {
	return strings.Join(e.args, " ") + ": waiting for a line matching " + e.re.String() + ": " + e.what + "; stderr:\n" + e.stderr
}

// interrupt sends SIGINT, as Ctrl-C does, and returns the exit code.
func (b *background) interrupt() int {
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	return b.wait(30 * time.Second)
}

// wait waits for the exit and returns the exit code (-1 after a kill).
func (b *background) wait(d time.Duration) int {
	select {
	case <-b.done:
	case <-time.After(d):
		b.t.Errorf("%s did not exit within %s", strings.Join(b.cmd.Args, " "), d)
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	return b.cmd.ProcessState.ExitCode()
}

func (b *background) stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
