// Package apphealth answers a pod's rewritten Kubernetes probes on the
// sidecar's status port (15020), as Istio's pilot-agent does: the
// injector (here `trellis up`) points each container's readiness,
// liveness and startup probe at /app-health/CONTAINER/readyz|livez|startupz
// and hands the original probes to the proxy in ISTIO_KUBE_APP_PROBERS;
// the proxy runs the real probe (httpGet, tcpSocket or gRPC health)
// against the app from inside the pod. So a probe never needs to reach
// the app's port from outside, which STRICT mTLS refuses to plaintext.
//
// Standard library only (and the proxy's own gRPC framing): the proxy
// binary's dependencies are a list.
package apphealth

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
)

// EnvName is the environment variable that carries the probes (Istio's).
const EnvName = "ISTIO_KUBE_APP_PROBERS"

// Probers maps a status-port path to the container probe it runs
// (Istio's KubeAppProbers), e.g. "/app-health/web/readyz".
type Probers map[string]*Prober

// Prober is one container probe: exactly one of HTTPGet, TCPSocket and
// GRPC, with the probe's timeout. The JSON is Kubernetes' Probe's.
type Prober struct {
	HTTPGet        *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32            `json:"timeoutSeconds,omitempty"`
}

// HTTPGetAction is Kubernetes' HTTPGetAction with the port a number (the
// injector resolves named ports).
type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        Port         `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

// HTTPHeader is a header an HTTP probe sends.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TCPSocketAction is Kubernetes' TCPSocketAction.
type TCPSocketAction struct {
	Port Port   `json:"port"`
	Host string `json:"host,omitempty"`
}

// GRPCAction is Kubernetes' GRPCAction: a grpc.health.v1.Health/Check
// of Service ("" is the server as a whole).
type GRPCAction struct {
	Port    int32   `json:"port"`
	Service *string `json:"service,omitempty"`
}

// Port is a probe's port. Kubernetes' IntOrString; only a number is
// accepted here, as Istio's agent requires.
type Port int32

func (p *Port) UnmarshalJSON(b []byte) error {
	var n int32
	if err := json.Unmarshal(b, &n); err != nil {
		var s string
		if json.Unmarshal(b, &s) == nil {
			return fmt.Errorf("port %q: must be a number (named ports are resolved when the probe is rewritten)", s)
		}
		return fmt.Errorf("port %s: must be a number", b)
	}
	*p = Port(n)
	return nil
}

// pathPattern is the form of a probe path (Istio's, app-lifecycle hooks
// included).
var pathPattern = regexp.MustCompile(`^/(app-health|app-lifecycle)/[^/]+/(livez|readyz|startupz|prestopz|poststartz)$`)

// Parse reads ISTIO_KUBE_APP_PROBERS and checks every entry; errors are
// rooted at the entry's path ("/app-health/web/readyz".httpGet.port).
func Parse(s string) (Probers, error) {
	var ps Probers
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object of probes by path: %w", EnvName, err)
	}
	var errs []error
	paths := make([]string, 0, len(ps))
	for path := range ps {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		if err := check(path, ps[path]); err != nil {
			errs = append(errs, fmt.Errorf("%s[%q]%w", EnvName, path, err))
		}
	}
	return ps, errors.Join(errs...)
}

func check(path string, p *Prober) error {
	if !pathPattern.MatchString(path) {
		return fmt.Errorf(": the path must be /app-health/CONTAINER/readyz, livez or startupz")
	}
	if p == nil {
		return fmt.Errorf(": must set one of httpGet, tcpSocket or grpc")
	}
	n := 0
	var port int32
	var field string
	if p.HTTPGet != nil {
		n, port, field = n+1, int32(p.HTTPGet.Port), ".httpGet.port"
		if s := p.HTTPGet.Scheme; s != "" && s != "HTTP" && s != "HTTPS" {
			return fmt.Errorf(".httpGet.scheme: %q must be HTTP or HTTPS", s)
		}
	}
	if p.TCPSocket != nil {
		n, port, field = n+1, int32(p.TCPSocket.Port), ".tcpSocket.port"
	}
	if p.GRPC != nil {
		n, port, field = n+1, p.GRPC.Port, ".grpc.port"
	}
	if n != 1 {
		return fmt.Errorf(": must set exactly one of httpGet, tcpSocket or grpc")
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("%s: %d must be between 1 and 65535", field, port)
	}
	if p.TimeoutSeconds < 0 {
		return fmt.Errorf(".timeoutSeconds: must be >= 0")
	}
	return nil
}

// Options say where the app is.
type Options struct {
	// Target is the address the app is probed at: the pod IP, as a
	// kubelet and Istio's agent probe it.
	Target string
	// Source, when set, is the local address probes are made from. In
	// transparent mode it is 127.0.0.6, whose connections the capture
	// lets through to the app instead of sending them back to the proxy.
	Source net.IP
	// StatusPort is the port the probes arrive on; an HTTP probe's Host
	// header naming it is rewritten to the app's port (Istio's behaviour).
	StatusPort int
	Log        *slog.Logger
}

// Handler serves the probes. Requests under /app-health/ for which there
// is no probe get 400, as Istio's agent answers.
type Handler struct {
	probers Probers
	opts    Options
	log     *slog.Logger
}

// New returns a handler running ps against the app.
func New(ps Probers, opts Options) *Handler {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{probers: ps, opts: opts, log: log}
}

// maxBody is how much of the app's answer an HTTP probe passes on
// (Istio's 10 KiB).
const maxBody = 10 << 10

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := h.probers[r.URL.Path]
	if !ok {
		http.Error(w, "app prober config does not exist for "+r.URL.Path, http.StatusBadRequest)
		return
	}
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second // Kubernetes' default timeoutSeconds
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	var err error
	switch {
	case p.HTTPGet != nil:
		err = h.httpGet(ctx, w, r, p.HTTPGet)
	case p.TCPSocket != nil:
		err = h.tcp(ctx, p.TCPSocket)
	case p.GRPC != nil:
		err = h.grpc(ctx, r, p.GRPC)
	}
	if err != nil {
		h.log.Debug("app probe failed", "path", r.URL.Path, "err", err)
		if errors.Is(err, errAnswered) {
			return
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if p.HTTPGet == nil {
		w.WriteHeader(http.StatusOK)
	}
}

// errAnswered: the app's own failing status was passed on already.
var errAnswered = errors.New("the app answered a failing status")

func (h *Handler) dialer() *net.Dialer {
	d := &net.Dialer{}
	if h.opts.Source != nil {
		d.LocalAddr = &net.TCPAddr{IP: h.opts.Source}
	}
	return d
}

func (h *Handler) addr(port int32) string {
	return net.JoinHostPort(h.opts.Target, strconv.Itoa(int(port)))
}

// httpGet runs an HTTP probe as a kubelet would and passes on the app's
// status (a redirect as 200, the body up to maxBody): the kubelet judges
// it, 200-399 passing.
func (h *Handler) httpGet(ctx context.Context, w http.ResponseWriter, in *http.Request, g *HTTPGetAction) error {
	scheme := "http"
	if g.Scheme == "HTTPS" {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	addr := h.addr(int32(g.Port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return fmt.Errorf("probe URL: %w", err)
	}
	// The kubelet's headers (User-Agent, the probe's own) go on to the
	// app; a Host naming the status port names the app's port instead.
	req.Host = in.Host
	if host, port, err := net.SplitHostPort(in.Host); err == nil && port == strconv.Itoa(h.opts.StatusPort) {
		req.Host = net.JoinHostPort(host, strconv.Itoa(int(g.Port)))
	}
	for k, vs := range in.Header {
		req.Header[k] = slices.Clone(vs)
	}
	for _, hd := range g.HTTPHeaders {
		if http.CanonicalHeaderKey(hd.Name) == "Host" {
			req.Host = hd.Value
			continue
		}
		req.Header.Set(hd.Name, hd.Value)
	}
	tr := &http.Transport{
		DialContext:       h.dialer().DialContext,
		Proxy:             nil,
		DisableKeepAlives: true, // as a kubelet: no idle connection outlives a probe
		ForceAttemptHTTP2: true,
		// Kubelets do not verify HTTPS probe certificates either.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet semantics
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: sameHostRedirects}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", req.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// A redirect elsewhere passes (a kubelet's rule); without its
		// Location a 3xx cannot be passed on, so it becomes 200.
		w.WriteHeader(http.StatusOK)
		return nil
	}
	w.WriteHeader(resp.StatusCode)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_, _ = w.Write(body)
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("%w: %d", errAnswered, resp.StatusCode)
	}
	return nil
}

// sameHostRedirects follows redirects to the probed host, up to 10, and
// stops at one elsewhere (a kubelet's rules).
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

func (h *Handler) tcp(ctx context.Context, t *TCPSocketAction) error {
	c, err := h.dialer().DialContext(ctx, "tcp", h.addr(int32(t.Port)))
	if err != nil {
		return err
	}
	return c.Close()
}

// grpcHealthCheck is grpc.health.v1.Health's Check method.
const grpcHealthCheck = "/grpc.health.v1.Health/Check"

// servingStatus is HealthCheckResponse.ServingStatus SERVING.
const servingStatus = 1

// grpc runs a gRPC health check over plaintext HTTP/2, as a kubelet's
// gRPC probe does; only SERVING passes.
func (h *Handler) grpc(ctx context.Context, in *http.Request, g *GRPCAction) error {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols, DialContext: h.dialer().DialContext}
	defer tr.CloseIdleConnections()
	// HealthCheckRequest{service = 1}.
	var msg []byte
	if g.Service != nil && *g.Service != "" {
		msg = append(msg, 0x0a)
		msg = binary.AppendUvarint(msg, uint64(len(*g.Service)))
		msg = append(msg, *g.Service...)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+h.addr(g.Port)+grpcHealthCheck, bytes.NewReader(grpcwire.Frame(msg)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	ua := in.Header.Get("User-Agent")
	if ua == "" {
		ua = grpcwire.UserAgent
	}
	req.Header.Set("User-Agent", ua)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("gRPC health check of %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gRPC health check of %s: HTTP %s, not gRPC", req.URL.Host, resp.Status)
	}
	if st := grpcwire.Status(resp.Header); st != nil && st.Code != grpcwire.CodeOK {
		return fmt.Errorf("gRPC health check: %w", st)
	}
	body, err := grpcwire.ReadMessage(resp.Body, 1<<10)
	if err != nil {
		return fmt.Errorf("gRPC health check: reading the answer: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // the trailers come after the body
	if st := grpcwire.Status(resp.Trailer); st != nil && st.Code != grpcwire.CodeOK {
		return fmt.Errorf("gRPC health check: %w", st)
	}
	if s := healthStatus(body); s != servingStatus {
		return fmt.Errorf("gRPC health check: status %d, not SERVING", s)
	}
	return nil
}

// healthStatus reads HealthCheckResponse.status (field 1, a varint);
// 0 (UNKNOWN) when absent or malformed.
func healthStatus(b []byte) uint64 {
	status := uint64(0)
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return 0
		}
		b = b[n:]
		switch key & 7 {
		case 0: // varint
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return 0
			}
			b = b[n:]
			if key>>3 == 1 {
				status = v
			}
		case 2: // length-delimited
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return 0
			}
			b = b[n+int(l):]
		case 1:
			if len(b) < 8 {
				return 0
			}
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return 0
			}
			b = b[4:]
		default:
			return 0
		}
	}
	return status
}
