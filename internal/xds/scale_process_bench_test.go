package xds_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/testing/needs"
	"github.com/trellismesh/trellis/internal/translate"
)

// profileDirEnv, when set to a folder, makes BenchmarkScaleControlPlaneProcess
// profile the child: it serves pprof (controlplane.DebugAddressEnv) and the
// benchmark saves a heap profile every second while clients connect, one
// once they are in sync and one after the changes, named
// <sub-benchmark>-<phase>-<n>.pb.gz.
const profileDirEnv = "TRELLIS_BENCH_PROFILE_DIR"

// BenchmarkScaleControlPlaneProcess runs the real `trellis controlplane`
// binary as a child process on the scale world, so its RSS is the control
// plane's alone: the in-process benchmarks share one heap with the 1,000
// clients and cannot separate the two. Edits go through the folder watch
// (file rename -> fsnotify -> settle -> store -> debounced push) with the
// binary's production debounce, so convergence here is what an operator
// editing the folder would see. Run with -benchtime=20x or more.
func BenchmarkScaleControlPlaneProcess(b *testing.B) {
	// trellis-proxy subscribes to endpoints as a wildcard; Envoy subscribes
	// by name to every cluster it learns, which costs the control plane a
	// set of 2,000 names per sidecar.
	b.Run("subscribe=trellis-proxy", func(b *testing.B) { benchControlPlaneProcess(b, true) })
	b.Run("subscribe=envoy", func(b *testing.B) { benchControlPlaneProcess(b, false) })
}

func benchControlPlaneProcess(b *testing.B, wildcardEDS bool) {
	bin := buildTrellis(b)
	dir := b.TempDir()
	editPath := scaleWorld(b, dir, scaleServices, scaleEntries)
	cp := startControlPlaneProcess(b, bin, dir)
	prof := newProfiler(b, cp)

	// Let the first push after startup and the load's garbage settle, so
	// idle is the steady state of a loaded world rather than a transient.
	time.Sleep(3 * time.Second)
	idle, _ := cp.memory(b)

	tracker := newBenchTracker(translate.ClusterName("outbound", 80, "", fmt.Sprintf("svc-%d.default.svc.cluster.local", scaleServices-1)))
	stopProf := prof.every(time.Second, "connect")
	clients := connectBenchClients(b, cp.addr, tracker, scaleClients, endpointAddr((scaleServices-1)*scaleEntries), wildcardEDS)
	stopProf()
	prof.save("synced")
	closeClients := func() {
		for _, c := range clients {
			if err := c.Close(); err != nil {
				b.Errorf("client: %v", err)
			}
		}
		clients = nil
	}
	// Cleanups run last-in first-out: clients go before the child is killed.
	b.Cleanup(closeClients)
	synced, _ := cp.memory(b)
	cpuSynced := cp.cpu()

	tmp := filepath.Join(dir, "edit.tmp") // not a config extension: the watch ignores it
	var ds []time.Duration
	cpuDone := prof.cpu("edits", 5*time.Second)
	round := 0
	for b.Loop() {
		round++
		addr := fmt.Sprintf("127.4.%d.%d", round/250%250, round%250+1)
		if err := os.WriteFile(tmp, workloadEntry(scaleServices-1, 0, addr), 0o644); err != nil {
			b.Fatal(err)
		}
		done := tracker.expect(addr, len(clients))
		start := time.Now()
		// A rename is atomic, so the watch never parses a half-written file
		// and each edit is exactly one change to the store.
		if err := os.Rename(tmp, editPath); err != nil {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-cp.exited:
			b.Fatalf("control plane exited during change %d: %s", round, cp.stderr())
		case <-time.After(30 * time.Second):
			b.Fatalf("change %d: %d of %d clients still without %s after 30s", round, tracker.pending(), len(clients), addr)
		}
		ds = append(ds, tracker.finished().Sub(start))
	}
	b.StopTimer()
	after, peak := cp.memory(b)
	cpuEdits := cp.cpu() - cpuSynced
	prof.save("edited")
	<-cpuDone

	reportLatency(b, "converge", ds)
	mb := func(v uint64) float64 { return float64(v) / (1 << 20) }
	b.ReportMetric(mb(idle), "MB/cp-rss-idle")
	b.ReportMetric(mb(synced), "MB/cp-rss")
	b.ReportMetric(mb(after), "MB/cp-rss-edited")
	b.ReportMetric(mb(peak), "MB/cp-rss-peak")
	b.ReportMetric(float64(int64(synced)-int64(idle))/float64(len(clients))/1024, "KB/cp-client")
	// CPU time is steadier than convergence on a shared machine: it is
	// what the control plane spent per change, whatever else ran.
	b.ReportMetric(float64(cpuEdits.Milliseconds())/float64(len(ds)), "ms/cp-cpu-change")

	// Clients first: a stream the server cuts on shutdown is an error for
	// the client.
	closeClients()
	if err := cp.stop(); err != nil {
		b.Fatal(err)
	}
}

// buildTrellis builds cmd/trellis into a temp folder. Building (rather than
// `go run`) makes the child's pid the control plane's, whose /proc status
// is what the benchmark reads.
func buildTrellis(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		tb.Fatal("not inside a Go module")
	}
	bin := filepath.Join(tb.TempDir(), "trellis")
	build := exec.Command("go", "build", "-o", bin, "./cmd/trellis")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/trellis: %v\n%s", err, out)
	}
	return bin
}

// cpProcess is a `trellis controlplane` child process.
type cpProcess struct {
	cmd       *exec.Cmd
	addr      string
	debugAddr string // pprof, when profiling
	logPath   string
	exited    chan struct{} // closed once Wait returned
	waitErr   error         // read after exited
}

func startControlPlaneProcess(tb testing.TB, bin, configDir string) *cpProcess {
	tb.Helper()
	addr := freeLoopbackAddr(tb)
	logPath := filepath.Join(tb.TempDir(), "controlplane.log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, "controlplane", "--config", configDir, "--xds-address", addr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	var debugAddr string
	if os.Getenv(profileDirEnv) != "" {
		debugAddr = freeLoopbackAddr(tb)
		cmd.Env = append(os.Environ(), controlplane.DebugAddressEnv+"="+debugAddr)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("cannot start control plane: %v", err)
	}
	p := &cpProcess{cmd: cmd, addr: addr, debugAddr: debugAddr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	// Registered right away so a failing benchmark never leaves the child
	// running; after a clean stop it finds the process gone.
	tb.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})

	// The control plane loads the whole folder before it listens, so the
	// first accepted connection means the world is loaded.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.exited:
			tb.Fatalf("control plane exited before serving (%v): %s", p.waitErr, p.stderr())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("control plane not accepting on %s after 2 minutes: %s", addr, p.stderr())
		}
	}
}

// profiler saves heap profiles of the child when profileDirEnv is set; it
// does nothing otherwise.
type profiler struct {
	tb  testing.TB
	cp  *cpProcess
	dir string
	n   int
	mu  sync.Mutex
}

func newProfiler(tb testing.TB, cp *cpProcess) *profiler {
	dir := os.Getenv(profileDirEnv)
	if dir == "" || cp.debugAddr == "" {
		return &profiler{tb: tb}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return &profiler{tb: tb, cp: cp, dir: dir}
}

// save forces a GC in the child, writes its heap profile (live objects)
// and logs the child's RSS and runtime memory figures at that moment. The
// forced GCs lower the child's RSS: figures from a profiled run are not
// the benchmark's.
func (p *profiler) save(phase string) {
	if p.cp == nil {
		return
	}
	p.mu.Lock()
	p.n++
	n := p.n
	p.mu.Unlock()
	name := strings.NewReplacer("/", "_", "=", "-").Replace(p.tb.Name())
	path := filepath.Join(p.dir, fmt.Sprintf("%s-%s-%03d.pb.gz", name, phase, n))
	body, err := p.get("/debug/pprof/heap?gc=1")
	if err != nil {
		p.tb.Logf("profile %s: %v", path, err)
		return
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		p.tb.Errorf("profile: %v", err)
		return
	}
	rss, hwm := statusMemory("/proc/" + strconv.Itoa(p.cp.cmd.Process.Pid) + "/status")
	// The text form ends with runtime.MemStats; log the lines that add up
	// to the RSS.
	var stats []string
	if text, err := p.get("/debug/pprof/heap?debug=1"); err == nil {
		for line := range strings.Lines(string(text)) {
			for _, k := range []string{"# HeapInuse = ", "# Sys = ", "# NextGC = ", "# HeapReleased = "} {
				if v, ok := strings.CutPrefix(line, k); ok {
					if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
						stats = append(stats, fmt.Sprintf("%s%d MB", strings.TrimPrefix(k, "# "), n>>20))
					}
				}
			}
			if v, ok := strings.CutPrefix(line, "# Stack = "); ok { // "in use / from the OS"
				inuse, _, _ := strings.Cut(v, " / ")
				if n, err := strconv.ParseUint(strings.TrimSpace(inuse), 10, 64); err == nil {
					stats = append(stats, fmt.Sprintf("Stack = %d MB", n>>20))
				}
			}
		}
	}
	p.tb.Logf("%s: child VmRSS %d MB, VmHWM %d MB; %s", filepath.Base(path), rss>>20, hwm>>20, strings.Join(stats, ", "))
}

func (p *profiler) get(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.cp.debugAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return body, nil
}

// cpu saves a CPU profile of the child over the next d, in the
// background; the channel closes when it is written.
func (p *profiler) cpu(phase string, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if p.cp == nil {
		close(done)
		return done
	}
	name := strings.NewReplacer("/", "_", "=", "-").Replace(p.tb.Name())
	path := filepath.Join(p.dir, fmt.Sprintf("%s-%s-cpu.pb.gz", name, phase))
	go func() {
		defer close(done)
		body, err := p.get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())))
		if err == nil {
			err = os.WriteFile(path, body, 0o644)
		}
		if err != nil {
			p.tb.Logf("cpu profile %s: %v", path, err)
		}
	}()
	return done
}

// every saves a profile each period until the returned stop is called.
func (p *profiler) every(period time.Duration, phase string) (stop func()) {
	if p.cp == nil {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.save(phase)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// freeLoopbackAddr picks a port the kernel considers free. It is released
// before the child binds it; on a loopback-only test machine the race with
// another process taking it is not worth the flag a listener fd would need.
func freeLoopbackAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (p *cpProcess) memory(tb testing.TB) (rss, peak uint64) {
	tb.Helper()
	rss, peak = statusMemory("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if rss == 0 {
		needs.Skip(tb, "no /proc/<pid>/status: child memory is only measured on Linux")
	}
	return rss, peak
}

// cpu is the child's user plus system CPU time so far, from
// /proc/<pid>/stat (in clock ticks of 1/100 s, Linux's USER_HZ).
func (p *cpProcess) cpu() time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// stop sends SIGTERM, the signal the command shuts down cleanly on, and
// expects exit status 0.
func (p *cpProcess) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("control plane did not exit 30s after SIGTERM")
	}
	if p.waitErr != nil {
		return fmt.Errorf("control plane: %v: %s", p.waitErr, p.stderr())
	}
	return nil
}

func (p *cpProcess) stderr() string {
	out, _ := os.ReadFile(p.logPath)
	return string(out)
}

// connectBenchClients dials n clients, connectParallel at a time as in
// startScale, and waits until all of them hold a complete config with
// want in the tracked CLA.
func connectBenchClients(tb testing.TB, addr string, tracker *benchTracker, n int, want string, wildcardEDS bool) []*benchClient {
	tb.Helper()
	ready := tracker.expect(want, n)
	clients := make([]*benchClient, n)
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		dialErr error
	)
	sem := make(chan struct{}, connectParallel)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialBenchClient(addr, benchNode(endpointAddr(i), "pod-"+strconv.Itoa(i)), tracker, wildcardEDS)
			if err != nil {
				errMu.Lock()
				dialErr = err
				errMu.Unlock()
				return
			}
			clients[i] = c
			select {
			case <-c.synced:
			case <-c.done:
			case <-time.After(time.Minute):
			}
		}()
	}
	wg.Wait()
	// Keep only dialed clients so the caller's cleanup can close them all.
	dialed := clients[:0]
	for _, c := range clients {
		if c != nil {
			dialed = append(dialed, c)
		}
	}
	if dialErr != nil {
		for _, c := range dialed {
			c.Close()
		}
		tb.Fatalf("cannot connect a client: %v", dialErr)
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		for _, c := range dialed {
			c.Close()
		}
		tb.Fatalf("%d clients not in sync after 5 minutes", tracker.pending())
	}
	return dialed
}
