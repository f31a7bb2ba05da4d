package sidecar

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/telemetry/accesslog"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
	"github.com/trellismesh/trellis/internal/telemetry/tracing"
)

// telemetryRuntime owns the tracers and access loggers a config
// generation's chains use. A new generation takes over the ones whose
// config did not change and closes the rest, so a config push neither
// loses queued spans nor reopens log files.
type telemetryRuntime struct {
	mu      sync.Mutex
	tracers map[tracerKey]*tracerEntry
	loggers map[accesslog.Config]*accesslog.Logger
}

type tracerKey struct {
	provider    xdsresource.TracingProvider
	serviceName string
	maxPath     int
	tags        string // the custom tags, flattened
}

type tracerEntry struct {
	tracer *tracing.Tracer
	close  func() // the exporter's connection
}

// chain is the hcm.Chain of a connection manager's config, made with
// this runtime's tracers and loggers (taken over from prev, the previous
// generation's, where the config is the same).
func (rt *telemetryRuntime) chain(p *Proxy, h *xdsresource.HTTPConnectionManager, prev *telemetryRuntime) *hcm.Chain {
	c := &hcm.Chain{NoMetrics: h.Stats == nil}
	if t := h.Tracing; t != nil {
		c.Sampling = t.SamplingPercent
		c.Tracer = rt.tracer(p, prev, t)
	}
	for _, l := range h.AccessLogs {
		if lg := rt.logger(p, prev, l); lg != nil {
			c.Logs = append(c.Logs, lg)
		}
	}
	return c
}

// tracer returns the tracer for t: the previous generation's (prev) when
// it has one for the same config, else a new one.
func (rt *telemetryRuntime) tracer(p *Proxy, prev *telemetryRuntime, t *xdsresource.Tracing) *tracing.Tracer {
	var tags string
	for _, ct := range t.CustomTags {
		tags += ct.Tag + "\x00" + ct.Literal + "\x00" + ct.Header + "\x00" + ct.Env + "\x00" + ct.Default + "\x01"
	}
	k := tracerKey{provider: t.Provider, serviceName: t.ServiceName, maxPath: t.MaxPathTagLength, tags: tags}
	e := adopt(rt, prev, func(r *telemetryRuntime) map[tracerKey]*tracerEntry { return r.tracers }, k, func() (*tracerEntry, bool) {
		n := p.opts.Node
		cfg := tracing.Config{
			ServiceName: t.ServiceName, NodeID: n.NodeID(), Namespace: n.Namespace,
			CanonicalService: p.tel.self.CanonicalService, MeshID: "cluster.local", MaxPathTagLength: t.MaxPathTagLength,
		}
		for _, ct := range t.CustomTags {
			cfg.CustomTags = append(cfg.CustomTags, tracing.CustomTag(ct))
		}
		exp, closeExp := p.spanExporter(t.Provider)
		return &tracerEntry{tracer: tracing.New(cfg, exp), close: closeExp}, true
	})
	return e.tracer
}

// logger returns the access logger for l, the previous generation's
// when it has one, else a new one; nil when the file cannot be opened.
func (rt *telemetryRuntime) logger(p *Proxy, prev *telemetryRuntime, l xdsresource.AccessLog) *accesslog.Logger {
	k := accesslog.Config{Path: l.Path, JSON: l.JSON, Format: l.Format}
	return adopt(rt, prev, func(r *telemetryRuntime) map[accesslog.Config]*accesslog.Logger { return r.loggers }, k, func() (*accesslog.Logger, bool) {
		lg, err := accesslog.New(k)
		if err != nil {
			// The control plane validated the format; a file that cannot
			// be opened is the pod's problem, said once per config.
			p.log.Error("access log not written", "path", l.Path, "err", err)
			return nil, false
		}
		return lg, true
	})
}

// adopt is rt's entry for k in the map pick selects: its own, else the
// previous generation's (prev, nil for none), taken over, else one mk
// makes; mk's false keeps nothing and returns the zero value.
func adopt[K comparable, V any](rt, prev *telemetryRuntime, pick func(*telemetryRuntime) map[K]V, k K, mk func() (V, bool)) V {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if v, ok := pick(rt)[k]; ok {
		return v
	}
	if prev != nil {
		prev.mu.Lock()
		v, ok := pick(prev)[k]
		prev.mu.Unlock()
		if ok {
			pick(rt)[k] = v
			return v
		}
	}
	v, ok := mk()
	if ok {
		pick(rt)[k] = v
	}
	return v
}

// closeExcept stops what keep (the generation in force; nil for none)
// did not take over: queued spans are exported (bounded by ctx) and log
// files flushed.
func (rt *telemetryRuntime) closeExcept(ctx context.Context, keep *telemetryRuntime) {
	if rt == nil {
		return
	}
	kept := map[any]bool{}
	if keep != nil {
		keep.mu.Lock()
		for _, e := range keep.tracers {
			kept[e] = true
		}
		for _, lg := range keep.loggers {
			kept[lg] = true
		}
		keep.mu.Unlock()
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for k, e := range rt.tracers {
		if !kept[e] {
			e.tracer.Stop(ctx)
			if e.close != nil {
				e.close()
			}
		}
		delete(rt.tracers, k)
	}
	for k, lg := range rt.loggers {
		if !kept[lg] {
			lg.Close()
		}
		delete(rt.loggers, k)
	}
}

// outboundChain and inboundChain are the connection managers' Chain
// lookups: the outbound listeners' telemetry, and the inbound chain's of
// the connection's port.
func (p *Proxy) outboundChain(*hcm.Conn) *hcm.Chain { return p.routing.Load().outboundTel }

func (p *Proxy) inboundChain(c *hcm.Conn) *hcm.Chain {
	if c == nil {
		return nil
	}
	if ch := p.routing.Load().inbound[uint32(c.Dst.Port())]; ch != nil {
		return ch.tel
	}
	return nil
}

func newTelemetryRuntime() *telemetryRuntime {
	return &telemetryRuntime{tracers: map[tracerKey]*tracerEntry{}, loggers: map[accesslog.Config]*accesslog.Logger{}}
}

// spanExporter sends spans to the collector's cluster: OTLP/gRPC, or
// OTLP/HTTP when the provider names a path. Connections go through the
// cluster as any other upstream connection does (its endpoints, its
// mTLS), so a collector in the mesh is reached like a service.
func (p *Proxy) spanExporter(pr xdsresource.TracingProvider) (tracing.Exporter, func()) {
	if pr.Cluster == "" {
		return nil, nil // spans are made for propagation only
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		cl := p.cluster(pr.Cluster)
		if cl == nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errNoCollectorCluster{pr.Cluster}}
		}
		c, _, _, err := cl.DialTCP(ctx, &upstream.Call{})
		return c, err
	}
	if pr.HTTPPath != "" {
		tr := &http.Transport{
			DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     time.Minute,
		}
		client := &http.Client{Transport: tr, Timeout: cmpDuration(pr.Timeout, 10*time.Second)}
		return tracing.NewHTTPExporter(client, "http://"+pr.Authority+pr.HTTPPath, pr.Authority), tr.CloseIdleConnections
	}
	// The address names the collector in errors; connections come from
	// dial, with the provider's authority as :authority.
	conn := grpcwire.NewConnDial(grpcwire.Target{Network: "tcp", Address: pr.Cluster, Authority: pr.Authority}, nil, grpcwire.Keepalive{}, dial)
	return tracing.NewGRPCExporter(conn), conn.Close
}

type errNoCollectorCluster struct{ name string }

func (e errNoCollectorCluster) Error() string {
	return "the tracing collector's cluster " + e.name + " is not in this proxy's config"
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// statsConfig is a reporter's metric overrides from its chains' istio.stats
// filter.
func statsConfig(s *xdsresource.Stats) *metrics.Config {
	if s == nil || (len(s.Disabled) == 0 && len(s.TagsRemoved) == 0) {
		return nil
	}
	c := &metrics.Config{Disabled: map[string]bool{}, Removed: s.TagsRemoved}
	for _, m := range s.Disabled {
		c.Disabled[m] = true
	}
	return c
}
