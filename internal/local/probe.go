package local

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/proxy/apphealth"
)

// prober runs one probe of a container from outside the pod, as a
// kubelet does: straight to the pod IP, never through a proxy (a meshed
// pod's probes were rewritten to its sidecar's status port, appProbes).
type prober struct {
	probe  *Probe
	ip     string
	env    []string
	dir    string
	enter  func(*exec.Cmd)
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	client *http.Client
}

// newProber makes a prober; dial, when set, is how connections to the
// pod are made (from the node namespace in transparent mode).
func newProber(pr *Probe, ip string, env []string, dir string, enter func(*exec.Cmd), dial func(ctx context.Context, network, addr string) (net.Conn, error)) *prober {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return &prober{probe: pr, ip: ip, env: env, dir: dir, enter: enter, dial: dial, client: &http.Client{
		Transport: &http.Transport{
			DialContext:       dial,
			Proxy:             nil, // probes go to the pod, never through a proxy
			DisableKeepAlives: true,
			// A kubelet does not verify HTTPS probe certificates either.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet semantics
		},
		// Redirects are followed to the same host only by a kubelet; a
		// 3xx already counts as success, so none are followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// check runs the probe once.
func (p *prober) check(ctx context.Context) error {
	pr := p.probe
	ctx, cancel := context.WithTimeout(ctx, pr.Timeout)
	defer cancel()
	host := p.ip
	if pr.Host != "" {
		host = pr.Host
	}
	addr := net.JoinHostPort(host, strconv.Itoa(int(pr.Port)))
	switch {
	case pr.HTTPGet:
		scheme := "http"
		if pr.Scheme == "HTTPS" {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+pr.Path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/trellis")
		for _, h := range pr.Headers {
			if http.CanonicalHeaderKey(h[0]) == "Host" {
				req.Host = h[1]
				continue
			}
			req.Header.Add(h[0], h[1])
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case pr.TCP:
		c, err := p.dial(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	default:
		path, err := LookPath(pr.Exec[0], p.env)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, path, pr.Exec[1:]...)
		cmd.Args[0] = pr.Exec[0]
		cmd.Env, cmd.Dir = p.env, p.dir
		if p.enter != nil {
			p.enter(cmd)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("exec probe failed: %w: %s", err, trimOutput(out))
		}
		return nil
	}
}

func trimOutput(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// run probes until ctx ends, calling report with each change of the
// result as the thresholds decide it (initial is the result assumed
// before the first probe: false for readiness, true for liveness).
func (p *prober) run(ctx context.Context, initial bool, report func(ok bool, err error)) {
	pr := p.probe
	if pr.InitialDelay > 0 {
		if !sleepCtx(ctx, pr.InitialDelay) {
			return
		}
	}
	state := initial
	var successes, failures int
	// Until the first success, readiness is probed fast so that pods come
	// up in a second rather than a period; a kubelet would wait the period.
	fast := !initial
	for {
		err := p.check(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			successes, failures = successes+1, 0
			fast = false
			if !state && successes >= pr.SuccessThreshold {
				state = true
				report(true, nil)
			}
		} else {
			successes, failures = 0, failures+1
			if state && failures >= pr.FailureThreshold {
				state = false
				report(false, err)
			}
		}
		wait := pr.Period
		if fast && wait > 200*time.Millisecond {
			wait = 200 * time.Millisecond
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// sleepCtx waits d, or less if ctx ends first; it says whether the whole
// wait passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// appHealthPort is the sidecar's status port (sidecar.AppHealthPort),
// where rewritten probes go.
const appHealthPort = 15020

// rewriteProbesAnnotation turns the rewrite off for a pod when "false"
// (Istio's annotation; Istio rewrites by default).
const rewriteProbesAnnotation = "sidecar.istio.io/rewriteAppHTTPProbers"

// appProbes rewrites the probes of a meshed pod's app containers as
// Istio's injector does: each httpGet, tcpSocket and grpc readiness,
// liveness and startup probe becomes an HTTP GET of the sidecar's
// /app-health/CONTAINER/readyz|livez|startupz on the status port, and the
// original probes go to the sidecar in ISTIO_KUBE_APP_PROBERS (returned,
// "" when nothing was rewritten), which runs them against the app from
// inside the pod. So probes never need the app's port from outside, where
// STRICT mTLS refuses plaintext. exec probes run as they are.
func appProbes(pt PodTemplate) ([]Container, string) {
	if v, err := strconv.ParseBool(pt.Annotations[rewriteProbesAnnotation]); err == nil && !v {
		return pt.Containers, ""
	}
	probers := apphealth.Probers{}
	out := make([]Container, len(pt.Containers))
	for i, c := range pt.Containers {
		grpcService := func(kind string) *string { return specGRPCService(pt, i, kind) }
		for _, pr := range []struct {
			probe **Probe
			kind  string
		}{{&c.Readiness, "readyz"}, {&c.Liveness, "livez"}, {&c.Startup, "startupz"}} {
			orig := *pr.probe
			if orig == nil || len(orig.Exec) > 0 {
				continue
			}
			path := "/app-health/" + c.Name + "/" + pr.kind
			probers[path] = appProber(orig, grpcService(pr.kind))
			rewritten := *orig
			rewritten.HTTPGet, rewritten.TCP, rewritten.Exec = true, false, nil
			rewritten.Port, rewritten.Path, rewritten.Scheme, rewritten.Host = appHealthPort, path, "HTTP", ""
			if !orig.HTTPGet {
				rewritten.Headers = nil
			}
			*pr.probe = &rewritten
		}
		out[i] = c
	}
	if len(probers) == 0 {
		return out, ""
	}
	b, _ := json.Marshal(probers) // plain structs: cannot fail
	return out, string(b)
}

// appProber is the original probe as the sidecar runs it.
func appProber(pr *Probe, grpcService *string) *apphealth.Prober {
	out := &apphealth.Prober{TimeoutSeconds: int32(pr.Timeout / time.Second)}
	switch {
	case pr.HTTPGet:
		g := &apphealth.HTTPGetAction{Path: pr.Path, Port: apphealth.Port(pr.Port), Host: pr.Host, Scheme: pr.Scheme}
		for _, h := range pr.Headers {
			g.HTTPHeaders = append(g.HTTPHeaders, apphealth.HTTPHeader{Name: h[0], Value: h[1]})
		}
		out.HTTPGet = g
	case grpcService != nil:
		// Planned as a TCP check (a kubelet here has no gRPC client); the
		// sidecar makes the real gRPC health check.
		out.GRPC = &apphealth.GRPCAction{Port: pr.Port, Service: grpcService}
	default:
		out.TCPSocket = &apphealth.TCPSocketAction{Port: apphealth.Port(pr.Port), Host: pr.Host}
	}
	return out
}

// specGRPCService is the service of container i's grpc probe of kind,
// from the pod spec as written: a pointer ("" checks the whole server)
// when the probe is grpc, nil otherwise.
func specGRPCService(pt PodTemplate, i int, kind string) *string {
	if pt.Spec == nil || i >= len(pt.Spec.Containers) || pt.Spec.Containers[i].Name != pt.Containers[i].Name {
		return nil
	}
	c := pt.Spec.Containers[i]
	pr := map[string]*corev1.Probe{"readyz": c.ReadinessProbe, "livez": c.LivenessProbe, "startupz": c.StartupProbe}[kind]
	if pr == nil || pr.GRPC == nil {
		return nil
	}
	svc := ""
	if pr.GRPC.Service != nil {
		svc = *pr.GRPC.Service
	}
	return &svc
}
