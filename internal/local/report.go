package local

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
)

// reporter is what the mesh tells its user: the pod lines and `mesh
// ready` on Options.Out, and mesh.json in the state dir (state.go), which
// `trellis status` and the other companion commands read. It only reads
// the pods (through the supervisor) and the control plane; processes'
// output and warnings go to the console (process.go) from wherever they
// happen.
//
// mu guards printed and lastState; readyAt is set once, by the mesh's
// loop, which is also the only caller of writeState until shutdown.
type reporter struct {
	out      io.Writer
	log      *slog.Logger
	stateDir string
	// mesh.json's header, fixed at start.
	mode, dir, xds string
	dashboard      string // its URL, "" when off

	sup *supervisor

	// announced is set once `mesh ready` is printed (see quietUntil).
	announced atomic.Bool
	readyAt   time.Time

	mu        sync.Mutex
	printed   map[string]string // pod key → its last line on out
	lastState []byte            // mesh.json's content last written
}

// ready says whether `mesh ready` has been printed.
func (r *reporter) ready() bool { return !r.readyAt.IsZero() }

// announce prints `mesh ready` and records it in mesh.json.
func (r *reporter) announce(started time.Time) {
	r.readyAt = time.Now()
	r.announced.Store(true)
	r.writeState()
	fmt.Fprintf(r.out, "mesh ready: %s in %s\n", r.summary(), time.Since(started).Round(10*time.Millisecond))
}

// stopping announces the shutdown of n pods.
func (r *reporter) stopping(n int) {
	if n > 0 {
		fmt.Fprintf(r.out, "stopping %d pods\n", n)
	}
}

func (r *reporter) summary() string {
	pods, _ := r.sup.list()
	sidecars := 0
	for _, p := range pods {
		if p.sidecar != nil {
			sidecars++
		}
	}
	return fmt.Sprintf("%d pods, %d sidecars in sync", len(pods), sidecars)
}

// currentState is mesh.json's content now.
func (r *reporter) currentState() *State {
	st := r.sup.sidecars()
	pods, stopping := r.sup.list()
	s := &State{PID: os.Getpid(), StartTime: processStartTime(os.Getpid()), Mode: r.mode, Dir: r.dir, XDS: "unix://" + r.xds, Dashboard: r.dashboard, Ready: r.ready(), Stopping: stopping}
	snap := r.sup.cp.Store.Snapshot()
	s.Services = services(snap)
	policies := newSecurityPolicies(snap)
	for _, p := range pods {
		ps := p.state()
		ps.Unenforced = policies.unenforced(ps.Namespace, ps.Labels)
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
func (r *reporter) writeState() {
	s := r.currentState()
	// Compared as JSON (before UpdatedAt is set): what readers see, and
	// free of pointer addresses that change on every call.
	key, err := json.Marshal(s)
	if err != nil {
		r.log.Warn("cannot encode mesh state", "err", err)
		return
	}
	r.mu.Lock()
	same := bytes.Equal(r.lastState, key)
	r.lastState = key
	r.mu.Unlock()
	if same {
		return
	}
	s.UpdatedAt = time.Now()
	if err := writeState(r.stateDir, s); err != nil {
		r.log.Warn("cannot write mesh state", "err", err)
	}
}

// printChanges prints each pod whose state changed.
func (r *reporter) printChanges() {
	pods, _ := r.sup.list()
	sortPods(pods)
	for _, p := range pods {
		_, status := p.status()
		line := fmt.Sprintf("pod %-32s %-15s %s", p.key(), p.ip, status)
		if p.ready() {
			line += " (ready)"
		}
		r.mu.Lock()
		changed := r.printed[p.key()] != line
		r.printed[p.key()] = line
		r.mu.Unlock()
		if changed {
			fmt.Fprintln(r.out, line)
		}
	}
}
