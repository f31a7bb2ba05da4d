package xds_test

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/translate"
	"github.com/trellismesh/trellis/internal/xds"
)

// The scale target: 1,000 services with 10 endpoints each, 1,000
// connected sidecars; convergence p99 <= 1s and <= 500 MB in total.
const (
	scaleServices = 1000
	scaleEntries  = 10
	scaleClients  = 1000
)

// Debounce used by the convergence benchmark: small, so the figure is the
// control plane's work rather than its batching delay. It is part of the
// measured time and reported with the results.
const (
	benchDebounce = 10 * time.Millisecond
	benchMaxDelay = 50 * time.Millisecond
)

// endpointAddr is the address of the k-th WorkloadEntry. Client k sits on
// the same address, so every client has a real inbound side. Addresses are
// only data: nothing dials them.
func endpointAddr(k int) string { return fmt.Sprintf("127.1.%d.%d", k/250, k%250+1) }

// scaleWorld writes services Services in namespace default, each selecting
// entries WorkloadEntries, into dir: world.yaml holds all but the first
// entry of the last service, which lives alone in edit.yaml so that a
// change re-parses one small file, as the folder watch would.
func scaleWorld(tb testing.TB, dir string, services, entries int) (editPath string) {
	tb.Helper()
	var b bytes.Buffer
	for i := range services {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: svc-%d, namespace: default}
spec:
  clusterIP: 10.96.%d.%d
  selector: {app: svc-%d}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: grpc, port: 9090}]
`, i, i/250, i%250+1, i)
		for j := range entries {
			if i == services-1 && j == 0 {
				continue
			}
			fmt.Fprintf(&b, "---\n%s", workloadEntry(i, j, endpointAddr(i*entries+j)))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "world.yaml"), b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	editPath = filepath.Join(dir, "edit.yaml")
	if err := os.WriteFile(editPath, workloadEntry(services-1, 0, endpointAddr((services-1)*entries)), 0o644); err != nil {
		tb.Fatal(err)
	}
	return editPath
}

func workloadEntry(svc, entry int, addr string) []byte {
	return fmt.Appendf(nil, `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-%d-%d, namespace: default}
spec:
  address: %s
  labels: {app: svc-%d, version: v%d}
  ports: {http: 8080, grpc: 9090}
`, svc, entry, addr, svc, entry%3)
}

// connectParallel is how many clients may be in their initial sync at once.
const connectParallel = 16

type scaleConfig struct {
	services, entries, clients int
	debounce, maxDelay         time.Duration
}

// scaleEnv is a control plane serving the scale world over loopback TCP
// with cfg.clients delta ADS clients connected and in sync.
type scaleEnv struct {
	cfg      scaleConfig
	mesh     *meshtest.Mesh
	cp       *controlplane.ControlPlane
	tracker  *benchTracker
	clients  []*benchClient
	editPath string
	round    int

	connectTime           time.Duration // first dial until every client holds the full config
	heapBefore, heapAfter uint64        // HeapInuse without and with the clients
}

func startScale(tb testing.TB, cfg scaleConfig) *scaleEnv {
	tb.Helper()
	dir := tb.TempDir()
	e := &scaleEnv{cfg: cfg, editPath: scaleWorld(tb, dir, cfg.services, cfg.entries)}
	e.mesh = meshtest.New(tb, "", meshtest.WithControlPlane(func(o *controlplane.Options) {
		o.ConfigPaths = []string{dir}
		// Thousands of clients would fill the harness's log buffer, which
		// would count in the heap this benchmark reports.
		o.Log = slog.New(slog.DiscardHandler)
		o.Debounce, o.MaxDelay = cfg.debounce, cfg.maxDelay
		// Edits go straight to the store; a rescan must not undo them.
		o.Resync = time.Hour
	}))
	e.cp = e.mesh.ControlPlane()
	tb.Cleanup(func() { e.close(tb) })

	// Every client watches the port-80 CLA of the service whose entry the
	// benchmark edits.
	e.tracker = newBenchTracker(translate.ClusterName("outbound", 80, "", fmt.Sprintf("svc-%d.default.svc.cluster.local", cfg.services-1)))
	e.heapBefore = heapInuse()

	ready := e.tracker.expect(endpointAddr((cfg.services-1)*cfg.entries), cfg.clients)
	start := time.Now()
	e.clients = make([]*benchClient, cfg.clients)
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		dialErr error
	)
	// A bounded number of clients syncing at once, like a rolling rollout.
	// All at once is another measurement: every initial response (a few MB
	// per client for this world) is in memory at the same time.
	sem := make(chan struct{}, connectParallel)
	for i := range cfg.clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialBenchClient(e.cp.Addr.String(), benchNode(endpointAddr(i), "pod-"+strconv.Itoa(i)), e.tracker, false)
			if err != nil {
				errMu.Lock()
				dialErr = err
				errMu.Unlock()
				return
			}
			e.clients[i] = c
			select {
			case <-c.synced:
			case <-c.done:
			case <-time.After(time.Minute):
			}
		}()
	}
	wg.Wait()
	if dialErr != nil {
		tb.Fatalf("cannot connect a client: %v", dialErr)
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		tb.Fatalf("%d clients not in sync after 5 minutes", e.tracker.pending())
	}
	e.connectTime = e.tracker.finished().Sub(start)
	e.heapAfter = heapInuse()
	return e
}

// change moves the edited endpoint to a fresh address and returns the time
// from applying the edit to the store until the last client ACKed the
// updated ClusterLoadAssignment. push, when set, stands in for the
// debounced push (the Push benchmark times it on its own).
func (e *scaleEnv) change(tb testing.TB, push func()) time.Duration {
	tb.Helper()
	e.round++
	addr := fmt.Sprintf("127.3.%d.%d", e.round/250%250, e.round%250+1)
	parsed := config.ParseFile(e.editPath, workloadEntry(e.cfg.services-1, 0, addr))
	done := e.tracker.expect(addr, len(e.clients))
	start := time.Now()
	if errs := e.cp.Store.ApplyFile(parsed); len(errs) > 0 {
		tb.Fatalf("edit rejected: %v", errs)
	}
	if push != nil {
		push()
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		tb.Fatalf("change %d: %d of %d clients still without %s after 30s", e.round, e.tracker.pending(), len(e.clients), addr)
	}
	return e.tracker.finished().Sub(start)
}

// close stops every client and the control plane and reports client
// errors (a stream that broke before the end).
func (e *scaleEnv) close(tb testing.TB) {
	for _, c := range e.clients {
		if c == nil {
			continue
		}
		if err := c.Close(); err != nil {
			tb.Errorf("client: %v", err)
		}
	}
	e.clients = nil
	if e.cp != nil {
		if err := e.mesh.StopControlPlane(); err != nil {
			tb.Errorf("control plane: %v", err)
		}
		e.cp = nil
	}
}

func (e *scaleEnv) reportMemory(b *testing.B) {
	b.ReportMetric(float64(e.heapAfter)/(1<<20), "MB/heap")
	b.ReportMetric(float64(int64(e.heapAfter)-int64(e.heapBefore))/float64(e.cfg.clients)/1024, "KB/client")
	if rss, peak := procMemory(); rss > 0 {
		b.ReportMetric(float64(rss)/(1<<20), "MB/rss")
		b.ReportMetric(float64(peak)/(1<<20), "MB/rss-peak")
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// procMemory returns the process's resident and peak resident set in
// bytes (Linux only; zero elsewhere).
func procMemory() (rss, peak uint64) { return statusMemory("/proc/self/status") }

// statusMemory reads VmRSS and VmHWM from a /proc/<pid>/status file.
func statusMemory(path string) (rss, peak uint64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func reportLatency(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(ds, 50)), "ms/"+name+"-p50")
	b.ReportMetric(ms(percentile(ds, 99)), "ms/"+name+"-p99")
	b.ReportMetric(ms(ds[len(ds)-1]), "ms/"+name+"-max")
}

// BenchmarkScaleConvergence is the scale benchmark: one endpoint
// change per iteration, timed from the store edit until all clients have
// ACKed the new ClusterLoadAssignment, through the real debounce (10ms
// quiet, 50ms cap). Run with -benchtime=100x for stable percentiles.
func BenchmarkScaleConvergence(b *testing.B) {
	e := startScale(b, scaleConfig{services: scaleServices, entries: scaleEntries, clients: scaleClients, debounce: benchDebounce, maxDelay: benchMaxDelay})
	var ds []time.Duration
	for b.Loop() {
		ds = append(ds, e.change(b, nil))
	}
	reportLatency(b, "converge", ds)
	b.ReportMetric(float64(e.connectTime)/float64(time.Millisecond), "ms/connect-all")
	e.reportMemory(b)
	if n := e.cp.XDS.NACKs(); n > 0 {
		b.Fatalf("%d NACKs", n)
	}
}

// BenchmarkScalePush calls Push directly after each edit (debounce off) to
// separate the control plane's synchronous work (new world, one Shared
// translation, Local and snapshot per proxy) from delivery to N clients.
func BenchmarkScalePush(b *testing.B) {
	for _, n := range []int{100, scaleClients} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			e := startScale(b, scaleConfig{services: scaleServices, entries: scaleEntries, clients: n, debounce: time.Hour, maxDelay: time.Hour})
			var pushes, converge []time.Duration
			for b.Loop() {
				converge = append(converge, e.change(b, func() {
					start := time.Now()
					e.cp.XDS.Push()
					pushes = append(pushes, time.Since(start))
				}))
			}
			reportLatency(b, "push", pushes)
			reportLatency(b, "converge", converge)
		})
	}
}

// BenchmarkScaleTranslate times the pure parts of a push on the scale
// world: indexing a snapshot (World), the per-scope translation every
// sidecar of a namespace shares, the per-proxy part, and both together.
func BenchmarkScaleTranslate(b *testing.B) {
	dir := b.TempDir()
	editPath := scaleWorld(b, dir, scaleServices, scaleEntries)
	st := store.New(slog.New(slog.DiscardHandler))
	for _, p := range []string{filepath.Join(dir, "world.yaml"), editPath} {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		if errs := st.ApplyFile(config.ParseFile(p, data)); len(errs) > 0 {
			b.Fatalf("world rejected: %v", errs[0])
		}
	}
	snap := st.Snapshot()
	proxy, err := xds.ParseNode(benchNode(endpointAddr(0), "pod-0"))
	if err != nil {
		b.Fatal(err)
	}
	w := translate.NewWorld(snap)
	log := slog.New(slog.DiscardHandler)
	b.Run("World", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			translate.NewWorld(snap)
		}
	})
	b.Run("Shared", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := translate.Shared(w, proxy, log); len(r.Endpoints) != 2*scaleServices {
				b.Fatalf("%d CLAs, want %d", len(r.Endpoints), 2*scaleServices)
			}
		}
	})
	b.Run("Local", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			translate.Local(w, proxy, log)
		}
	})
	b.Run("ForProxy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			translate.ForProxy(w, proxy, log)
		}
	})
}

// TestScaleSmoke runs the scale harness small so it stays compiled and
// correct in the normal suite: every client converges on every change,
// the server sees every proxy in sync, and nothing is left running.
func TestScaleSmoke(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	e := startScale(t, scaleConfig{services: 20, entries: 5, clients: 50, debounce: benchDebounce, maxDelay: benchMaxDelay})
	for range 3 {
		e.change(t, nil)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.cp.XDS.Status()
		synced := 0
		for _, p := range st {
			if p.Synced {
				synced++
			}
		}
		if len(st) == 50 && synced == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server sees %d proxies, %d in sync; want 50", len(st), synced)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.cp.XDS.NACKs(); n > 0 {
		t.Fatalf("%d NACKs", n)
	}
	e.close(t)
	for runtime.NumGoroutine() > goroutines {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left running (%d before):\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
