package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/registry"
)

func newPortForwardCmd() *cobra.Command {
	var (
		namespace string
		addresses []string
		stateDir  string
	)
	cmd := &cobra.Command{
		Use:   "port-forward [-n NAMESPACE] [--address ADDR] svc/NAME|deploy/NAME|POD [LOCAL:]REMOTE...",
		Short: "Forward local ports to a pod of a running local mesh",
		Long: `Port-forward listens on local ports and forwards each connection to a pod
that 'trellis up' runs, as 'kubectl port-forward' does, so that a browser or
curl on this machine can reach a mesh service.

svc/NAME picks one ready pod that the Service selects, and REMOTE is a port
of the Service, forwarded to its targetPort. deploy/NAME picks a ready pod
of the Deployment; POD (or pod/POD) names the pod. For those, REMOTE is the
pod's port (a number or a named container port).

Each port is LOCAL:REMOTE, PORT (the same number on both sides) or :REMOTE
(a random local port; the one chosen is printed). Connections go straight
to the pod's app, like kubectl's: they do not pass through the pod's
sidecar (in transparent mode they are dialed from inside the pod's network
namespace, so the pod sees them come from the pod's own address). Port-forward runs until Ctrl-C, and stops when the pod or the mesh
goes away.`,
		Example: `  # Open the shop demo's frontend at http://127.0.0.1:8080/
  trellis port-forward svc/frontend 8080:9080

  # A random local port to the ratings pod's 9080
  trellis port-forward ratings-0 :9080`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError(cmd, errors.New("name a target and at least one port, e.g. trellis port-forward svc/frontend 8080:9080"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ports, err := parsePortSpecs(args[1:])
			if err != nil {
				return usageError(cmd, err)
			}
			st, err := runningMesh(stateDir)
			if err != nil {
				return err
			}
			pod, targets, err := resolveForward(st, namespace, args[0], ports)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			f := &forwarder{out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), podIP: pod.IP, netns: pod.NetNS, conns: map[net.Conn]struct{}{}}
			if err := f.listen(addresses, ports, targets); err != nil {
				f.close()
				return err
			}
			err = f.run(ctx, func() error { return watchPod(stateDirOr(stateDir), st, pod) })
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "error: %v\n", err)
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "the namespace of the service, deployment or pod")
	cmd.Flags().StringSliceVar(&addresses, "address", []string{"127.0.0.1"}, "addresses to listen on (comma-separated; localhost means 127.0.0.1 and ::1)")
	stateDirFlag(cmd, &stateDir)
	return cmd
}

// portSpec is one LOCAL:REMOTE; Local 0 means a random port. Remote is a
// number, or a port name.
type portSpec struct {
	Local  int
	Remote string
}

func parsePortSpecs(args []string) ([]portSpec, error) {
	var out []portSpec
	for _, a := range args {
		lport, remote, found := strings.Cut(a, ":")
		if !found {
			lport, remote = a, a
		}
		ps := portSpec{Remote: remote}
		if lport != "" {
			n, err := strconv.Atoi(lport)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("invalid local port %q in %q: use LOCAL:REMOTE, PORT or :REMOTE with ports 1-65535", lport, a)
			}
			ps.Local = n
		}
		if n, err := strconv.Atoi(remote); err == nil {
			if n < 1 || n > 65535 {
				return nil, fmt.Errorf("invalid remote port %q in %q: ports are 1-65535", remote, a)
			}
		} else if remote == "" {
			return nil, fmt.Errorf("invalid port %q: use LOCAL:REMOTE, PORT or :REMOTE, e.g. 8080:9080", a)
		}
		out = append(out, ps)
	}
	return out, nil
}

// resolveForward finds the pod to forward to and, for each port spec, the
// pod's port.
func resolveForward(st *local.State, ns, target string, ports []portSpec) (*local.PodState, []int, error) {
	kind, name, found := strings.Cut(target, "/")
	if !found {
		kind, name = "pod", target
	}
	switch kind {
	case "svc", "service", "services":
		svc := findService(st, ns, name)
		if svc == nil {
			return nil, nil, fmt.Errorf("no service %q in namespace %s (services there: %s)", name, ns, strings.Join(serviceNames(st, ns), ", "))
		}
		pod := readyPod(st, ns, func(p *local.PodState) bool { return len(svc.Selector) > 0 && registry.Selects(svc.Selector, p.Labels) })
		if pod == nil {
			return nil, nil, fmt.Errorf("service %s/%s has no ready pod to forward to: see `trellis status`", ns, name)
		}
		var targets []int
		for _, ps := range ports {
			sp := findServicePort(svc, ps.Remote)
			if sp == nil {
				var have []string
				for _, p := range svc.Ports {
					have = append(have, strconv.Itoa(int(p.Port)))
				}
				return nil, nil, fmt.Errorf("service %s does not have a service port %s (its ports: %s)", name, ps.Remote, strings.Join(have, ", "))
			}
			tp := sp.TargetPort
			if tp == "" {
				tp = strconv.Itoa(int(sp.Port))
			}
			port, err := podPort(pod, tp)
			if err != nil {
				return nil, nil, fmt.Errorf("service %s port %d: %w", name, sp.Port, err)
			}
			targets = append(targets, port)
		}
		return pod, targets, nil
	case "deploy", "deployment", "deployments", "pod", "pods", "po":
		var pod *local.PodState
		if strings.HasPrefix(kind, "deploy") {
			pod = readyPod(st, ns, func(p *local.PodState) bool { return p.Deployment == name })
			if pod == nil {
				return nil, nil, fmt.Errorf("deployment %s/%s has no ready pod to forward to: see `trellis status`", ns, name)
			}
		} else {
			p, err := st.FindPod(ns, name)
			if err != nil {
				return nil, nil, err
			}
			pod = p
		}
		var targets []int
		for _, ps := range ports {
			port, err := podPort(pod, ps.Remote)
			if err != nil {
				return nil, nil, err
			}
			targets = append(targets, port)
		}
		return pod, targets, nil
	default:
		return nil, nil, fmt.Errorf("cannot forward to %q: name svc/NAME, deploy/NAME or a pod", target)
	}
}

func findService(st *local.State, ns, name string) *local.ServiceState {
	for i := range st.Services {
		if s := &st.Services[i]; s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}

func serviceNames(st *local.State, ns string) []string {
	var names []string
	for _, s := range st.Services {
		if s.Namespace == ns {
			names = append(names, s.Name)
		}
	}
	return names
}

// findServicePort finds a Service port by number or name.
func findServicePort(s *local.ServiceState, port string) *local.ServicePort {
	for i := range s.Ports {
		p := &s.Ports[i]
		if strconv.Itoa(int(p.Port)) == port || (p.Name != "" && p.Name == port) {
			return p
		}
	}
	return nil
}

// readyPod is the first ready pod (by name) in ns that match accepts.
func readyPod(st *local.State, ns string, match func(*local.PodState) bool) *local.PodState {
	var ready []*local.PodState
	for i := range st.Pods {
		if p := &st.Pods[i]; p.Namespace == ns && p.Ready && match(p) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Name < ready[j].Name })
	return ready[0]
}

// podPort resolves a port number or a container port's name on pod.
func podPort(pod *local.PodState, port string) (int, error) {
	if n, err := strconv.Atoi(port); err == nil {
		return n, nil
	}
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if p.Name == port {
				return int(p.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("pod %s has no container port named %q", pod.Name, port)
}

// watchPod returns an error once the mesh stops or pod leaves it.
func watchPod(stateDir string, st *local.State, pod *local.PodState) error {
	if !st.Running() {
		return errors.New("the mesh has stopped")
	}
	now, err := local.ReadState(stateDir)
	if err != nil {
		return nil // mid-rewrite or unreadable: look again later
	}
	if now.Stopping {
		return errors.New("the mesh is stopping")
	}
	for _, p := range now.Pods {
		if p.Namespace == pod.Namespace && p.Name == pod.Name && p.IP == pod.IP && p.Status != "Terminating" {
			return nil
		}
	}
	return fmt.Errorf("pod %s/%s has gone: run port-forward again to pick another", pod.Namespace, pod.Name)
}

// forwarder owns the listeners and every forwarded connection: run's
// goroutines all end before it returns.
type forwarder struct {
	out, errOut io.Writer
	podIP       string
	netns       string // the pod's network namespace (transparent mode)
	outMu       sync.Mutex

	listeners []net.Listener
	targets   []int // the pod port of each listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (f *forwarder) printf(w io.Writer, format string, args ...any) {
	f.outMu.Lock()
	defer f.outMu.Unlock()
	fmt.Fprintf(w, format, args...)
}

// listen opens a listener per address and port, and prints each as
// kubectl does.
func (f *forwarder) listen(addresses []string, ports []portSpec, targets []int) error {
	var addrs []string
	for _, a := range addresses {
		if a == "localhost" {
			addrs = append(addrs, "127.0.0.1", "::1")
			continue
		}
		if net.ParseIP(a) == nil {
			return fmt.Errorf("--address %q is not an IP address (or localhost)", a)
		}
		addrs = append(addrs, a)
	}
	for i, ps := range ports {
		port := ps.Local
		for _, a := range addrs {
			l, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
			if err != nil {
				return fmt.Errorf("cannot listen on %s: %w", net.JoinHostPort(a, strconv.Itoa(port)), err)
			}
			// A random port is chosen once, then used on every address.
			port = l.Addr().(*net.TCPAddr).Port
			f.listeners = append(f.listeners, l)
			f.targets = append(f.targets, targets[i])
			f.printf(f.out, "Forwarding from %s -> %d\n", l.Addr(), targets[i])
		}
	}
	return nil
}

// run serves until ctx ends (nil) or check reports an error, polled each
// second.
func (f *forwarder) run(ctx context.Context, check func() error) error {
	for i, l := range f.listeners {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.accept(l, f.targets[i])
		}()
	}
	defer f.close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := check(); err != nil {
				return err
			}
		}
	}
}

func (f *forwarder) accept(l net.Listener, target int) {
	port := l.Addr().(*net.TCPAddr).Port
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.printf(f.errOut, "error accepting on %s: %v\n", l.Addr(), err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.printf(f.out, "Handling connection for %d\n", port)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.forward(c, target)
		}()
	}
}

// forward copies both ways between c and the pod's port, passing each
// side's end of writing on to the other (half-close).
func (f *forwarder) forward(c net.Conn, target int) {
	addr := net.JoinHostPort(f.podIP, strconv.Itoa(target))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	var up net.Conn
	var err error
	if f.netns != "" {
		up, err = local.DialPod(ctx, f.netns, "tcp", addr)
	} else {
		var d net.Dialer
		up, err = d.DialContext(ctx, "tcp", addr)
	}
	cancel()
	if err != nil {
		f.printf(f.errOut, "error forwarding port %d to pod: %v\n", target, err)
		return
	}
	if !f.track(up) {
		up.Close()
		return
	}
	defer f.untrack(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(up, c)
	}()
	pipe(c, up)
	<-done
}

// pipe copies src to dst, then closes dst for writing.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

// track registers a connection so close can end it; false once closed.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// close stops the listeners and every connection, and waits for their
// goroutines.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	for _, l := range f.listeners {
		l.Close()
	}
	f.wg.Wait()
}
