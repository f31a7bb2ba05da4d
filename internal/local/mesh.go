package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/local/meshdns"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/watch"
	"github.com/trellismesh/trellis/internal/xds"
)

// Options configure Up.
type Options struct {
	// Dir is the manifests folder; Recursive reads its subfolders too.
	Dir       string
	Recursive bool
	// StateDir holds the mesh's state (DefaultStateDir when empty).
	StateDir string
	// Timeout bounds the wait for `mesh ready` (120 s when zero).
	Timeout time.Duration
	// Out gets the pod states and the `mesh ready` line; Console gets every
	// process's output, prefixed by pod and container.
	Out, Console io.Writer
	// ProxyPath is the trellis-proxy binary (FindProxy when empty).
	ProxyPath string
	// TrellisPath is the trellis binary, whose folder is put on every
	// pod's PATH (os.Executable when empty).
	TrellisPath string
	// Transparent runs pods in network namespaces with capture (root,
	// Linux) instead of explicit mode's loopback IPs and HTTP_PROXY.
	Transparent bool
	Log         *slog.Logger
}

// PlanErrors are the manifests' problems that keep a mesh from starting.
type PlanErrors []error

func (e PlanErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// explicitPodNet is where explicit-mode pods get their IPs.
var explicitPodNet = netip.MustParsePrefix("127.10.0.0/16")

// Mesh is a running local mesh.
type Mesh struct {
	opts      Options
	log       *slog.Logger
	dir       string
	stateDir  string
	xdsSocket string
	proxyPath string
	mode      string // "explicit" or "transparent"
	baseEnv   []string
	console   *console
	lock      *os.File
	ipam      *ipam
	cp        *controlplane.ControlPlane
	// enterPod, when set, places a pod's processes in its namespaces.
	enterPod func(p *pod, sidecar bool) func(*exec.Cmd)
	// Transparent mode only: the namespaces, the Service VIPs, and how
	// probes reach pods (from the node namespace, as a kubelet would).
	net         *podNetwork
	vips        *vips
	probeDial   func(ctx context.Context, network, addr string) (net.Conn, error)
	trellisPath string
	dns         *meshdns.Server
	stopDNS     context.CancelFunc
	dnsDone     chan struct{}

	changed chan struct{}
	wg      sync.WaitGroup // pod and terminator goroutines
	// announced is set once `mesh ready` is printed.
	announced atomic.Bool
	cpLogFile *os.File

	mu        sync.Mutex
	pods      map[string]*pod      // "ns/name", terminating ones included
	workloads map[string]*Workload // desired, "ns/name"
	published map[string]bool      // pod key → the Ready the store has
	printed   map[string]string
	stopping  bool
	readyAt   time.Time
	lastState []byte
}

func (m *Mesh) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Up runs the mesh in opts.Dir until ctx ends, then stops every process
// it started and returns nil. It returns an error when the mesh cannot
// start (PlanErrors for bad manifests) or is not ready within the
// timeout.
func Up(ctx context.Context, opts Options) (err error) {
	m, err := start(opts)
	if err != nil {
		return err
	}
	defer func() {
		m.shutdown()
		if err == nil {
			fmt.Fprintln(opts.Out, "mesh stopped")
		}
	}()
	return m.loop(ctx)
}

func start(opts Options) (*Mesh, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Console == nil {
		opts.Console = io.Discard
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 120 * time.Second
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a folder: give the folder holding your manifests, e.g. trellis up examples/shop", opts.Dir)
	}
	sd := opts.StateDir
	if sd == "" {
		sd = DefaultStateDir()
	}
	stateDir, err := filepath.Abs(sd)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{stateDir, filepath.Join(stateDir, "run"), filepath.Join(stateDir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create the state dir: %w", err)
		}
	}
	m := &Mesh{
		opts: opts, log: log, dir: dir, stateDir: stateDir, mode: "explicit",
		xdsSocket: filepath.Join(stateDir, "xds.sock"),
		console:   &console{out: opts.Console},
		changed:   make(chan struct{}, 1),
		pods:      map[string]*pod{}, workloads: map[string]*Workload{},
		published: map[string]bool{}, printed: map[string]string{},
	}
	// Unix socket paths are limited to 107 bytes.
	if n := len(filepath.Join(stateDir, "run", "x.x.admin.sock")); n > 90 {
		return nil, fmt.Errorf("state dir %s is too long for Unix sockets (%d bytes): use a shorter --state-dir", stateDir, n)
	}
	if m.lock, err = lockStateDir(stateDir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			m.close()
		}
	}()
	m.cleanLeftovers()

	m.proxyPath = opts.ProxyPath
	if m.proxyPath == "" {
		if m.proxyPath, err = FindProxy(stateDir, m.console); err != nil {
			return nil, err
		}
	}
	trellisPath := opts.TrellisPath
	if trellisPath == "" {
		if trellisPath, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("cannot find the trellis binary: %w", err)
		}
	}
	m.trellisPath = trellisPath
	m.baseEnv = baseEnv(os.Environ(), []string{dir, filepath.Dir(trellisPath)})

	var transform func(*config.File)
	if opts.Transparent {
		m.mode = "transparent"
		if m.net, err = newPodNetwork(stateDir); err != nil {
			return nil, err
		}
		// The pod network is the mesh's own, inside its namespaces, so
		// every mesh can use all of it.
		m.ipam = &ipam{prefix: podNet, used: map[netip.Addr]bool{}, next: podNet.Addr().Next().Next()}
		m.vips = newVIPs()
		transform = m.vips.transform
		m.enterPod = m.enterFunc
		m.probeDial = dialIn(m.net.nodePath)
	} else if m.ipam, err = newIPAM(explicitPodNet, stateDir); err != nil {
		return nil, err
	}
	_ = os.Remove(m.xdsSocket)
	lis, err := net.Listen("unix", m.xdsSocket)
	if err != nil {
		return nil, fmt.Errorf("cannot serve xDS on %s: %w", m.xdsSocket, err)
	}
	cpLog, err := m.controlPlaneLog()
	if err != nil {
		lis.Close()
		return nil, err
	}
	m.cp, err = controlplane.Start(context.Background(), controlplane.Options{
		ConfigPaths: []string{dir}, Recursive: opts.Recursive, XDSListener: lis, Log: cpLog, Transform: transform,
		// Pods come and go in bursts at start; a short debounce still
		// batches them and keeps `mesh ready` quick.
		Debounce: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond,
	})
	if err != nil {
		lis.Close()
		return nil, err
	}
	if m.net != nil {
		if err := m.startDNS(); err != nil {
			return nil, err
		}
		if err := m.net.enableForwarding(); err != nil {
			return nil, fmt.Errorf("cannot enable forwarding in the node namespace: %w", err)
		}
		m.updateServices()
	}
	workloads, errs := Plan(m.cp.Store.Snapshot().Objects)
	if len(errs) > 0 {
		return nil, PlanErrors(errs)
	}
	for _, w := range workloads {
		m.workloads[w.Namespace+"/"+w.Name] = w
	}
	ok = true
	return m, nil
}

// controlPlaneLog writes the control plane's log to the state dir, and
// its warnings also to the console.
func (m *Mesh) controlPlaneLog() (*slog.Logger, error) {
	f, err := os.OpenFile(filepath.Join(m.stateDir, "logs", "controlplane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open the control plane's log: %w", err)
	}
	m.cpLogFile = f
	con := slog.NewTextHandler(m.console.writer("controlplane"), &slog.HandlerOptions{Level: slog.LevelWarn})
	return slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}),
		quietUntil{Handler: con, after: &m.announced},
	)), nil
}

// quietUntil keeps the control plane's findings about the config (analysis,
// fields not in force, security policies not enforced) off the console
// until the mesh is ready: `trellis up` has just printed them, as `trellis
// validate` does. Findings after that (live edits) show.
type quietUntil struct {
	slog.Handler
	after *atomic.Bool
}

func (q quietUntil) Handle(ctx context.Context, r slog.Record) error {
	if (r.Message == "config analysis" || r.Message == watch.NotInForceMessage || r.Message == controlplane.UnenforcedMessage) && !q.after.Load() {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietUntil) WithAttrs(as []slog.Attr) slog.Handler {
	return quietUntil{Handler: q.Handler.WithAttrs(as), after: q.after}
}

func (q quietUntil) WithGroup(name string) slog.Handler {
	return quietUntil{Handler: q.Handler.WithGroup(name), after: q.after}
}

// cleanLeftovers stops what a killed `trellis up` on this state dir left.
func (m *Mesh) cleanLeftovers() {
	old, err := ReadState(m.stateDir)
	if err != nil {
		return
	}
	n := 0
	for _, p := range old.Pods {
		for _, c := range p.Containers {
			if killLeftover(c.PID, c.StartTime) {
				n++
			}
		}
	}
	if n > 0 {
		m.console.printf("stopped %d processes left running by a previous trellis up on %s", n, m.stateDir)
	}
	entries, _ := os.ReadDir(filepath.Join(m.stateDir, "run"))
	for _, e := range entries {
		_ = os.Remove(filepath.Join(m.stateDir, "run", e.Name()))
	}
}

// loop reconciles pods with the workloads until ctx ends.
func (m *Mesh) loop(ctx context.Context) error {
	changes, stopWatch := m.cp.Store.Subscribe()
	defer stopWatch()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(m.opts.Timeout)
	defer deadline.Stop()
	started := time.Now()
	fmt.Fprintf(m.opts.Out, "starting mesh from %s (state dir %s, pod network %s, %s mode)\n", m.dir, m.stateDir, m.ipam.prefix, m.mode)
	m.reconcile()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			if m.readyAt.IsZero() {
				return fmt.Errorf("mesh not ready after %s: %s (see the logs under %s)", m.opts.Timeout, m.notReady(), filepath.Join(m.stateDir, "logs"))
			}
		case <-changes:
			m.replan()
			m.updateDNS()
			m.updateServices()
		case <-m.changed:
		case <-tick.C:
		}
		m.reconcile()
		if m.readyAt.IsZero() && m.meshReady() {
			m.readyAt = time.Now()
			m.announced.Store(true)
			m.writeState()
			fmt.Fprintf(m.opts.Out, "mesh ready: %s in %s\n", m.summary(), time.Since(started).Round(10*time.Millisecond))
		}
	}
}

// replan re-reads the Deployments after a config change. A Deployment
// whose new version cannot run locally keeps its last good workload.
func (m *Mesh) replan() {
	snap := m.cp.Store.Snapshot()
	workloads, errs := Plan(snap.Objects)
	for _, e := range errs {
		m.console.printf("config: %v (the running pods keep their last good version)", e)
	}
	next := map[string]*Workload{}
	for _, o := range snap.OfKind(config.Deployment) {
		if _, ok := o.Spec.(*appsv1.Deployment); ok {
			k := o.Namespace + "/" + o.Name
			m.mu.Lock()
			if old := m.workloads[k]; old != nil {
				next[k] = old
			}
			m.mu.Unlock()
		}
	}
	for _, w := range workloads {
		next[w.Namespace+"/"+w.Name] = w
	}
	m.mu.Lock()
	m.workloads = next
	m.mu.Unlock()
}

// reconcile starts and stops pods to match the workloads, rolling changed
// ones one pod at a time (a new pod ready before an old one stops), then
// tells the store and mesh.json what changed.
func (m *Mesh) reconcile() {
	m.mu.Lock()
	stopping := m.stopping
	// Finished pods leave.
	for k, p := range m.pods {
		select {
		case <-p.done:
			delete(m.pods, k)
			if m.net != nil {
				m.net.removePod(p.ip)
				_ = os.Remove(p.resolv)
			}
			m.ipam.release(p.ip)
		default:
		}
	}
	var starts []*Workload
	var stops []*pod
	if !stopping {
		byWorkload := map[string][]*pod{}
		for _, p := range m.pods {
			if !p.isTerminating() {
				k := p.w.Namespace + "/" + p.w.Name
				byWorkload[k] = append(byWorkload[k], p)
			}
		}
		for k, pods := range byWorkload {
			if m.workloads[k] == nil {
				stops = append(stops, pods...)
			}
		}
		for k, w := range m.workloads {
			var cur, old []*pod
			for _, p := range byWorkload[k] {
				if p.hash == w.Hash {
					cur = append(cur, p)
				} else {
					old = append(old, p)
				}
			}
			sortPods(cur)
			sortPods(old)
			readyCur, allCurReady := 0, true
			for _, p := range cur {
				if p.ready() {
					readyCur++
				} else {
					allCurReady = false
				}
			}
			switch {
			case len(old) == 0 && len(cur) < w.Replicas:
				for i := len(cur); i < w.Replicas; i++ {
					starts = append(starts, w)
				}
			case len(old) == 0 && len(cur) > w.Replicas:
				stops = append(stops, cur[w.Replicas:]...)
			case len(old) > 0:
				if len(cur) < w.Replicas && allCurReady {
					starts = append(starts, w) // surge by one
				}
				for len(old) > 0 && readyCur+len(old) > w.Replicas {
					stops = append(stops, old[0])
					old = old[1:]
				}
				if len(cur) > w.Replicas {
					stops = append(stops, cur[w.Replicas:]...)
				}
			}
		}
	}
	m.mu.Unlock()

	for _, w := range starts {
		m.startPod(w)
	}
	for _, p := range stops {
		m.terminate(p)
	}
	m.publish()
	m.writeState()
	m.printChanges()
}

func sortPods(ps []*pod) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
}

func (p *pod) isTerminating() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.terminating
}

// startPod starts one more pod of w, named with the lowest free index.
func (m *Mesh) startPod(w *Workload) {
	ip, err := m.ipam.alloc()
	if err != nil {
		m.console.printf("cannot start a pod of %s/%s: %v", w.Namespace, w.Name, err)
		return
	}
	var nsPath, resolv string
	if m.net != nil {
		if nsPath, err = m.net.addPod(ip, w.Pod.Sidecar); err != nil {
			m.ipam.release(ip)
			m.console.printf("cannot start a pod of %s/%s: %v", w.Namespace, w.Name, err)
			return
		}
		resolv = filepath.Join(m.stateDir, "run", strings.ReplaceAll(ip.String(), ".", "-")+".resolv.conf")
		if err := os.WriteFile(resolv, []byte(meshdns.ResolvConf("cluster.local", w.Namespace, m.net.gateway)), 0o644); err != nil {
			m.net.removePod(ip)
			m.ipam.release(ip)
			m.console.printf("cannot start a pod of %s/%s: %v", w.Namespace, w.Name, err)
			return
		}
	}
	m.mu.Lock()
	name := ""
	for i := 0; ; i++ {
		name = fmt.Sprintf("%s-%d", w.Name, i)
		if m.pods[w.Namespace+"/"+name] == nil {
			break
		}
	}
	p := m.newPod(w, name, ip)
	p.netns, p.resolv = nsPath, resolv
	m.pods[p.key()] = p
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		p.run()
		m.notify()
	}()
}

// terminate takes p out of the endpoints, waits (bounded) until every
// sidecar has that change, then stops its processes: requests that were
// routed to it before still find it there.
func (m *Mesh) terminate(p *pod) {
	p.markTerminating()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !m.isStopping() {
			m.mu.Lock()
			ready, present := m.published[p.key()]
			m.mu.Unlock()
			if !present || !ready {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		v := m.cp.Store.Snapshot().Version
		for time.Now().Before(deadline) && !m.isStopping() && !m.synced(v, p) {
			time.Sleep(20 * time.Millisecond)
		}
		p.cancel()
	}()
}

func (m *Mesh) isStopping() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopping
}

// publish tells the store about pods, one store source per pod: a pod's
// change replaces only its own object (with one source for all pods, every
// readiness change would resend them all), removal is dropping its source,
// and each change is one store version as before. A Kubernetes informer,
// which also sees one object per event, would plug in the same way.
func (m *Mesh) publish() {
	var sink store.Sink = m.cp.Store
	m.mu.Lock()
	pods := make([]*pod, 0, len(m.pods))
	for _, p := range m.pods {
		pods = append(pods, p)
	}
	gone := map[string]bool{}
	for k := range m.published {
		gone[k] = true
	}
	m.mu.Unlock()
	for _, p := range pods {
		k := p.key()
		delete(gone, k)
		ready := p.ready()
		m.mu.Lock()
		was, present := m.published[k]
		m.mu.Unlock()
		if present && was == ready {
			continue
		}
		obj := p.object()
		sink.Apply(podSource(k), []*config.Object{{
			Source: config.Source{File: "trellis up"}, APIVersion: "v1", GroupKind: config.Pod,
			Namespace: p.w.Namespace, Name: p.name, Labels: obj.Labels, Annotations: obj.Annotations, Spec: obj,
		}}, nil)
		m.mu.Lock()
		m.published[k] = ready
		m.mu.Unlock()
	}
	for k := range gone {
		sink.Remove(podSource(k))
		m.mu.Lock()
		delete(m.published, k)
		m.mu.Unlock()
	}
}

// podSource names the store source of the pod with key "NS/NAME". It is
// no file path (FindFiles yields only .yaml, .yml and .json names), and
// its objects' positions read "trellis up".
func podSource(key string) string { return "trellis up: pod " + key }

// sidecars maps node id → the control plane's view of that proxy.
func (m *Mesh) sidecars() map[string]xds.ProxyStatus {
	out := map[string]xds.ProxyStatus{}
	for _, s := range m.cp.XDS.Status() {
		out[s.ID] = s
	}
	return out
}

// synced says whether every sidecar (but skip's) runs config at least as
// new as store version v.
func (m *Mesh) synced(v uint64, skip *pod) bool {
	if m.cp.XDS.PushedVersion() < v {
		return false
	}
	st := m.sidecars()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.pods {
		if p == skip || p.sidecar == nil || p.isTerminating() {
			continue
		}
		s, ok := st[p.nodeID()]
		if !ok || !s.Synced || s.Version < v {
			return false
		}
	}
	return true
}

// meshReady: every workload has its pods, all ready, and every sidecar
// has ACKed config that includes them.
func (m *Mesh) meshReady() bool {
	return m.notReady() == "" && m.synced(m.cp.Store.Snapshot().Version, nil)
}

// notReady names what keeps the mesh from being ready ("" when nothing).
func (m *Mesh) notReady() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var why []string
	count := map[string]int{}
	for _, p := range m.pods {
		k := p.w.Namespace + "/" + p.w.Name
		w := m.workloads[k]
		if p.isTerminating() || w == nil || p.hash != w.Hash {
			why = append(why, fmt.Sprintf("pod %s is being replaced", p.key()))
			continue
		}
		count[k]++
		if !p.ready() {
			_, status := p.status()
			why = append(why, fmt.Sprintf("pod %s is not ready (%s)", p.key(), status))
		}
	}
	for k, w := range m.workloads {
		if count[k] < w.Replicas {
			why = append(why, fmt.Sprintf("deployment %s has %d of %d pods", k, count[k], w.Replicas))
		}
	}
	if len(why) == 0 {
		st := m.sidecars()
		for _, p := range m.pods {
			if p.sidecar == nil {
				continue
			}
			if s, ok := st[p.nodeID()]; !ok {
				why = append(why, fmt.Sprintf("pod %s: sidecar not connected to the control plane", p.key()))
			} else if !s.Synced {
				why = append(why, fmt.Sprintf("pod %s: sidecar has not ACKed its config%s", p.key(), nackNote(s)))
			}
		}
	}
	sort.Strings(why)
	return strings.Join(why, "; ")
}

func nackNote(s xds.ProxyStatus) string {
	if s.LastNACK == "" {
		return ""
	}
	return " (it rejected: " + s.LastNACK + ")"
}

func (m *Mesh) summary() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	sidecars := 0
	for _, p := range m.pods {
		if p.sidecar != nil {
			sidecars++
		}
	}
	return fmt.Sprintf("%d pods, %d sidecars in sync", len(m.pods), sidecars)
}

// currentState is mesh.json's content now.
func (m *Mesh) currentState() *State {
	st := m.sidecars()
	m.mu.Lock()
	pods := make([]*pod, 0, len(m.pods))
	for _, p := range m.pods {
		pods = append(pods, p)
	}
	s := &State{PID: os.Getpid(), StartTime: processStartTime(os.Getpid()), Mode: m.mode, Dir: m.dir, XDS: "unix://" + m.xdsSocket, Ready: !m.readyAt.IsZero(), Stopping: m.stopping}
	m.mu.Unlock()
	snap := m.cp.Store.Snapshot()
	s.Services = services(snap)
	for _, p := range pods {
		ps := p.state()
		ps.Unenforced = unenforcedPolicies(snap, ps.Namespace, ps.Labels)
		if ps.Sidecar != nil {
			if x, ok := st[ps.Sidecar.NodeID]; ok {
				ps.Sidecar.Connected, ps.Sidecar.Synced, ps.Sidecar.NACKs, ps.Sidecar.LastNACK = true, x.Synced, x.NACKs, x.LastNACK
			}
		}
		s.Pods = append(s.Pods, ps)
	}
	sort.Slice(s.Pods, func(i, j int) bool {
		a, b := s.Pods[i], s.Pods[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return s
}

// services lists the Services for mesh.json, sorted as the store keeps them.
func services(snap *store.Snapshot) []ServiceState {
	var out []ServiceState
	for _, o := range snap.OfKind(config.Service) {
		svc, ok := o.Spec.(*corev1.Service)
		if !ok {
			continue
		}
		ss := ServiceState{Name: o.Name, Namespace: o.Namespace, Selector: svc.Spec.Selector}
		for _, p := range svc.Spec.Ports {
			sp := ServicePort{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol)}
			if p.TargetPort.IntValue() != 0 || p.TargetPort.StrVal != "" {
				sp.TargetPort = p.TargetPort.String()
			}
			ss.Ports = append(ss.Ports, sp)
		}
		out = append(out, ss)
	}
	return out
}

func containerPorts(ps []corev1.ContainerPort) []ContainerPort {
	var out []ContainerPort
	for _, p := range ps {
		out = append(out, ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: string(p.Protocol)})
	}
	return out
}

// writeState rewrites mesh.json when something in it changed.
func (m *Mesh) writeState() {
	s := m.currentState()
	// Compared as JSON (before UpdatedAt is set): what readers see, and
	// free of pointer addresses that change on every call.
	key, err := json.Marshal(s)
	if err != nil {
		m.log.Warn("cannot encode mesh state", "err", err)
		return
	}
	m.mu.Lock()
	same := bytes.Equal(m.lastState, key)
	m.lastState = key
	m.mu.Unlock()
	if same {
		return
	}
	s.UpdatedAt = time.Now()
	if err := writeState(m.stateDir, s); err != nil {
		m.log.Warn("cannot write mesh state", "err", err)
	}
}

// printChanges prints each pod whose state changed.
func (m *Mesh) printChanges() {
	m.mu.Lock()
	pods := make([]*pod, 0, len(m.pods))
	for _, p := range m.pods {
		pods = append(pods, p)
	}
	m.mu.Unlock()
	sortPods(pods)
	for _, p := range pods {
		phase, status := p.status()
		_ = phase
		line := fmt.Sprintf("pod %-32s %-15s %s", p.key(), p.ip, status)
		if p.ready() {
			line += " (ready)"
		}
		m.mu.Lock()
		changed := m.printed[p.key()] != line
		m.printed[p.key()] = line
		m.mu.Unlock()
		if changed {
			fmt.Fprintln(m.opts.Out, line)
		}
	}
}

// shutdown stops every pod (apps first, then their sidecars), then the
// control plane.
func (m *Mesh) shutdown() {
	m.mu.Lock()
	m.stopping = true
	pods := make([]*pod, 0, len(m.pods))
	for _, p := range m.pods {
		pods = append(pods, p)
	}
	m.mu.Unlock()
	if len(pods) > 0 {
		fmt.Fprintf(m.opts.Out, "stopping %d pods\n", len(pods))
	}
	for _, p := range pods {
		p.markTerminating()
		p.cancel()
	}
	m.writeState()
	m.wg.Wait()
	m.reconcile()
	m.close()
}

// close releases what start took; safe on a partly started mesh.
func (m *Mesh) close() {
	if m.stopDNS != nil {
		m.stopDNS()
		<-m.dnsDone
		m.stopDNS = nil
	}
	if m.cp != nil {
		if err := m.cp.Stop(); err != nil {
			m.log.Warn("control plane stopped with an error", "err", err)
		}
		m.cp = nil
	}
	_ = os.Remove(m.xdsSocket)
	if m.cpLogFile != nil {
		m.cpLogFile.Close()
		m.cpLogFile = nil
	}
	if m.ipam != nil {
		m.ipam.close()
		m.ipam = nil
	}
	if m.net != nil {
		m.net.close()
		m.net = nil
	}
	if m.lock != nil {
		m.lock.Close()
		m.lock = nil
	}
}

// enterFunc starts a pod's process inside its namespaces, through
// trellis itself (see EnterMain); the sidecar runs as the group the
// capture rules let through.
func (m *Mesh) enterFunc(p *pod, sidecar bool) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		gid := "-"
		if sidecar {
			gid = strconv.Itoa(ProxyID)
		}
		resolv := p.resolv
		if resolv == "" {
			resolv = "-"
		}
		cmd.Args = append([]string{m.trellisPath, EnterCommand, p.netns, resolv, gid, "--", cmd.Path}, cmd.Args[1:]...)
		cmd.Path = m.trellisPath
	}
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var errNoProxy = errors.New("trellis-proxy not found")
