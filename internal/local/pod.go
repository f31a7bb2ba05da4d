package local

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellismesh/trellis/internal/identity/filecert"
	"github.com/trellismesh/trellis/internal/proxy/apphealth"
	"github.com/trellismesh/trellis/internal/proxy/sidecar"
)

// pod is one running pod: an optional sidecar, init containers run to
// completion, then the app containers, each supervised and probed.
//
// Order is what Istio users wish Kubernetes did: the sidecar starts first
// and the apps only once it is ready (holdApplicationUntilProxyStarts);
// on stop the pod leaves the endpoints first, the apps get SIGTERM, and
// the sidecar drains only after they have exited, so an app's last calls
// still have a proxy.
type pod struct {
	s     *supervisor
	w     *Workload
	name  string
	uid   string
	ip    netip.Addr
	hash  string
	start time.Time
	// netns and resolv are the pod's network namespace and resolv.conf
	// (transparent mode).
	netns, resolv string

	ctx    context.Context // ends when the pod is told to stop
	cancel context.CancelFunc
	done   chan struct{}

	sidecar *container // nil without injection
	inits   []*container
	apps    []*container

	// sidecarGrace is how long the sidecar gets to drain and exit
	// (MeshConfig defaultConfig.terminationDrainDuration, see proxySettings).
	sidecarGrace time.Duration

	mu          sync.Mutex
	initDone    bool
	terminating bool
	failed      string // why the pod cannot run, e.g. an init container failed for good

	// credential is the single-use token of the sidecar's latest start,
	// revoked at its next start and when the pod is gone (identity.go).
	credential string
	// identity is the SPIFFE ID credential stands for, as status shows it.
	identity string
	// files keeps a proxyless gRPC pod's certificate files (proxyless.go).
	files *filecert.Writer
}

func (p *pod) key() string { return p.w.Namespace + "/" + p.name }

func (p *pod) info() podInfo {
	return podInfo{Name: p.name, Namespace: p.w.Namespace, UID: p.uid, IP: p.ip.String(), ServiceAccount: p.w.Pod.ServiceAccount, Labels: p.w.Pod.Labels, Annotations: p.w.Pod.Annotations}
}

// nodeID is the sidecar's xDS node id (ARCHITECTURE.md's form).
func (p *pod) nodeID() string {
	ns := p.w.Namespace
	return "sidecar~" + p.ip.String() + "~" + p.name + "." + ns + "~" + ns + ".svc.cluster.local"
}

func (p *pod) adminSocket() string {
	return filepath.Join(p.s.stateDir, "run", p.w.Namespace+"."+p.name+".admin.sock")
}

func (p *pod) logPath(container string) string {
	return filepath.Join(p.s.stateDir, "logs", p.w.Namespace, p.name, container+".log")
}

// newPod prepares a pod's containers; run starts them.
func (s *supervisor) newPod(w *Workload, name string, ip netip.Addr) *pod {
	p := &pod{s: s, w: w, name: name, uid: newUID(), ip: ip, hash: w.Hash, start: time.Now(), done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	info := p.info()
	var adds []string
	if w.Pod.Sidecar && s.mode == "explicit" {
		adds = sidecarProxyEnv(ip.String())
	}
	adds = append(adds, p.proxylessEnv()...)
	mk := func(c Container, init bool) *container {
		env, declared := containerEnv(s.baseEnv, adds, info, c), declaredEnv(info, c)
		dir := s.dir
		if c.WorkingDir != "" {
			dir = c.WorkingDir
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(s.dir, dir)
			}
		}
		return &container{pod: p, spec: c, init: init, argv: expandCommand(c.Command, declared), env: env, declared: declared, dir: dir, logPath: p.logPath(c.Name), state: "Waiting", reason: "PodInitializing"}
	}
	for _, c := range w.Pod.InitContainers {
		p.inits = append(p.inits, mk(c, true))
	}
	apps, probers := w.Pod.Containers, ""
	if w.Pod.Sidecar {
		apps, probers = appProbes(w.Pod) // probes go through the sidecar's 15020
	}
	for _, c := range apps {
		p.apps = append(p.apps, mk(c, false))
	}
	if w.Pod.Sidecar {
		p.sidecar = p.newSidecar(probers)
	}
	return p
}

// newSidecar makes the pod's proxy; probers is its ISTIO_KUBE_APP_PROBERS
// (appProbes), "" for none.
func (p *pod) newSidecar(probers string) *container {
	s := p.s
	labels := ""
	for _, k := range slices.Sorted(maps.Keys(p.w.Pod.Labels)) {
		if labels != "" {
			labels += ","
		}
		labels += k + "=" + p.w.Pod.Labels[k]
	}
	mode := "NONE"
	if s.mode == "transparent" {
		mode = "REDIRECT"
	}
	env := dedupEnv(append(append([]string(nil), s.baseEnv...),
		"HOSTNAME="+p.name,
		"POD_IP="+p.ip.String(),
		"POD_NAME="+p.name,
		"POD_NAMESPACE="+p.w.Namespace,
		"SERVICE_ACCOUNT="+p.w.Pod.ServiceAccount,
		"POD_LABELS="+labels,
		"WORKLOAD_NAME="+p.w.Name,
		"INTERCEPTION_MODE="+mode,
		"DNS_CAPTURE="+fmt.Sprint(s.mode == "transparent"), // the sidecar answers the pod's captured DNS
		"XDS_ADDRESS=unix://"+s.xdsSocket,
		"ADMIN_SOCKET="+p.adminSocket(),
	))
	env = dedupEnv(append(env, p.sidecarIdentity()...)) // the secure XDS_ADDRESS wins
	if probers != "" {
		env = append(env, apphealth.EnvName+"="+probers)
	}
	if a := p.w.Pod.Annotations; a["prometheus.io/scrape"] == "true" {
		// The app's own metrics, merged into the sidecar's :15020 view as
		// Istio's injector arranges it.
		b, _ := json.Marshal(map[string]string{"scrape": "true", "port": a["prometheus.io/port"], "path": a["prometheus.io/path"]})
		env = append(env, sidecar.EnvPrometheusAnnotations+"="+string(b))
	}
	ready := &Probe{HTTPGet: true, Port: 15021, Path: "/healthz/ready", Scheme: "HTTP", Period: time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3}
	ps := proxySettingsFor(s.meshConfig())
	p.sidecarGrace = ps.grace
	c := Container{Name: "trellis-proxy", Command: append([]string{s.proxyPath}, ps.args...), Readiness: ready}
	return &container{pod: p, spec: c, sidecar: true, argv: c.Command, env: env, dir: s.stateDir, logPath: p.logPath(c.Name), state: "Waiting", reason: "ContainerCreating"}
}

// run drives the pod until stop. It is the pod's owner goroutine.
func (p *pod) run() {
	defer close(p.done)
	defer p.releaseIdentity()
	p.startProxyless()
	defer p.stopProxyless() // before releaseIdentity removes the files
	var wg sync.WaitGroup
	defer wg.Wait()
	sideCtx, stopSidecar := context.WithCancel(context.Background())
	defer stopSidecar()
	if p.sidecar != nil {
		wg.Add(1)
		go func() { defer wg.Done(); p.sidecar.supervise(sideCtx) }()
		if !p.waitReady(p.sidecar) {
			p.shutdown(&wg, stopSidecar)
			return
		}
	}
	for _, c := range p.inits {
		if !c.runToCompletion(p.ctx) {
			p.shutdown(&wg, stopSidecar)
			return
		}
	}
	p.mu.Lock()
	p.initDone = true
	p.mu.Unlock()
	var apps sync.WaitGroup
	for _, c := range p.apps {
		apps.Add(1)
		go func() { defer apps.Done(); c.supervise(p.ctx) }()
	}
	p.s.notify()
	<-p.ctx.Done()
	apps.Wait() // each app has had its SIGTERM and grace
	p.shutdown(&wg, stopSidecar)
}

// shutdown stops the sidecar after the apps are gone.
func (p *pod) shutdown(wg *sync.WaitGroup, stopSidecar context.CancelFunc) {
	stopSidecar()
	wg.Wait()
}

// waitReady waits for c's readiness, or the pod's stop.
func (p *pod) waitReady(c *container) bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if c.isReady() {
			return true
		}
		select {
		case <-p.ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// markTerminating takes the pod out of ready, so that it leaves the
// Service endpoints before its processes are told to stop.
func (p *pod) markTerminating() {
	p.mu.Lock()
	p.terminating = true
	p.mu.Unlock()
	p.s.notify()
}

// ready: every app container ready and the sidecar too.
func (p *pod) ready() bool {
	p.mu.Lock()
	if p.terminating || !p.initDone || p.failed != "" {
		p.mu.Unlock()
		return false
	}
	p.mu.Unlock()
	if p.sidecar != nil && !p.sidecar.isReady() {
		return false
	}
	for _, c := range p.apps {
		if !c.isReady() {
			return false
		}
	}
	return true
}

// status is the pod's state in kubectl's words.
func (p *pod) status() (phase, status string) {
	p.mu.Lock()
	terminating, initDone, failed := p.terminating, p.initDone, p.failed
	p.mu.Unlock()
	switch {
	case terminating:
		return "Running", "Terminating"
	case failed != "":
		return "Failed", failed
	}
	if p.sidecar != nil {
		if s := p.sidecar.snapshot(); s.Reason == "CrashLoopBackOff" || s.Reason == "RunContainerError" {
			return "Pending", s.Reason
		}
		if !p.sidecar.isReady() && !initDone {
			return "Pending", "PodInitializing"
		}
	}
	if !initDone {
		for i, c := range p.inits {
			s := c.snapshot()
			if s.State != "Terminated" || s.Reason != "Completed" {
				if s.Reason == "CrashLoopBackOff" || s.Reason == "Error" {
					return "Pending", "Init:" + s.Reason
				}
				return "Pending", fmt.Sprintf("Init:%d/%d", i, len(p.inits))
			}
		}
		return "Pending", "PodInitializing"
	}
	for _, c := range p.apps {
		if s := c.snapshot(); s.State != "Running" {
			if s.Reason != "" {
				return "Running", s.Reason
			}
			return "Running", s.State
		}
	}
	return "Running", "Running"
}

// state is the pod's entry in mesh.json.
func (p *pod) state() PodState {
	phase, status := p.status()
	ps := PodState{
		Name: p.name, Namespace: p.w.Namespace, Deployment: p.w.Name, IP: p.ip.String(),
		Labels: p.w.Pod.Labels, ServiceAccount: p.w.Pod.ServiceAccount,
		Identity: p.identity,
		Phase:    phase, Status: status, Ready: p.ready(), Created: p.start,
		NetNS: p.netns, Resolv: p.resolv,
	}
	for _, c := range p.inits {
		ps.Containers = append(ps.Containers, c.snapshot())
	}
	for _, c := range p.apps {
		ps.Containers = append(ps.Containers, c.snapshot())
	}
	if p.sidecar != nil {
		ps.Containers = append(ps.Containers, p.sidecar.snapshot())
		ps.Sidecar = &SidecarState{NodeID: p.nodeID(), AdminSocket: p.adminSocket()}
	}
	return ps
}

// object is the Pod the control plane sees.
func (p *pod) object() *corev1.Pod {
	spec := p.w.Pod.Spec.DeepCopy()
	spec.ServiceAccountName = p.w.Pod.ServiceAccount
	ready := corev1.ConditionFalse
	if p.ready() {
		ready = corev1.ConditionTrue
	}
	pod := &corev1.Pod{Spec: *spec}
	pod.Name, pod.Namespace, pod.Labels, pod.Annotations = p.name, p.w.Namespace, p.w.Pod.Labels, p.w.Pod.Annotations
	// The workload the pod belongs to, as a controller would record it:
	// telemetry's source_workload and destination_workload name it.
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: p.w.Name}}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = p.ip.String()
	pod.Status.PodIPs = []corev1.PodIP{{IP: p.ip.String()}}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}
	return pod
}

// container is one supervised process of a pod.
type container struct {
	pod     *pod
	spec    Container
	sidecar bool
	init    bool
	argv    []string
	env     []string
	// declared is the part of env the spec declares: all that mesh.json
	// records (declaredEnv).
	declared []string
	dir      string
	logPath  string

	mu       sync.Mutex
	proc     *proc
	restarts int
	state    string // Waiting, Running, Terminated
	reason   string
	ready    bool
	started  bool // the startup probe has passed (or there is none)
}

func (c *container) snapshot() ContainerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ContainerState{Name: c.spec.Name, Sidecar: c.sidecar, Init: c.init, Ports: containerPorts(c.spec.Ports), Command: c.argv, Env: c.declared, Dir: c.dir, Restarts: c.restarts, State: c.state, Reason: c.reason, Ready: c.ready, Log: c.logPath}
	if c.proc != nil && c.state == "Running" {
		s.PID, s.StartTime = c.proc.pid, c.proc.start
	}
	return s
}

func (c *container) isReady() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

func (c *container) set(f func()) {
	c.mu.Lock()
	f()
	c.mu.Unlock()
	c.pod.s.notify()
}

func (c *container) procSpec() procSpec {
	s := procSpec{name: c.pod.name + "/" + c.spec.Name, argv: c.argv, env: c.env, dir: c.dir, logPath: c.logPath, console: c.pod.s.console, enter: c.pod.s.node.enter(c.pod, c.sidecar)}
	if c.sidecar {
		s.extraFiles = c.pod.sidecarCredential // a new one at each start
	}
	return s
}

// backoff is the wait before restart n (n from 1): 1 s doubling to 30 s.
// A kubelet starts at 10 s and caps at 5 min; on a laptop a fixed bug
// should show in seconds.
func backoff(n int) time.Duration {
	d := time.Second
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// supervise runs the container, restarting it per the pod's restart
// policy with backoff, until ctx ends; then it stops it gracefully.
func (c *container) supervise(ctx context.Context) {
	policy := c.pod.w.Pod.RestartPolicy
	if c.sidecar {
		policy = corev1.RestartPolicyAlways
	}
	crashes := 0
	for {
		started := time.Now()
		code, ok := c.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			crashes = 0 // it ran fine for a while: not a crash loop
		}
		if !ok && policy != corev1.RestartPolicyAlways {
			// Could not even start; OnFailure and Never still give up.
			return
		}
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && code == 0) {
			return
		}
		crashes++
		wait := backoff(crashes)
		c.set(func() { c.state, c.reason = "Waiting", "CrashLoopBackOff" })
		c.pod.s.console.printf("%s/%s: exited (code %d); restarting in %s", c.pod.key(), c.spec.Name, code, wait)
		if !sleepCtx(ctx, wait) {
			return
		}
		c.set(func() { c.restarts++ })
	}
}

// runOnce starts the process and its probes and waits for its end (or
// ctx's, which stops it). ok is false when it could not start.
func (c *container) runOnce(ctx context.Context) (code int, ok bool) {
	pr, err := startProc(c.procSpec())
	if err != nil {
		c.set(func() { c.state, c.reason, c.ready = "Waiting", "RunContainerError", false })
		c.pod.s.console.printf("%s/%s: cannot start: %v", c.pod.key(), c.spec.Name, err)
		return -1, false
	}
	c.set(func() {
		c.proc, c.state, c.reason, c.started = pr, "Running", "", c.spec.Startup == nil
		c.ready = c.spec.Readiness == nil && !c.init && c.spec.Startup == nil
	})
	probeCtx, stopProbes := context.WithCancel(ctx)
	var probes sync.WaitGroup
	defer probes.Wait()
	defer stopProbes()
	if !c.init {
		c.startProbes(probeCtx, &probes, pr)
	}
	select {
	case <-pr.done:
	case <-ctx.Done():
		grace := c.pod.w.Pod.GracePeriod
		if c.sidecar {
			// The proxy drains for its --drain-duration and exits.
			grace = c.pod.sidecarGrace
		}
		pr.stop(grace)
	}
	reason, code := exitReason(pr.err)
	if ctx.Err() != nil {
		reason = "Completed"
	}
	c.set(func() { c.state, c.reason, c.ready = "Terminated", reason, false })
	return code, true
}

func (c *container) startProbes(ctx context.Context, wg *sync.WaitGroup, pr *proc) {
	p := c.pod
	mk := func(probe *Probe) *prober {
		return newProber(probe, p.ip.String(), c.env, c.dir, p.s.node.enter(p, false), p.s.node.probeDial())
	}
	var startupDone chan struct{}
	if c.spec.Startup != nil {
		startupDone = make(chan struct{})
		s := mk(c.spec.Startup)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, stop := context.WithCancel(ctx)
			defer stop()
			s.run(sctx, false, func(ok bool, err error) {
				if ok {
					c.set(func() {
						c.started = true
						c.ready = c.spec.Readiness == nil
					})
					close(startupDone)
					stop()
					return
				}
			})
		}()
	}
	gated := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if startupDone != nil {
				select {
				case <-ctx.Done():
					return
				case <-startupDone:
				}
			}
			f()
		}()
	}
	if c.spec.Readiness != nil {
		r := mk(c.spec.Readiness)
		gated(func() {
			r.run(ctx, false, func(ok bool, err error) {
				c.set(func() { c.ready = ok })
				if !ok {
					p.s.console.printf("%s/%s: readiness probe failed: %v", p.key(), c.spec.Name, err)
				}
			})
		})
	}
	if c.spec.Liveness != nil {
		l := mk(c.spec.Liveness)
		gated(func() {
			l.run(ctx, true, func(ok bool, err error) {
				if !ok {
					p.s.console.printf("%s/%s: liveness probe failed (%v): restarting", p.key(), c.spec.Name, err)
					// The supervisor sees the exit and restarts it.
					go pr.stop(p.w.Pod.GracePeriod)
				}
			})
		})
	}
}

// runToCompletion runs an init container until it exits 0, retrying
// failures with backoff unless the pod's policy is Never.
func (c *container) runToCompletion(ctx context.Context) bool {
	for n := 1; ; n++ {
		code, ok := c.runOnce(ctx)
		if ctx.Err() != nil {
			return false
		}
		if ok && code == 0 {
			c.set(func() { c.state, c.reason = "Terminated", "Completed" })
			return true
		}
		if c.pod.w.Pod.RestartPolicy == corev1.RestartPolicyNever {
			c.pod.mu.Lock()
			c.pod.failed = "Init:Error"
			c.pod.mu.Unlock()
			c.pod.s.notify()
			return false
		}
		wait := backoff(n)
		c.set(func() { c.state, c.reason = "Waiting", "CrashLoopBackOff" })
		if !sleepCtx(ctx, wait) {
			return false
		}
		c.set(func() { c.restarts++ })
	}
}
