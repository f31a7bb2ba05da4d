package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The state dir holds everything one running mesh needs to be found and
// cleaned up: `trellis up` writes it, the companion commands (exec,
// status, logs, down, port-forward) read it.
//
//	lock                      flock held while `trellis up` runs
//	mesh.json                 State, rewritten atomically on every change
//	xds.sock                  the control plane's ADS
//	run/NS.POD.admin.sock     each sidecar's admin
//	logs/NS/POD/CONTAINER.log each process's output
//
// The dir and its folders are 0700 and its files 0600 (statedir.go).
//
//	bin/trellis-proxy         built here when run from a source checkout
const (
	stateFile = "mesh.json"
	lockFile  = "lock"
)

// StateDirEnv overrides the default state dir (./.trellis).
const StateDirEnv = "TRELLIS_HOME"

// DefaultStateDir is where a mesh keeps its state unless told otherwise.
func DefaultStateDir() string {
	if d := os.Getenv(StateDirEnv); d != "" {
		return d
	}
	return ".trellis"
}

// State is what mesh.json holds.
type State struct {
	// PID is the `trellis up` process; StartTime its start in clock ticks
	// since boot (/proc/PID/stat), so a reused PID is never mistaken for it.
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
	Mode      string `json:"mode"` // "explicit" or "transparent"
	// Dir is the manifests folder; commands run there.
	Dir       string     `json:"dir"`
	XDS       string     `json:"xds"`                 // unix:///… address of the control plane
	Dashboard string     `json:"dashboard,omitempty"` // the web dashboard's URL; "" when off
	Ready     bool       `json:"ready"`
	Stopping  bool       `json:"stopping,omitempty"`
	UpdatedAt time.Time  `json:"updatedAt"`
	Pods      []PodState `json:"pods"`
	// Services are the mesh's Services, for port-forward svc/NAME.
	Services []ServiceState `json:"services,omitempty"`
}

// ServiceState is one Service: which pods it selects, on which ports.
type ServiceState struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Selector  map[string]string `json:"selector,omitempty"`
	Ports     []ServicePort     `json:"ports"`
}

// ServicePort maps a Service port to the pods' port: TargetPort is a
// number, or the name of a container port ("" means Port).
type ServicePort struct {
	Name       string `json:"name,omitempty"`
	Port       int32  `json:"port"`
	TargetPort string `json:"targetPort,omitempty"`
	Protocol   string `json:"protocol,omitempty"`
}

// PodState is one pod of the mesh.
type PodState struct {
	Name           string            `json:"name"`
	Namespace      string            `json:"namespace"`
	Deployment     string            `json:"deployment"`
	IP             string            `json:"ip"`
	Labels         map[string]string `json:"labels,omitempty"`
	ServiceAccount string            `json:"serviceAccount"`
	// Identity is the SPIFFE ID the mesh CA issues the pod's sidecar
	// certificates for; empty for a pod without a sidecar, which has none.
	Identity string `json:"identity"`
	// Unenforced names the security policies that select the pod and are
	// not enforced yet ("AuthorizationPolicy default/payment-policy",
	// "PeerAuthentication istio-system/default (STRICT)").
	Unenforced []string `json:"unenforcedPolicies,omitempty"`
	// Phase is Pending, Running, Terminating or Failed; Status the
	// kubectl-style word for people (ContainerCreating, CrashLoopBackOff,
	// Running, Terminating, ...).
	Phase   string    `json:"phase"`
	Status  string    `json:"status"`
	Ready   bool      `json:"ready"`
	Created time.Time `json:"created"`
	// NetNS is the pod's network namespace path and Resolv its
	// resolv.conf (transparent mode).
	NetNS      string           `json:"netns,omitempty"`
	Resolv     string           `json:"resolv,omitempty"`
	Sidecar    *SidecarState    `json:"sidecar,omitempty"`
	Containers []ContainerState `json:"containers"`
}

// SidecarState is the pod's proxy as the control plane sees it.
type SidecarState struct {
	NodeID      string `json:"nodeID"`
	AdminSocket string `json:"adminSocket"`
	Connected   bool   `json:"connected"`
	Synced      bool   `json:"synced"`
	NACKs       int    `json:"nacks,omitempty"`
	LastNACK    string `json:"lastNACK,omitempty"`
}

// ContainerState is one process of a pod, with what `trellis exec` needs
// to run a command as that container.
type ContainerState struct {
	Name    string `json:"name"`
	Sidecar bool   `json:"sidecar,omitempty"`
	Init    bool   `json:"init,omitempty"`
	// Ports are the container's declared ports.
	Ports   []ContainerPort `json:"ports,omitempty"`
	Command []string        `json:"command"`
	// Env is the env the container's spec declares, NAME=VALUE, with
	// fields and $(VAR) filled: never the base trellis adds nor anything
	// of the user's environment (ContainerEnv reads the whole of it).
	Env []string `json:"env,omitempty"`
	Dir string   `json:"dir"`
	PID int      `json:"pid,omitempty"`
	// StartTime identifies PID's process (see State.StartTime); a new
	// `trellis up` stops what a killed one left running by it.
	StartTime uint64 `json:"startTime,omitempty"`
	Restarts  int    `json:"restarts"`
	State     string `json:"state"` // Waiting, Running, Terminated
	Reason    string `json:"reason,omitempty"`
	Ready     bool   `json:"ready"`
	Log       string `json:"log"`
}

// ContainerPort is a port a container declares.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
}

// ReadState reads the state of the mesh in stateDir. It says plainly when
// no mesh was ever started there.
func ReadState(stateDir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no mesh in %s: start one with `trellis up DIR`, or point at its state dir with --state-dir or %s", stateDir, StateDirEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read mesh state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("mesh state %s is corrupt (%w): stop the mesh and remove the state dir", filepath.Join(stateDir, stateFile), err)
	}
	return &s, nil
}

// Running says whether the `trellis up` that wrote s is still alive.
func (s *State) Running() bool {
	return s.PID > 0 && processStartTime(s.PID) == s.StartTime && s.StartTime != 0
}

// FindPod finds a pod by name, or a Deployment by name (its first ready
// pod, else its first pod), in namespace ns.
func (s *State) FindPod(ns, name string) (*PodState, error) {
	var first *PodState
	for i := range s.Pods {
		p := &s.Pods[i]
		if p.Namespace != ns {
			continue
		}
		if p.Name == name {
			return p, nil
		}
		if p.Deployment == name {
			if p.Ready {
				return p, nil
			}
			if first == nil {
				first = p
			}
		}
	}
	if first != nil {
		return first, nil
	}
	var names []string
	for _, p := range s.Pods {
		if p.Namespace == ns {
			names = append(names, p.Name)
		}
	}
	return nil, fmt.Errorf("no pod or deployment %q in namespace %s (pods there: %s)", name, ns, strings.Join(names, ", "))
}

// writeState replaces mesh.json atomically, so readers never see half.
func writeState(stateDir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(stateDir, ".mesh-*.json")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(stateDir, stateFile))
}

// lockStateDir takes the state dir's lock, so only one `trellis up` runs
// on it. The lock is released by the kernel when the process dies, which
// is how a later `up` knows the old one is gone.
func lockStateDir(stateDir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(stateDir, lockFile), os.O_CREATE|os.O_RDWR, stateFileMode)
	if err != nil {
		return nil, fmt.Errorf("cannot open the state dir's lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("a mesh is already running on state dir %s: stop it with `trellis down`, or use another --state-dir", stateDir)
		}
		return nil, fmt.Errorf("cannot lock the state dir: %w", err)
	}
	return f, nil
}

// Locked says whether a `trellis up` holds stateDir's lock (it may be
// running even when mesh.json says otherwise, e.g. while it stops).
func Locked(stateDir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(stateDir, lockFile), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return true, nil
		}
		return false, err
	}
	// Closing f releases the lock taken just now.
	return false, nil
}

// DialPod dials addr from inside the pod network namespace at netns
// (PodState.NetNS, transparent mode), where pod IPs are reachable.
func DialPod(ctx context.Context, netns, network, addr string) (net.Conn, error) {
	return dialIn(netns)(ctx, network, addr)
}

// processStartTime is field 22 of /proc/PID/stat (starttime), or 0 when
// the process does not exist.
func processStartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state), so starttime (22) is fields[19].
	if len(fields) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(fields[19], 10, 64)
	return v
}
