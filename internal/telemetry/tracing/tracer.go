package tracing

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is the span's side of the call: SERVER on the inbound sidecar, CLIENT
// on the outbound one.
type Kind uint8

const (
	Server Kind = iota
	Client
)

// DefaultMaxPathTagLength is Envoy's max_path_tag_length default.
const DefaultMaxPathTagLength = 256

// CustomTag is one span attribute configured by Telemetry's customTags
// (Envoy's custom_tags): a literal, a request header (Default when the header
// is absent), or an environment variable (Default when unset), read once at
// New as Envoy does at config load.
type CustomTag struct {
	Tag, Literal, Header, Env, Default string
}

// Config is the tracer's static, per-proxy part.
type Config struct {
	// ServiceName is the resource's service.name (Istio: "<canonical
	// service>.<namespace>").
	ServiceName string
	// NodeID, Zone, Namespace, CanonicalService and MeshID go on every span
	// as node_id, zone, istio.namespace, istio.canonical_service and
	// istio.mesh_id, as Istio's bootstrap tags them.
	NodeID, Zone, Namespace, CanonicalService, MeshID string
	CustomTags                                        []CustomTag
	// MaxPathTagLength truncates http.url's path; 0 means 256.
	MaxPathTagLength int

	// Batching: 0 takes the default. QueueSize bounds the spans waiting for
	// export (beyond it a span is dropped and counted); a batch is exported
	// when it reaches BatchSize or FlushInterval after its first span.
	QueueSize     int           // 2048
	BatchSize     int           // 512
	FlushInterval time.Duration // 5s, Envoy's OpenTelemetry flush interval
	ExportTimeout time.Duration // 10s

	// Rand returns uniformly random 64-bit values for ids and sampling;
	// nil uses math/rand/v2 (safe for concurrent use). Tests inject one.
	Rand func() uint64
}

// Stats are the tracer's counters, for the proxy's stats page.
type Stats struct {
	SpansStarted   uint64 // sampled spans ended and queued
	SpansExported  uint64 // spans the collector took
	SpansDropped   uint64 // queue full or tracer stopped
	ExportFailures uint64 // Export calls that failed
}

// Tracer starts spans and exports the sampled ones. Its methods are safe for
// concurrent use.
type Tracer struct {
	cfg      Config
	rand     func() uint64
	exporter Exporter
	resource []attr // the resource's attributes
	scope    scope
	static   []attr      // node_id, zone, istio.*, component, literal and env tags
	headers  []CustomTag // header custom tags, read at End

	queue    chan *spanData
	stop     chan stopReq
	done     chan struct{}
	stopOnce sync.Once
	mu       sync.RWMutex // guards stopped against End's queue send
	stopped  bool

	queued, exported, dropped, failures atomic.Uint64
}

type stopReq struct {
	ctx   context.Context
	reply chan error
}

// New builds a tracer exporting through exp and starts its one batching
// goroutine; Stop ends it. A nil exp keeps propagation and sampling working
// and drops every span (counted).
func New(cfg Config, exp Exporter) *Tracer {
	if cfg.MaxPathTagLength <= 0 {
		cfg.MaxPathTagLength = DefaultMaxPathTagLength
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 2048
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 5 * time.Second
	}
	if cfg.ExportTimeout <= 0 {
		cfg.ExportTimeout = 10 * time.Second
	}
	t := &Tracer{
		cfg:      cfg,
		rand:     cfg.Rand,
		exporter: exp,
		queue:    make(chan *spanData, cfg.QueueSize),
		stop:     make(chan stopReq),
		done:     make(chan struct{}),
	}
	if t.rand == nil {
		t.rand = rand.Uint64
	}
	t.resource = []attr{str("service.name", cfg.ServiceName)}
	t.scope = scope{name: "trellis-proxy"}
	t.static = []attr{
		str("node_id", cfg.NodeID),
		str("zone", cfg.Zone),
		str("component", "proxy"),
		str("istio.canonical_service", cfg.CanonicalService),
		str("istio.namespace", cfg.Namespace),
		str("istio.mesh_id", cfg.MeshID),
	}
	for _, ct := range cfg.CustomTags {
		switch {
		case ct.Header != "":
			ct.Header = http.CanonicalHeaderKey(ct.Header)
			t.headers = append(t.headers, ct)
		case ct.Env != "":
			v, ok := os.LookupEnv(ct.Env)
			if !ok {
				v = ct.Default
			}
			t.static = append(t.static, str(ct.Tag, v))
		default:
			t.static = append(t.static, str(ct.Tag, ct.Literal))
		}
	}
	go t.run()
	return t
}

// Stats reads the counters.
func (t *Tracer) Stats() Stats {
	return Stats{
		SpansStarted:   t.queued.Load(),
		SpansExported:  t.exported.Load(),
		SpansDropped:   t.dropped.Load(),
		ExportFailures: t.failures.Load(),
	}
}

// Span is one request's span. It is a value so that an unsampled request
// allocates nothing for it; keep it in the request's state and call its
// methods through a pointer.
type Span struct {
	t          *Tracer
	traceID    [16]byte
	spanID     [8]byte
	parentID   [8]byte
	hasParent  bool
	sampled    bool
	ended      bool
	debug      bool
	trace64    bool
	kind       Kind
	formats    uint8
	tracestate string
	start      time.Time
}

// StartSpan begins a span for a request with headers h. The parent context
// comes from W3C traceparent/tracestate, else B3 single, else B3 multi. A
// parent's sampling flag decides (sampled: always recorded; explicitly not:
// never); otherwise the request is sampled with probability
// samplingPercent/100. An unsampled span still carries ids, so the next hop
// sees one trace with the sampled flag off, as Envoy propagates it.
func (t *Tracer) StartSpan(kind Kind, h http.Header, samplingPercent float64, now time.Time) Span {
	p := extract(h)
	s := Span{t: t, kind: kind, formats: p.formats, tracestate: p.tracestate, start: now, debug: p.debug, trace64: p.trace64}
	if p.hasIDs {
		s.traceID, s.parentID, s.hasParent = p.traceID, p.spanID, true
	} else {
		t.fill(s.traceID[:8])
		t.fill(s.traceID[8:])
		s.trace64 = false
	}
	t.fill(s.spanID[:])
	switch p.decision {
	case sampledYes:
		s.sampled = true
	case sampledNo:
		s.sampled = false
	default:
		s.sampled = t.sample(samplingPercent)
	}
	return s
}

// sample draws against percent with 1/2^53 resolution.
func (t *Tracer) sample(percent float64) bool {
	if percent <= 0 {
		return false
	}
	if percent >= 100 {
		return true
	}
	return float64(t.rand()>>11)/(1<<53) < percent/100
}

// fill writes random bytes into b (at most 8), never all zero.
func (t *Tracer) fill(b []byte) {
	for {
		v := t.rand()
		if v == 0 {
			continue
		}
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		if !isZero(b) {
			return
		}
	}
}

// Sampled reports whether the span is recorded and exported.
func (s *Span) Sampled() bool { return s.sampled }

// TraceID is the trace id in 32 lower-case hex for access logs, "" when the
// span is not sampled.
func (s *Span) TraceID() string {
	if !s.sampled {
		return ""
	}
	return hex.EncodeToString(s.traceID[:])
}

// SpanID is the span's id in 16 lower-case hex.
func (s *Span) SpanID() string { return hex.EncodeToString(s.spanID[:]) }

// Inject writes the span's context into h for the next hop: always W3C
// traceparent (with the incoming tracestate passed through), and B3 in each
// form the request came with. The sampled flag is the span's decision.
func (s *Span) Inject(h http.Header) {
	if s.t == nil {
		return
	}
	var buf [55]byte
	copy(buf[:], "00-")
	hex.Encode(buf[3:35], s.traceID[:])
	buf[35] = '-'
	hex.Encode(buf[36:52], s.spanID[:])
	buf[52] = '-'
	buf[53] = '0'
	buf[54] = '0'
	if s.sampled {
		buf[54] = '1'
	}
	tp := string(buf[:])
	h[hdrTraceparent] = []string{tp}
	if s.tracestate != "" {
		h[hdrTracestate] = []string{s.tracestate}
	} else {
		delete(h, hdrTracestate)
	}
	// B3 ids come out of the traceparent string, so B3 costs no more
	// hex encoding and shares its bytes.
	tid := tp[3:35]
	if s.trace64 {
		tid = tp[19:35]
	}
	sid := tp[36:52]
	if s.formats&fmtB3Single != 0 {
		flag := "0"
		switch {
		case s.debug:
			flag = "d"
		case s.sampled:
			flag = "1"
		}
		v := tid + "-" + sid + "-" + flag
		if s.hasParent {
			v += "-" + hex.EncodeToString(s.parentID[:])
		}
		h[hdrB3] = []string{v}
	}
	if s.formats&fmtB3Multi != 0 {
		h[hdrB3TraceID] = []string{tid}
		h[hdrB3SpanID] = []string{sid}
		if s.hasParent {
			h[hdrB3ParentSpan] = []string{hex.EncodeToString(s.parentID[:])}
		} else {
			delete(h, hdrB3ParentSpan)
		}
		if s.debug {
			h[hdrB3Flags] = []string{"1"}
			delete(h, hdrB3Sampled)
		} else {
			delete(h, hdrB3Flags)
			if s.sampled {
				h[hdrB3Sampled] = []string{"1"}
			} else {
				h[hdrB3Sampled] = []string{"0"}
			}
		}
	}
}

// IstioOperation is the span name Istio gives a route through its
// decorator: "<host>:<port>/*", e.g. "reviews.default.svc.cluster.local:9080/*".
func IstioOperation(host string, port int) string {
	return host + ":" + strconv.Itoa(port) + "/*"
}

// EndInfo is what the proxy knows when the request ends. Strings empty and
// sizes zero are reported as such (Envoy reports "-" for none only in access
// logs, not on spans).
type EndInfo struct {
	// Operation is the span name when set: the route's decorator, or
	// Istio's "<host>:<port>/*". Empty: "<authority><path without query>",
	// the path truncated to MaxPathTagLength.
	Operation string

	Method, Scheme, Authority, Path, Protocol string // Protocol: "HTTP/1.1", "HTTP/2"
	StatusCode                                int
	// GRPCStatus is the grpc-status the response carried, -1 if none.
	GRPCStatus                           int
	UpstreamCluster, UpstreamClusterName string
	RequestID, DownstreamCluster         string
	UserAgent, PeerAddress               string
	UpstreamAddress                      string
	ResponseFlags                        string // "-" when none
	RequestSize, ResponseSize            int64
	// RequestHeader supplies header custom tags; nil reads each tag's
	// default.
	RequestHeader http.Header
}

// End finishes a sampled span and queues it for export; an unsampled span
// returns at once without allocating.
func (s *Span) End(info *EndInfo, now time.Time) {
	if !s.sampled || s.t == nil {
		return
	}
	t := s.t
	if s.ended {
		return // a second End does not report twice
	}
	s.ended = true
	sp := t.build(s, info, now)
	// The read lock orders this send before Stop's drain: a span is either
	// queued before the batcher's last look at the queue, or counted as
	// dropped, never left in the queue unseen. Only sampled spans take it.
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.stopped {
		t.dropped.Add(1)
		return
	}
	select {
	case t.queue <- sp:
		t.queued.Add(1)
	default:
		t.dropped.Add(1)
	}
}

func (t *Tracer) build(s *Span, in *EndInfo, now time.Time) *spanData {
	path := in.Path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if len(path) > t.cfg.MaxPathTagLength {
		path = path[:t.cfg.MaxPathTagLength]
	}
	name := in.Operation
	if name == "" {
		name = in.Authority + path
	}
	urlPath := in.Path
	if len(urlPath) > t.cfg.MaxPathTagLength {
		urlPath = urlPath[:t.cfg.MaxPathTagLength]
	}
	scheme := in.Scheme
	if scheme == "" {
		scheme = "http"
	}
	attrs := make([]attr, 0, len(t.static)+len(t.headers)+20)
	attrs = append(attrs, t.static...)
	attrs = append(attrs,
		str("http.method", in.Method),
		str("http.url", scheme+"://"+in.Authority+urlPath),
		str("http.protocol", in.Protocol),
		str("http.status_code", strconv.Itoa(in.StatusCode)),
		str("upstream_cluster", in.UpstreamCluster),
		str("upstream_cluster.name", in.UpstreamClusterName),
		str("guid:x-request-id", in.RequestID),
		str("downstream_cluster", orDash(in.DownstreamCluster)),
		str("user_agent", orDash(in.UserAgent)),
		str("peer.address", in.PeerAddress),
		str("response_flags", orDash(in.ResponseFlags)),
		str("request_size", strconv.FormatInt(in.RequestSize, 10)),
		str("response_size", strconv.FormatInt(in.ResponseSize, 10)),
	)
	if in.UpstreamAddress != "" {
		attrs = append(attrs, str("upstream_address", in.UpstreamAddress))
	}
	if in.GRPCStatus >= 0 && (in.GRPCStatus > 0 || isGRPC(in)) {
		attrs = append(attrs, str("grpc.status_code", strconv.Itoa(in.GRPCStatus)))
	}
	for _, ct := range t.headers {
		v := ct.Default
		if vs := in.RequestHeader[ct.Header]; len(vs) > 0 {
			v = vs[0]
		}
		attrs = append(attrs, str(ct.Tag, v))
	}
	sp := &spanData{
		traceID:    s.traceID,
		spanID:     s.spanID,
		parentID:   s.parentID,
		hasParent:  s.hasParent,
		traceState: s.tracestate,
		name:       name,
		kind:       s.kind,
		start:      uint64(s.start.UnixNano()),
		end:        uint64(now.UnixNano()),
		attrs:      attrs,
		flags:      1, // W3C sampled
	}
	// Envoy tags error=true on a 5xx (or no response at all) and on a gRPC
	// status other than OK; its OpenTelemetry tracer turns that into
	// STATUS_CODE_ERROR.
	if in.StatusCode == 0 || in.StatusCode >= 500 || in.GRPCStatus > 0 {
		sp.attrs = append(sp.attrs, str("error", "true"))
		sp.statusCode = statusError
	}
	return sp
}

func isGRPC(in *EndInfo) bool {
	ct := in.RequestHeader.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
