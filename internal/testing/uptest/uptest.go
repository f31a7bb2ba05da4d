package uptest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds trellis and trellis-proxy (once per test binary) and
// returns the folder holding both.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		binDir, buildErr = os.MkdirTemp("", "trellis-uptest-bin-")
		if buildErr != nil {
			return
		}
		for _, cmd := range []string{"trellis", "trellis-proxy"} {
			c := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "./cmd/"+cmd)
			c.Dir = root
			if out, err := c.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's folder")
		}
		dir = parent
	}
}

// Mesh is a running `trellis up`.
type Mesh struct {
	t        testing.TB
	Bin      string // folder of trellis and trellis-proxy
	StateDir string
	Dir      string
	cmd      *exec.Cmd
	done     chan struct{}

	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	lines  chan string
}

// Start runs `trellis up dir` with a fresh state dir and extra flags, and
// returns once it printed "mesh ready" (the test fails if it does not
// within two minutes). The mesh is stopped when the test ends.
func Start(t testing.TB, dir string, flags ...string) *Mesh {
	t.Helper()
	m := StartNoWait(t, dir, flags...)
	if err := m.WaitFor("mesh ready", 2*time.Minute); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, m.Stdout(), m.Stderr())
	}
	return m
}

// StartNoWait starts `trellis up` and returns at once.
func StartNoWait(t testing.TB, dir string, flags ...string) *Mesh {
	t.Helper()
	bin := Binaries(t)
	// Short: Unix socket paths are limited, and t.TempDir's are long.
	sd, err := os.MkdirTemp("", "tup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sd) })
	// A --state-dir among flags wins (the last of a repeated flag does).
	for i, f := range flags {
		if f == "--state-dir" && i+1 < len(flags) {
			sd = flags[i+1]
		}
	}
	m := &Mesh{t: t, Bin: bin, StateDir: sd, Dir: dir, done: make(chan struct{}), lines: make(chan string, 1024)}
	args := append([]string{"up", dir, "--state-dir", sd}, flags...)
	m.cmd = exec.Command(filepath.Join(bin, "trellis"), args...)
	m.cmd.Env = m.env()
	m.cmd.Stderr = &lockedWriter{mu: &m.mu, b: &m.stderr}
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m.mu.Lock()
			m.stdout.WriteString(sc.Text() + "\n")
			m.mu.Unlock()
			select {
			case m.lines <- sc.Text():
			default:
			}
		}
		_ = m.cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		if err := m.Stop(30 * time.Second); err != nil {
			t.Errorf("stopping the mesh: %v\nstderr:\n%s", err, m.Stderr())
		}
	})
	return m
}

func (m *Mesh) env() []string {
	env := []string{"PATH=" + m.Bin + ":" + os.Getenv("PATH")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "TRELLIS_HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// WaitFor waits until a stdout line contains s.
func (m *Mesh) WaitFor(s string, d time.Duration) error {
	if strings.Contains(m.Stdout(), s) {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case line := <-m.lines:
			if strings.Contains(line, s) {
				return nil
			}
		case <-m.done:
			if strings.Contains(m.Stdout(), s) {
				return nil
			}
			return fmt.Errorf("trellis up exited (%v) before printing %q", m.cmd.ProcessState, s)
		case <-t.C:
			if strings.Contains(m.Stdout(), s) {
				return nil
			}
			return fmt.Errorf("trellis up did not print %q within %s", s, d)
		}
	}
}

// Stdout and Stderr are what trellis up printed so far.
func (m *Mesh) Stdout() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stdout.String()
}

func (m *Mesh) Stderr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stderr.String()
}

// Done is closed once trellis up has exited.
func (m *Mesh) Done() <-chan struct{} { return m.done }

// ExitCode is trellis up's exit status, once Done.
func (m *Mesh) ExitCode() int { return m.cmd.ProcessState.ExitCode() }

// Stop sends SIGTERM (as Ctrl-C would) and waits for the exit.
func (m *Mesh) Stop(d time.Duration) error {
	select {
	case <-m.done:
		return nil
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
		if code := m.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("trellis up exited %d after SIGTERM", code)
		}
		return nil
	case <-time.After(d):
		_ = m.cmd.Process.Kill()
		<-m.done
		return fmt.Errorf("trellis up did not stop within %s of SIGTERM", d)
	}
}

// Kill ends trellis up with SIGKILL, as a crash would, leaving its
// state dir as it was.
func (m *Mesh) Kill() error {
	if err := m.cmd.Process.Kill(); err != nil {
		return err
	}
	<-m.done
	return nil
}

// Trellis runs `trellis args...` against this mesh (its state dir in
// TRELLIS_HOME) and returns stdout, stderr and the exit code.
func (m *Mesh) Trellis(ctx context.Context, args ...string) (stdout, stderr string, code int) {
	m.t.Helper()
	cmd := m.Command(ctx, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		m.t.Fatalf("trellis %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// Command is `trellis args...` against this mesh, not yet started: for
// commands that run until stopped (logs -f, port-forward).
func (m *Mesh) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(m.Bin, "trellis"), args...)
	cmd.Env = append(m.env(), "TRELLIS_HOME="+m.StateDir)
	return cmd
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
