package sidecar

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/admin"
	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/tunnel"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/telemetry/accesslog"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
)

// StatsPort serves the proxy's Prometheus metrics (Istio's 15090).
const StatsPort = 15090

// HeaderDestinationService tells the server's sidecar, on a tunnel's
// CONNECT, which service the client addressed: the destination_service of
// its metrics for TCP, where no request names it.
const HeaderDestinationService = "X-Trellis-Destination-Service"

// telemetry is the proxy's side of Istio's metrics: the registry, who
// this workload is, and what it tells its peers.
type telemetry struct {
	reg  *metrics.Registry
	self metrics.Workload
	// header is what the proxy says of itself on every tunnel it opens
	// (Istio's x-envoy-peer-metadata and -id).
	header http.Header
	// own caches the self peer for the SPIFFE ID it was made with.
	own atomic.Pointer[ownPeer]
}

type ownPeer struct {
	id   string
	peer *metrics.Peer
}

func (p *Proxy) initTelemetry() {
	n := p.opts.Node
	t := &p.tel
	t.reg = metrics.New()
	t.reg.FormatFlags = func(f uint64) string { return upstream.Flags(f).String() }
	t.self = metrics.WorkloadOf(cmp.Or(n.WorkloadName, n.Pod), n.Namespace, n.Labels)
	t.header = http.Header{
		metrics.HeaderMetadata:   {metrics.EncodeHeader(t.self, n.Pod)},
		metrics.HeaderMetadataID: {n.NodeID()},
	}
}

// selfPeer is this workload with its SPIFFE ID (unknown until it has
// one).
func (p *Proxy) selfPeer() *metrics.Peer {
	id := p.localID()
	if o := p.tel.own.Load(); o != nil && o.id == id {
		return o.peer
	}
	principal := ""
	if id != "" {
		principal = id
	}
	o := &ownPeer{id: id, peer: p.tel.reg.Peers.Own(p.tel.self, principal)}
	p.tel.own.Store(o)
	return o.peer
}

// hcmTelemetry is a connection manager's telemetry.
func (p *Proxy) hcmTelemetry(outbound bool) *hcm.Telemetry {
	t := &hcm.Telemetry{Metrics: p.tel.reg, Self: p.selfPeer, Chain: p.inboundChain}
	if outbound {
		t.Chain = p.outboundChain
	}
	return t
}

// tunnelHeader is the CONNECT header of a tunnel to a host of the
// service host: this workload's peer metadata and the service addressed.
func (p *Proxy) tunnelHeader(host string) http.Header {
	h := p.tel.header.Clone()
	if host != "" {
		h.Set(HeaderDestinationService, host)
	}
	return h
}

// tunnelPeer is the identity of a tunnel's caller with what its CONNECT
// said of its workload (believed only over mTLS) and the service it
// addressed.
func (p *Proxy) tunnelPeer(peer tunnel.Peer) peerIdentity {
	id := peerOf(peer.TLS)
	if id.id == "" {
		return id
	}
	if v := peer.Header.Get(metrics.HeaderMetadata); v != "" {
		id.meta = p.tel.reg.Peers.Header(v, id.id)
	}
	id.service = peer.Header.Get(HeaderDestinationService)
	return id
}

// proxyStats writes the proxy's health as Prometheus gauges: what a
// dashboard or alert needs to tell a healthy sidecar from a stuck one.
// runtime adds the Go runtime's and the process's (go_goroutines,
// process_resident_memory_bytes), which the merged view leaves to the
// app: a Go app exports the same names, and two families of one name
// make the whole scrape invalid.
func (p *Proxy) proxyStats(w io.Writer, runtimeStats bool) error {
	bw := bufio.NewWriter(w)
	gauge := func(name, help, labels string, v float64) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s gauge\n%s%s %s\n", name, help, name, name, labels, strconv.FormatFloat(v, 'g', -1, 64))
	}
	p.versionsMu.Lock()
	var versions []string
	for _, t := range p.appliedTypes() {
		versions = append(versions, fmt.Sprintf("%s=%q", t.key, t.a.dump().Version))
	}
	p.versionsMu.Unlock()
	gauge("trellis_proxy_config_version_info", "The config version applied, per resource type.", "{"+strings.Join(versions, ",")+"}", 1)
	connected := 0.0
	if p.xdsConnected.Load() {
		connected = 1
	}
	gauge("trellis_proxy_xds_connected", "1 while the proxy's xDS stream to the control plane is up.", "", connected)
	ready, _ := p.Ready()
	gauge("trellis_proxy_ready", "1 when the proxy has config for every type and its listeners are up.", "", b2f(ready))
	if exp, ok := p.certExpiry(); ok {
		gauge("trellis_proxy_cert_expiry_seconds", "Seconds until the workload certificate expires.", "", time.Until(exp).Seconds())
	}
	var active uint64
	for _, l := range p.lns {
		active += uint64(l.Stats().CxActive)
	}
	gauge("trellis_proxy_active_connections", "Downstream connections open on the proxy's listeners.", "", float64(active))
	if runtimeStats {
		gauge("go_goroutines", "Goroutines that currently exist.", "", float64(runtime.NumGoroutine()))
		if rss, ok := residentBytes(); ok {
			gauge("process_resident_memory_bytes", "Resident memory size in bytes.", "", float64(rss))
		}
	}
	return bw.Flush()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// certExpiry is when the workload certificate expires.
func (p *Proxy) certExpiry() (time.Time, bool) {
	if p.opts.Identity == nil {
		return time.Time{}, false
	}
	c, err := p.opts.Identity.Certificate()
	if err != nil || c == nil || c.Leaf == nil {
		return time.Time{}, false
	}
	return c.Leaf.NotAfter, true
}

// residentBytes reads the process's RSS from /proc (Linux).
func residentBytes() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

// writePrometheus is the proxy's whole Prometheus exposition: Istio's
// standard metrics, the proxy's health, and every Envoy-style stat.
func (p *Proxy) writePrometheus(w io.Writer) error { return p.writeExposition(w, true) }

// writeMergedStats is the proxy's part of the status port's merged view:
// all of writePrometheus but the runtime gauges (see proxyStats).
func (p *Proxy) writeMergedStats(w io.Writer) error { return p.writeExposition(w, false) }

func (p *Proxy) writeExposition(w io.Writer, runtimeStats bool) error {
	if err := p.tel.reg.WritePrometheus(w); err != nil {
		return err
	}
	if err := p.proxyStats(w, runtimeStats); err != nil {
		return err
	}
	return p.writeEnvoyStats(w, true)
}

// serveStats serves 15090's /stats/prometheus (Istio's port for
// Prometheus) until the returned stop is called. It is plaintext and
// never captured, so a scraper reaches it under STRICT mTLS.
func (p *Proxy) serveStats() (stop func(), err error) {
	ip := anyAddr()
	if p.opts.Mode == Explicit {
		ip = p.opts.PodIP
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(StatsPort)))
	if err != nil {
		return nil, fmt.Errorf("stats listener on port %d: %w", StatsPort, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats/prometheus", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := p.writePrometheus(w); err != nil {
			p.log.Debug("stats scrape cut", "err", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := admin.Serve(ctx, ln, mux); err != nil {
			p.log.Error("stats server failed", "err", err)
		}
	}()
	return func() { cancel(); wg.Wait() }, nil
}

// tcpTel is one proxied TCP connection's telemetry: the labels of its
// metrics and the access logs of its TCP proxy filter.
type tcpTel struct {
	p       *Proxy
	labels  metrics.TCPConn
	metrics bool
	logs    []*accesslog.Logger
	cluster string
	host    *balance.Host
	from    *peerIdentity
}

// tcpTelemetry is the telemetry of a connection proxied to cluster's host
// (nil when the dial failed before picking one): inbound when from is the
// caller, outbound otherwise; tp is its TCP proxy filter (nil: none, whose
// connections get metrics and no access log).
func (p *Proxy) tcpTelemetry(cluster string, host *balance.Host, from *peerIdentity, tp *xdsresource.TCPProxy) *tcpTel {
	t := &tcpTel{p: p, labels: p.tcpLabels(cluster, host, from), metrics: tp == nil || tp.Stats != nil, cluster: cluster, host: host, from: from}
	if tp != nil && len(tp.AccessLogs) > 0 {
		rt := p.routing.Load().tel
		for _, l := range tp.AccessLogs {
			if lg := rt.logger(p, nil, l); lg != nil {
				t.logs = append(t.logs, lg)
			}
		}
	}
	return t
}

func (t *tcpTel) open() *metrics.TCPSeries {
	if !t.metrics {
		return nil
	}
	return t.p.tel.reg.OpenTCP(t.labels)
}

// close counts the connection closed and writes its access-log lines:
// sent and received are the downstream's bytes.
func (t *tcpTel) close(c net.Conn, start time.Time, flags uint64, sent, received int64) {
	if t.metrics {
		t.p.tel.reg.CloseTCP(t.labels, flags)
	}
	if len(t.logs) == 0 {
		return
	}
	e := accesslog.Entry{
		StartTime: start, Duration: time.Since(start), ResponseFlags: "-", UpstreamCluster: t.cluster,
		BytesReceived: uint64(max(received, 0)), BytesSent: uint64(max(sent, 0)), Direction: "outbound",
	}
	if flags != 0 {
		e.ResponseFlags = upstream.Flags(flags).String()
	}
	if t.host != nil {
		e.UpstreamHost = t.host.Addr()
	}
	if a := c.RemoteAddr(); a != nil {
		e.DownstreamRemoteAddress = a.String()
	}
	if a := c.LocalAddr(); a != nil {
		e.DownstreamLocalAddress = a.String()
	}
	if t.from != nil {
		e.Direction = "inbound"
		e.DownstreamPeerPrincipal = strings.TrimPrefix(t.from.id, "spiffe://")
		e.RequestedServerName = t.from.sni
	}
	for _, l := range t.logs {
		l.Log(&e)
	}
}

// tcpLabels are the labels of a TCP connection proxied to cluster's host
// (nil when the dial failed before picking one): inbound when from is
// the caller, outbound otherwise.
func (p *Proxy) tcpLabels(cluster string, host *balance.Host, from *peerIdentity) metrics.TCPConn {
	reg := p.tel.reg
	self := p.selfPeer()
	if from == nil {
		c := metrics.TCPConn{Reporter: metrics.Source, Source: self}
		if host != nil {
			c.Destination = reg.Peers.Upstream(self, host.Peer, host.Namespace, host.ServiceAccount, host.TLSMode == "istio")
		}
		svc := cmp.Or(metrics.ClusterService(cluster), cluster)
		c.Service = reg.Service(svc)
		return c
	}
	c := metrics.TCPConn{Reporter: metrics.Destination, Destination: self, Security: metrics.None, Service: reg.Service(from.service)}
	if from.id != "" {
		c.Security = metrics.MutualTLS
		c.Source = from.meta
		if c.Source == nil {
			c.Source = reg.Peers.Endpoint("", from.id)
		}
	}
	return c
}
