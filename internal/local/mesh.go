package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/dashboard"
	"github.com/trellismesh/trellis/internal/watch"
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
	// PluginCADir is the user's own intermediate CA in Istio's plug-in
	// layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem),
	// used instead of the state dir's self-signed root and reloaded when
	// its files are replaced.
	PluginCADir string
	// DashboardAddr is where the web dashboard listens (127.0.0.1 on an
	// ephemeral port when empty; DashboardOff for none).
	DashboardAddr string
	// Profile is the --profile name (profile.go); "" is ProfileDefault.
	Profile string
	Log     *slog.Logger
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

// Mesh is a running local mesh: a control plane serving the manifests
// (over a Unix socket in the state dir) and three parts around it:
//   - node, the node network (node.go): pod IPs, and in transparent mode
//     the namespaces, Service VIPs, Service rules and DNS;
//   - supervisor (supervisor.go, pod.go): starts, rolls and stops pods to
//     match the Deployments and publishes them to the store;
//   - reporter (report.go): the pod lines and `mesh ready` on
//     Options.Out, and mesh.json.
//
// Its loop reconciles after every config change, pod change or tick.
type Mesh struct {
	opts      Options
	log       *slog.Logger
	dir       string
	stateDir  string
	xdsSocket string
	mode      string // "explicit" or "transparent"
	console   *console
	lock      *os.File
	cp        *controlplane.ControlPlane
	cpLogFile *os.File

	node       *nodeNetwork
	supervisor *supervisor
	reporter   *reporter
	dashboard  *dashboard.Server
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
	if err := prepareStateDir(stateDir); err != nil {
		return nil, err
	}
	m := &Mesh{
		opts: opts, log: log, dir: dir, stateDir: stateDir, mode: "explicit",
		xdsSocket: filepath.Join(stateDir, "xds.sock"),
		console:   &console{out: opts.Console},
	}
	if opts.Transparent {
		m.mode = "transparent"
	}
	// The reporter is made first: the control plane's log stays quiet
	// until it announces the mesh ready (see controlPlaneLog).
	m.reporter = &reporter{
		out: opts.Out, log: log, stateDir: stateDir,
		mode: m.mode, dir: dir, xds: m.xdsSocket,
		printed: map[string]string{},
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

	proxyPath := opts.ProxyPath
	if proxyPath == "" {
		if proxyPath, err = FindProxy(stateDir, m.console); err != nil {
			return nil, err
		}
	}
	trellisPath := opts.TrellisPath
	if trellisPath == "" {
		if trellisPath, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("cannot find the trellis binary: %w", err)
		}
	}
	if m.node, err = newNodeNetwork(opts.Transparent, stateDir, trellisPath, m.console, log); err != nil {
		return nil, err
	}
	_ = os.Remove(m.xdsSocket)
	lis, err := net.Listen("unix", m.xdsSocket)
	if err != nil {
		return nil, fmt.Errorf("cannot serve xDS on %s: %w", m.xdsSocket, err)
	}
	// The secure port (xDS and the CA over TLS) for the sidecars, see
	// identity.go; a socket in the state dir, so meshes never collide.
	secureSock := filepath.Join(stateDir, secureSocketName)
	_ = os.Remove(secureSock)
	secureLis, err := net.Listen("unix", secureSock)
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("cannot serve the CA on %s: %w", secureSock, err)
	}
	if err := clearPodIdentities(stateDir); err != nil {
		lis.Close()
		secureLis.Close()
		return nil, err
	}
	cpLog, err := m.controlPlaneLog()
	if err != nil {
		lis.Close()
		secureLis.Close()
		return nil, err
	}
	certTTL, maxCertTTL, err := workloadCertTTLs()
	if err != nil {
		lis.Close()
		secureLis.Close()
		return nil, err
	}
	profilePaths, err := profileConfigPaths(opts.Profile, stateDir)
	if err != nil {
		lis.Close()
		secureLis.Close()
		return nil, err
	}
	caDir := filepath.Join(stateDir, caDirName)
	if opts.PluginCADir != "" {
		caDir = ""
	}
	monLis, err := listenMonitoring(stateDir)
	if err != nil {
		lis.Close()
		secureLis.Close()
		return nil, err
	}
	m.cp, err = controlplane.Start(context.Background(), controlplane.Options{
		ConfigPaths: append([]string{dir}, profilePaths...), Recursive: opts.Recursive, XDSListener: lis, Log: cpLog, Transform: m.node.transform(),
		SecureXDSListener: secureLis, CADir: caDir, PluginCADir: opts.PluginCADir, MonitoringListener: monLis,
		CertTTL: certTTL, MaxCertTTL: maxCertTTL,
		// Sidecars trust this file whichever CA signs: the control plane
		// keeps it the current bundle, a plug-in CA's root-cert.pem too.
		RootCertFile: filepath.Join(stateDir, rootCertName),
		// Pods come and go in bursts at start; a short debounce still
		// batches them and keeps `mesh ready` quick.
		Debounce: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond,
	})
	if err != nil {
		lis.Close()
		secureLis.Close()
		monLis.Close()
		return nil, err
	}
	if err := m.node.start(m.cp.Store.Snapshot()); err != nil {
		return nil, err
	}
	m.supervisor = &supervisor{
		dir: dir, stateDir: stateDir, xdsSocket: m.xdsSocket, proxyPath: proxyPath, mode: m.mode,
		baseEnv: baseEnv(os.Environ(), []string{dir, filepath.Dir(trellisPath)}),
		cp:      m.cp, node: m.node, console: m.console,
		changed: make(chan struct{}, 1),
		pods:    map[string]*pod{}, workloads: map[string]*Workload{}, published: map[string]bool{},
	}
	m.reporter.sup = m.supervisor
	workloads, errs := Plan(m.cp.Store.Snapshot().Objects)
	if len(errs) > 0 {
		return nil, PlanErrors(errs)
	}
	for _, w := range workloads {
		m.supervisor.workloads[w.Namespace+"/"+w.Name] = w
	}
	if err := m.startDashboard(); err != nil {
		return nil, err
	}
	ok = true
	return m, nil
}

// controlPlaneLog writes the control plane's log to the state dir, and
// its warnings also to the console.
func (m *Mesh) controlPlaneLog() (*slog.Logger, error) {
	f, err := os.OpenFile(filepath.Join(m.stateDir, "logs", "controlplane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, stateFileMode)
	if err != nil {
		return nil, fmt.Errorf("cannot open the control plane's log: %w", err)
	}
	m.cpLogFile = f
	con := slog.NewTextHandler(m.console.writer("controlplane"), &slog.HandlerOptions{Level: slog.LevelWarn})
	return slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}),
		quietUntil{Handler: con, after: &m.reporter.announced},
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
	fmt.Fprintf(m.opts.Out, "starting mesh from %s (state dir %s, pod network %s, %s mode)\n", m.dir, m.stateDir, m.node.ipam.prefix, m.mode)
	m.reconcile()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			if !m.reporter.ready() {
				return fmt.Errorf("mesh not ready after %s: %s (see the logs under %s)", m.opts.Timeout, m.supervisor.notReady(), filepath.Join(m.stateDir, "logs"))
			}
		case <-changes:
			m.supervisor.replan()
			snap := m.cp.Store.Snapshot()
			pods, _ := m.supervisor.list()
			m.node.updateDNS(snap, pods)
			m.node.updateServices(snap)
		case <-m.supervisor.changed:
		case <-tick.C:
		}
		m.reconcile()
		if !m.reporter.ready() && m.supervisor.meshReady() {
			m.reporter.announce(started)
		}
	}
}

// reconcile brings the pods in line with the workloads, tells the store,
// then reports what changed.
func (m *Mesh) reconcile() {
	m.supervisor.reconcile()
	m.reporter.writeState()
	m.reporter.printChanges()
}

// shutdown stops every pod (apps first, then their sidecars), then the
// control plane.
func (m *Mesh) shutdown() {
	m.reporter.stopping(m.supervisor.markStopping())
	m.supervisor.stopPods()
	m.reporter.writeState()
	m.supervisor.wait()
	m.reconcile()
	m.close()
}

// close releases what start took; safe on a partly started mesh.
func (m *Mesh) close() {
	m.stopDashboard()
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
	if m.node != nil {
		m.node.close()
		m.node = nil
	}
	if m.lock != nil {
		m.lock.Close()
		m.lock = nil
	}
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var errNoProxy = errors.New("trellis-proxy not found")
