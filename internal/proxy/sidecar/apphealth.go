package sidecar

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/admin"
	"github.com/trellismesh/trellis/internal/proxy/apphealth"
)

// AppHealthPort is the status port where the pod's rewritten probes
// arrive (Istio's 15020): /app-health/CONTAINER/readyz|livez|startupz.
// Capture never takes it, so the kubelet reaches it in plaintext whatever
// the pod's PeerAuthentication says.
const AppHealthPort = 15020

// AppMetrics is where the app serves its own Prometheus metrics (the
// pod's prometheus.io/port and prometheus.io/path annotations, which
// Istio's injector passes on in ISTIO_PROMETHEUS_ANNOTATIONS).
type AppMetrics struct {
	Port int
	Path string
}

// serveStatus serves the status port (Istio's 15020): the app probes ps
// (ISTIO_KUBE_APP_PROBERS) under /app-health/, and, when stats is set,
// the merged Prometheus view of the pod under /stats/prometheus (what
// stats writes, then the app's own metrics when am names them), as
// Istio's agent merges them for prometheus.io annotations pointing at
// 15020. It listens on the pod IP in explicit mode and on every address
// in transparent mode, as health (15021) does. Each probe and scrape is
// made at the app from inside the pod: in transparent mode from
// 127.0.0.6, which the capture lets through to the app, as the proxy's
// inbound handoff does. Paths without a probe answer 400, other paths
// 404. It runs until the returned stop is called; a pod without probes
// still gets the port, as Istio's does.
func serveStatus(opts Options, ps apphealth.Probers, stats func(io.Writer) error, am *AppMetrics) (stop func(), err error) {
	p := &Proxy{opts: opts} // only for appSource
	target := opts.PodIP
	if !target.IsValid() {
		return nil, fmt.Errorf("app probes need the pod IP (POD_IP): they are made at it")
	}
	bindIP := target
	if opts.Mode == Transparent {
		bindIP = anyAddr()
	}
	hopts := apphealth.Options{Target: target.String(), StatusPort: AppHealthPort, Log: opts.Log}
	var src net.Addr
	if ip := p.appSource(true); ip.IsValid() {
		hopts.Source = net.IP(ip.AsSlice())
		src = &net.TCPAddr{IP: hopts.Source}
	}
	mux := http.NewServeMux()
	mux.Handle("/app-health/", apphealth.New(ps, hopts))
	if stats != nil {
		scrape := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext:       (&net.Dialer{LocalAddr: src}).DialContext,
			DisableKeepAlives: true,
		}}
		mux.HandleFunc("GET /stats/prometheus", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			if err := stats(w); err != nil {
				return
			}
			if am == nil {
				return
			}
			url := "http://" + net.JoinHostPort(target.String(), strconv.Itoa(am.Port)) + cmp.Or(am.Path, "/metrics")
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, url, nil)
			resp, err := scrape.Do(req)
			if err != nil {
				// The proxy's part stands; the app's absence is said the way
				// Istio's agent says it, in a comment a parser skips.
				fmt.Fprintf(w, "# the app's metrics at %s could not be read: %v\n", url, err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				fmt.Fprintf(w, "# the app's metrics at %s answered %s\n", url, resp.Status)
				return
			}
			io.Copy(w, io.LimitReader(resp.Body, 16<<20))
		})
	}
	addr := net.JoinHostPort(bindIP.String(), strconv.Itoa(AppHealthPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status listener on %s: %w (is another proxy running for this pod?)", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := admin.Serve(ctx, ln, mux); err != nil && opts.Log != nil {
			opts.Log.Error("status server failed", "addr", addr, "err", err)
		}
	}()
	return func() { cancel(); wg.Wait() }, nil
}

// EnvPrometheusAnnotations carries the pod's prometheus.io annotations to
// its sidecar, as Istio's injector does: {"scrape":"true","port":"9090",
// "path":"/metrics"}.
const EnvPrometheusAnnotations = "ISTIO_PROMETHEUS_ANNOTATIONS"

// ParsePrometheusAnnotations reads EnvPrometheusAnnotations: the app's
// metrics endpoint to merge, nil when the pod does not ask to be scraped.
func ParsePrometheusAnnotations(v string) (*AppMetrics, error) {
	var a struct{ Scrape, Port, Path string }
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return nil, fmt.Errorf("%s: %w (want JSON like {\"scrape\":\"true\",\"port\":\"9090\",\"path\":\"/metrics\"})", EnvPrometheusAnnotations, err)
	}
	if a.Scrape != "true" || a.Port == "" {
		return nil, nil
	}
	port, err := strconv.Atoi(a.Port)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("%s: port %q is not a port number (1..65535): fix the pod's prometheus.io/port annotation", EnvPrometheusAnnotations, a.Port)
	}
	return &AppMetrics{Port: port, Path: cmp.Or(a.Path, "/metrics")}, nil
}
