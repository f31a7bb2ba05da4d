package local

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/xds"
)

// supervisor is the mesh's kubelet and Deployment controller in one: it
// keeps the running pods (pod.go) in line with the workloads planned from
// the Deployments, rolling changed ones, and tells the store about each
// pod (publish), as a kubelet reports pod status. Pods get their address
// from the node network.
//
// mu guards pods, workloads, published and stopping; a pod's own state
// has its pod's lock, taken under mu where both are needed.
type supervisor struct {
	// How pods are started, fixed at start.
	dir       string // the manifests folder, a container's working dir
	stateDir  string
	xdsSocket string
	proxyPath string
	mode      string // "explicit" or "transparent"
	baseEnv   []string

	cp      *controlplane.ControlPlane
	node    *nodeNetwork
	console *console

	// changed is signalled when a pod or container changes state, so the
	// mesh's loop reconciles and reports at once.
	changed chan struct{}
	wg      sync.WaitGroup // pod and terminator goroutines

	mu        sync.Mutex
	pods      map[string]*pod      // "ns/name", terminating ones included
	workloads map[string]*Workload // desired, "ns/name"
	published map[string]bool      // pod key → the Ready the store has
	stopping  bool
}

func (s *supervisor) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// list returns the pods, terminating ones included, and whether the mesh
// is stopping.
func (s *supervisor) list() (pods []*pod, stopping bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pods = make([]*pod, 0, len(s.pods))
	for _, p := range s.pods {
		pods = append(pods, p)
	}
	return pods, s.stopping
}

// replan re-reads the Deployments after a config change. A Deployment
// whose new version cannot run locally keeps its last good workload.
func (s *supervisor) replan() {
	snap := s.cp.Store.Snapshot()
	workloads, errs := Plan(snap.Objects)
	for _, e := range errs {
		s.console.printf("config: %v (the running pods keep their last good version)", e)
	}
	next := map[string]*Workload{}
	for _, o := range snap.OfKind(config.Deployment) {
		if _, ok := o.Spec.(*appsv1.Deployment); ok {
			k := o.Namespace + "/" + o.Name
			s.mu.Lock()
			if old := s.workloads[k]; old != nil {
				next[k] = old
			}
			s.mu.Unlock()
		}
	}
	for _, w := range workloads {
		next[w.Namespace+"/"+w.Name] = w
	}
	s.mu.Lock()
	s.workloads = next
	s.mu.Unlock()
}

// reconcile starts and stops pods to match the workloads, rolling changed
// ones one pod at a time (a new pod ready before an old one stops), then
// tells the store what changed.
func (s *supervisor) reconcile() {
	s.mu.Lock()
	stopping := s.stopping
	// Finished pods leave.
	for k, p := range s.pods {
		select {
		case <-p.done:
			delete(s.pods, k)
			s.node.removePod(p)
		default:
		}
	}
	var starts []*Workload
	var stops []*pod
	if !stopping {
		byWorkload := map[string][]*pod{}
		for _, p := range s.pods {
			if !p.isTerminating() {
				k := p.w.Namespace + "/" + p.w.Name
				byWorkload[k] = append(byWorkload[k], p)
			}
		}
		for k, pods := range byWorkload {
			if s.workloads[k] == nil {
				stops = append(stops, pods...)
			}
		}
		for k, w := range s.workloads {
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
	s.mu.Unlock()

	for _, w := range starts {
		s.startPod(w)
	}
	for _, p := range stops {
		s.terminate(p)
	}
	s.publish()
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
func (s *supervisor) startPod(w *Workload) {
	addr, err := s.node.addPod(w)
	if err != nil {
		s.console.printf("cannot start a pod of %s/%s: %v", w.Namespace, w.Name, err)
		return
	}
	s.mu.Lock()
	name := ""
	for i := 0; ; i++ {
		name = fmt.Sprintf("%s-%d", w.Name, i)
		if s.pods[w.Namespace+"/"+name] == nil {
			break
		}
	}
	p := s.newPod(w, name, addr.ip)
	p.netns, p.resolv = addr.netns, addr.resolv
	s.pods[p.key()] = p
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p.run()
		s.notify()
	}()
}

// terminate takes p out of the endpoints, waits (bounded) until every
// sidecar has that change, then stops its processes: requests that were
// routed to it before still find it there.
func (s *supervisor) terminate(p *pod) {
	p.markTerminating()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !s.isStopping() {
			s.mu.Lock()
			ready, present := s.published[p.key()]
			s.mu.Unlock()
			if !present || !ready {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		v := s.cp.Store.Snapshot().Version
		for time.Now().Before(deadline) && !s.isStopping() && !s.synced(v, p) {
			time.Sleep(20 * time.Millisecond)
		}
		p.cancel()
	}()
}

func (s *supervisor) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// markStopping stops reconciling: no pod starts or is replaced from now
// on. It returns how many pods there are to stop.
func (s *supervisor) markStopping() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	return len(s.pods)
}

// stopPods tells every pod to stop: apps first, then their sidecars (see
// pod.run); wait waits until they have.
func (s *supervisor) stopPods() {
	pods, _ := s.list()
	for _, p := range pods {
		p.markTerminating()
		p.cancel()
	}
}

func (s *supervisor) wait() { s.wg.Wait() }

// publish tells the store about pods, one store source per pod: a pod's
// change replaces only its own object (with one source for all pods, every
// readiness change would resend them all), removal is dropping its source,
// and each change is one store version as before. A Kubernetes informer,
// which also sees one object per event, would plug in the same way.
func (s *supervisor) publish() {
	var sink store.Sink = s.cp.Store
	s.mu.Lock()
	pods := make([]*pod, 0, len(s.pods))
	for _, p := range s.pods {
		pods = append(pods, p)
	}
	gone := map[string]bool{}
	for k := range s.published {
		gone[k] = true
	}
	s.mu.Unlock()
	for _, p := range pods {
		k := p.key()
		delete(gone, k)
		ready := p.ready()
		s.mu.Lock()
		was, present := s.published[k]
		s.mu.Unlock()
		if present && was == ready {
			continue
		}
		obj := p.object()
		sink.Apply(podSource(k), []*config.Object{{
			Source: config.Source{File: "trellis up"}, APIVersion: "v1", GroupKind: config.Pod,
			Namespace: p.w.Namespace, Name: p.name, Labels: obj.Labels, Annotations: obj.Annotations, Spec: obj,
		}}, nil)
		s.mu.Lock()
		s.published[k] = ready
		s.mu.Unlock()
	}
	for k := range gone {
		sink.Remove(podSource(k))
		s.mu.Lock()
		delete(s.published, k)
		s.mu.Unlock()
	}
}

// podSource names the store source of the pod with key "NS/NAME". It is
// no file path (FindFiles yields only .yaml, .yml and .json names), and
// its objects' positions read "trellis up".
func podSource(key string) string { return "trellis up: pod " + key }

// sidecars maps node id → the control plane's view of that proxy.
func (s *supervisor) sidecars() map[string]xds.ProxyStatus {
	out := map[string]xds.ProxyStatus{}
	for _, st := range s.cp.XDS.Status() {
		out[st.ID] = st
	}
	return out
}

// synced says whether every sidecar (but skip's) runs config at least as
// new as store version v.
func (s *supervisor) synced(v uint64, skip *pod) bool {
	if s.cp.XDS.PushedVersion() < v {
		return false
	}
	st := s.sidecars()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pods {
		if p == skip || p.sidecar == nil || p.isTerminating() {
			continue
		}
		x, ok := st[p.nodeID()]
		if !ok || !x.Synced || x.Version < v {
			return false
		}
	}
	return true
}

// meshReady: every workload has its pods, all ready, and every sidecar
// has ACKed config that includes them.
func (s *supervisor) meshReady() bool {
	return s.notReady() == "" && s.synced(s.cp.Store.Snapshot().Version, nil)
}

// notReady names what keeps the mesh from being ready ("" when nothing).
func (s *supervisor) notReady() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var why []string
	count := map[string]int{}
	for _, p := range s.pods {
		k := p.w.Namespace + "/" + p.w.Name
		w := s.workloads[k]
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
	for k, w := range s.workloads {
		if count[k] < w.Replicas {
			why = append(why, fmt.Sprintf("deployment %s has %d of %d pods", k, count[k], w.Replicas))
		}
	}
	if len(why) == 0 {
		st := s.sidecars()
		for _, p := range s.pods {
			if p.sidecar == nil {
				continue
			}
			if x, ok := st[p.nodeID()]; !ok {
				why = append(why, fmt.Sprintf("pod %s: sidecar not connected to the control plane", p.key()))
			} else if !x.Synced {
				why = append(why, fmt.Sprintf("pod %s: sidecar has not ACKed its config%s", p.key(), nackNote(x)))
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
