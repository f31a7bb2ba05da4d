package hcm

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/telemetry/accesslog"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
	"github.com/trellismesh/trellis/internal/telemetry/tracing"
)

// Telemetry is what a connection manager reports each request to:
// Istio's metrics, the request's span and its access-log lines. The
// proxy owns the tracers and loggers; the connection manager only uses
// them.
type Telemetry struct {
	Metrics *metrics.Registry
	// Self is the proxy's own workload, with its SPIFFE ID as principal
	// once it has one (read per request: the identity can come late).
	Self func() *metrics.Peer
	// Chain is the telemetry config of a request's listener chain (c nil
	// or without Telemetry: the server's default); nil means metrics only.
	Chain func(c *Conn) *Chain
}

// Chain is one listener chain's telemetry, from its connection manager's
// xDS config (tracing, access_log, the istio.stats filter).
type Chain struct {
	NoMetrics bool
	Tracer    *tracing.Tracer // nil: no spans
	Sampling  float64         // percent
	Logs      []*accesslog.Logger
}

// telemetryState is the telemetry step's part of an exchange.
type telemetryState struct {
	on    bool
	chain *Chain
	start time.Time
	span  tracing.Span
	// flags are the response flags of a local reply (reply sets them).
	flags upstream.Flags
	body  *countingBody // the request body's counter, nil when its length is known
	peer  *metrics.Peer // the caller as its x-envoy-peer-metadata says (inbound)
}

// startTelemetry is the request path's first step when telemetry is on:
// the clock starts, the span opens and its context goes on to the next
// hop, and the peer-metadata headers are taken off the request.
func (s *Server) startTelemetry(x *exchange) {
	t := s.cfg.Telemetry
	ts := &x.tel
	ts.on, ts.start = true, time.Now()
	if t.Chain != nil {
		ts.chain = t.Chain(x.c)
	}
	h := x.r.Header
	if v := h[metrics.HeaderMetadata]; len(v) > 0 {
		// Istio's sidecars say who they are in these headers; only a
		// caller that proved its identity (mTLS) is believed, and neither
		// the app nor the next hop sees them.
		if !s.cfg.Outbound && x.c != nil && x.c.PeerID != "" && x.c.Peer == nil {
			ts.peer = t.Metrics.Peers.Header(v[0], x.c.PeerID)
		}
		delete(h, metrics.HeaderMetadata)
		delete(h, metrics.HeaderMetadataID)
	}
	if b := x.r.Body; b != nil && b != http.NoBody {
		if grpc := isGRPC(x.r); grpc || x.r.ContentLength < 0 {
			ts.body = &countingBody{ReadCloser: b, grpc: grpc}
			x.r.Body = ts.body
		}
	}
	if c := ts.chain; c != nil && c.Tracer != nil {
		kind := tracing.Server
		if s.cfg.Outbound {
			kind = tracing.Client
		}
		ts.span = c.Tracer.StartSpan(kind, h, c.Sampling, ts.start)
		ts.span.Inject(h)
	}
}

// endTelemetry records the finished request: its metrics, its span and
// its access-log lines.
func (s *Server) endTelemetry(x *exchange) {
	t, ts := s.cfg.Telemetry, &x.tel
	now := time.Now()
	code, respBody := x.w.result()
	flags := ts.flags | x.retry.gaveUpFlags
	grpcStatus := -1
	proto := metrics.HTTP
	if x.grpc || isGRPC(x.r) {
		proto = metrics.GRPC
		grpcStatus = x.grpcStatus()
	}
	var reqBody int64
	var reqMsgs uint64
	if b := ts.body; b != nil {
		reqBody = b.n
		reqMsgs = b.msgs
	} else if x.r.ContentLength > 0 {
		reqBody = x.r.ContentLength
	}
	// Istio's size metrics count headers too; Envoy's %BYTES_RECEIVED% and
	// %BYTES_SENT% of an HTTP stream are its body bytes only.
	reqBytes := headerBytes(x.r.Header) + int64(len(x.r.Method)+len(x.r.RequestURI)+len(x.r.Proto)+4) + reqBody
	var respHeader http.Header
	if x.h != nil {
		respHeader = x.h
	} else {
		respHeader = x.w.Header()
	}
	respBytes := headerBytes(respHeader) + respBody + 17
	var clusterName string
	switch {
	case x.cl != nil:
		clusterName = x.cl.Name()
	case x.route != nil && x.route.Action != nil && len(x.route.Action.Clusters) > 0:
		// Answered before a cluster was chosen (a fault's abort, a
		// policy's denial): the route still says which service was
		// asked for, as Istio's metrics do.
		clusterName = x.route.Action.Clusters[0].Name
	}
	chain := ts.chain
	if chain == nil || !chain.NoMetrics {
		q := metrics.Request{Protocol: proto, Code: code, GRPCStatus: grpcStatus, Flags: uint64(flags),
			Duration: now.Sub(ts.start), RequestBytes: reqBytes, ResponseBytes: respBytes}
		if proto == metrics.GRPC {
			q.RequestMessages = reqMsgs
			q.ResponseMessages = x.tel.respMsgs(x)
		}
		s.peers(x, &q, clusterName)
		t.Metrics.RecordHTTP(&q)
	}
	if chain == nil || (chain.Tracer == nil && len(chain.Logs) == 0) {
		return
	}
	path := x.r.URL.RequestURI()
	if chain.Tracer != nil {
		info := tracing.EndInfo{
			Method: x.r.Method, Authority: x.r.Host, Path: path, Protocol: x.r.Proto,
			StatusCode: code, GRPCStatus: grpcStatus, UpstreamCluster: clusterName, UpstreamClusterName: clusterName,
			RequestID: x.r.Header.Get("X-Request-Id"), UserAgent: x.r.UserAgent(), RequestSize: reqBytes, ResponseSize: respBytes,
			ResponseFlags: flagString(flags), RequestHeader: x.r.Header,
		}
		if x.c != nil {
			info.PeerAddress = x.c.sourceIP()
		}
		if x.call.Host != nil {
			info.UpstreamAddress = x.call.Host.Addr()
		}
		ts.span.End(&info, now)
	}
	if len(chain.Logs) > 0 {
		e := accesslog.Entry{
			StartTime: ts.start, Method: x.r.Method, Path: path, Protocol: x.r.Proto, ResponseCode: code,
			ResponseFlags: flagString(flags), ResponseCodeDetails: responseCodeDetails(x, respHeader),
			BytesReceived: uint64(max(reqBody, 0)), BytesSent: uint64(max(respBody, 0)), Duration: now.Sub(ts.start),
			XForwardedFor: x.r.Header.Get("X-Forwarded-For"), UserAgent: x.r.UserAgent(), RequestID: x.r.Header.Get("X-Request-Id"),
			Authority: x.r.Host, UpstreamCluster: clusterName, TraceID: ts.span.TraceID(),
			RequestHeaders: x.r.Header, ResponseHeaders: respHeader,
		}
		if x.route != nil {
			e.RouteName = x.route.Name
		}
		if x.call.Host != nil {
			e.UpstreamHost = x.call.Host.Addr()
		}
		if x.c != nil {
			// An outbound connection may not know its original destination;
			// the line then says none rather than "invalid AddrPort".
			if x.c.Source.IsValid() {
				e.DownstreamRemoteAddress = x.c.Source.String()
			}
			if x.c.Dst.IsValid() {
				e.DownstreamLocalAddress = x.c.Dst.String()
			}
			e.RequestedServerName = x.c.SNI
			e.DownstreamPeerPrincipal = strings.TrimPrefix(x.c.PeerID, "spiffe://")
		}
		e.Direction = "inbound"
		if s.cfg.Outbound {
			e.Direction = "outbound"
		}
		if resp := x.resp; resp != nil {
			e.UpstreamServiceTime = resp.Header.Get("X-Envoy-Upstream-Service-Time")
		}
		for _, l := range chain.Logs {
			l.Log(&e)
		}
	}
}

// peers fills in who called whom: the reporting side is this proxy; the
// other is the endpoint called (outbound) or the caller (inbound).
func (s *Server) peers(x *exchange, q *metrics.Request, clusterName string) {
	t := s.cfg.Telemetry
	self := metrics.UnknownPeer
	if t.Self != nil {
		self = t.Self()
	}
	if s.cfg.Outbound {
		q.Reporter = metrics.Source
		q.Source = self
		if h := x.call.Host; h != nil {
			q.Destination = t.Metrics.Peers.Upstream(self, h.Peer, h.Namespace, h.ServiceAccount, h.TLSMode == "istio")
		}
		svc := metrics.ClusterService(clusterName)
		if svc == "" {
			svc = clusterName
		}
		q.Service = t.Metrics.Service(svc)
		return
	}
	q.Reporter = metrics.Destination
	q.Security = metrics.None
	if x.c != nil && x.c.PeerID != "" {
		q.Security = metrics.MutualTLS
	}
	q.Destination = self
	switch {
	case x.c != nil && x.c.Peer != nil:
		q.Source = x.c.Peer
	case x.tel.peer != nil:
		q.Source = x.tel.peer
	case x.c != nil && x.c.PeerID != "":
		q.Source = t.Metrics.Peers.Endpoint("", x.c.PeerID)
	}
	if x.c != nil && x.c.Service != "" {
		q.Service = t.Metrics.Service(x.c.Service)
	} else {
		q.Service = t.Metrics.AuthorityService(x.r.Host, self.Namespace)
	}
}

func flagString(f upstream.Flags) string {
	if f == 0 {
		return "-"
	}
	return f.String()
}

// headerBytes is the size of a header section as HTTP/1.1 would write it
// (name: value CRLF), Envoy's header bytes in request_bytes and
// response_bytes.
func headerBytes(h http.Header) int64 {
	var n int
	for k, vv := range h {
		for _, v := range vv {
			n += len(k) + len(v) + 4
		}
	}
	return int64(n)
}

// grpcStatus is the request's gRPC status: from the response's trailers,
// or its header for a trailers-only answer (a local reply's too); -1 when
// there is none.
func (x *exchange) grpcStatus() int {
	v := ""
	if x.resp != nil && x.resp.Trailer != nil {
		v = x.resp.Trailer.Get("Grpc-Status")
	}
	if v == "" && x.h != nil {
		v = x.h.Get("Grpc-Status")
	}
	if v == "" {
		v = x.w.Header().Get("Grpc-Status")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// respMsgs is the number of gRPC messages in the response body as it
// went to the client.
func (ts *telemetryState) respMsgs(x *exchange) uint64 {
	if x.resp == nil {
		return 0
	}
	if c, ok := x.resp.Body.(*countingBody); ok {
		return c.msgs
	}
	return 0
}

// countingBody counts a body's bytes and, for gRPC, its length-prefixed
// messages (a 5-byte prefix, the last 4 bytes the message's length).
type countingBody struct {
	io.ReadCloser
	grpc bool
	n    int64
	msgs uint64
	// The frame parser: bytes of the current prefix seen, the prefix, and
	// bytes of the current message still to come.
	prefixN int
	prefix  [5]byte
	left    uint64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if b.grpc {
		b.frames(p[:n])
	}
	return n, err
}

func (b *countingBody) frames(p []byte) {
	for len(p) > 0 {
		if b.left > 0 {
			k := min(uint64(len(p)), b.left)
			b.left -= k
			p = p[k:]
			continue
		}
		k := copy(b.prefix[b.prefixN:], p)
		b.prefixN += k
		p = p[k:]
		if b.prefixN == 5 {
			b.msgs++
			b.left = uint64(b.prefix[1])<<24 | uint64(b.prefix[2])<<16 | uint64(b.prefix[3])<<8 | uint64(b.prefix[4])
			b.prefixN = 0
		}
	}
}

// responseCodeDetails is Envoy's %RESPONSE_CODE_DETAILS%: a local reply's
// (its X-Trellis-Details), or via_upstream for an answer the upstream
// gave.
func responseCodeDetails(x *exchange, h http.Header) string {
	if d := h.Get(DetailsHeader); d != "" {
		return d
	}
	if x.resp != nil {
		return "via_upstream"
	}
	return ""
}
