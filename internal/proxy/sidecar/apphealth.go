package sidecar

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/trellismesh/trellis/internal/proxy/admin"
	"github.com/trellismesh/trellis/internal/proxy/apphealth"
)

// AppHealthPort is the status port where the pod's rewritten probes
// arrive (Istio's 15020): /app-health/CONTAINER/readyz|livez|startupz.
// Capture never takes it, so the kubelet reaches it in plaintext whatever
// the pod's PeerAuthentication says.
const AppHealthPort = 15020

// ServeAppHealth serves the app probes ps (ISTIO_KUBE_APP_PROBERS) on
// AppHealthPort: on the pod IP in explicit mode, on every address in
// transparent mode, as health (15021) is. Each probe is run against the
// app at the pod IP from inside the pod: in transparent mode from
// 127.0.0.6, which the capture lets through to the app, as the proxy's
// inbound handoff does. Paths without a probe answer 400, other paths
// 404. It runs beside the Proxy, for as long as the returned stop is not
// called; a pod without probes still gets the port, as Istio's does.
func ServeAppHealth(opts Options, ps apphealth.Probers) (stop func(), err error) {
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
	if src := p.appSource(true); src.IsValid() {
		hopts.Source = net.IP(src.AsSlice())
	}
	mux := http.NewServeMux()
	mux.Handle("/app-health/", apphealth.New(ps, hopts))
	addr := net.JoinHostPort(bindIP.String(), strconv.Itoa(AppHealthPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("app health listener on %s: %w (is another proxy running for this pod?)", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := admin.Serve(ctx, ln, mux); err != nil && opts.Log != nil {
			opts.Log.Error("app health server failed", "addr", addr, "err", err)
		}
	}()
	return func() { cancel(); wg.Wait() }, nil
}
