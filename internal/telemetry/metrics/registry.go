package metrics

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Reporter is which sidecar reports a request: the client's (source) or
// the server's (destination). Istio reports every mesh request twice.
type Reporter uint8

const (
	Source Reporter = iota
	Destination
)

func (r Reporter) String() string {
	if r == Destination {
		return "destination"
	}
	return "source"
}

// Protocol is request_protocol.
type Protocol uint8

const (
	HTTP Protocol = iota
	GRPC
	TCP
)

func (p Protocol) String() string {
	switch p {
	case GRPC:
		return "grpc"
	case TCP:
		return "tcp"
	}
	return "http"
}

// Security is connection_security_policy: what the destination saw of
// the connection. The source reports "unknown", as Istio's does.
type Security uint8

const (
	SecurityUnknown Security = iota
	MutualTLS
	None
)

func (s Security) String() string {
	switch s {
	case MutualTLS:
		return "mutual_tls"
	case None:
		return "none"
	}
	return Unknown
}

// Service is the destination service of a request: destination_service
// (its host), destination_service_name and _namespace.
type Service struct {
	Host, Name, Namespace string
	labels                string
}

// Config is what Telemetry's metric overrides change for one reporter:
// metrics turned off, and labels removed from a metric (series that
// differ only in them are added together when written).
type Config struct {
	Disabled map[string]bool     // metric name → off
	Removed  map[string][]string // metric name → label names removed
}

// MaxSeries bounds the HTTP series and, separately, the TCP series.
const MaxSeries = 20000

// Registry holds one proxy's Istio metrics. Its methods are safe for
// concurrent use.
type Registry struct {
	// FormatFlags writes response flags (Envoy's short names, "-" for
	// none) when a series is created; nil writes the number.
	FormatFlags func(uint64) string

	Peers Peers

	services    sync.Map // host → *Service
	authorities sync.Map // authorityKey → *Service
	nsvc        atomic.Int64

	mu       sync.RWMutex
	http     map[httpKey]*httpSeries
	tcp      map[tcpKey]*TCPSeries
	overflow atomic.Uint64

	config [2]atomic.Pointer[Config] // by Reporter
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{http: map[httpKey]*httpSeries{}, tcp: map[tcpKey]*TCPSeries{}}
}

// SetConfig sets the overrides of one reporter's metrics (nil: none).
func (r *Registry) SetConfig(rep Reporter, c *Config) { r.config[rep].Store(c) }

// Service returns the interned service of a host
// (reviews.default.svc.cluster.local); "" is the unknown service.
func (r *Registry) Service(host string) *Service {
	if v, ok := r.services.Load(host); ok {
		return v.(*Service)
	}
	s := &Service{Host: host, Name: Unknown, Namespace: Unknown}
	if host == "" {
		s.Host = Unknown
	} else if name, rest, ok := strings.Cut(host, "."); ok {
		ns, _, _ := strings.Cut(rest, ".")
		s.Name, s.Namespace = name, ns
	} else {
		s.Name = host
	}
	var b strings.Builder
	writeLabel(&b, "destination_service", s.Host)
	writeLabel(&b, "destination_service_name", s.Name)
	writeLabel(&b, "destination_service_namespace", s.Namespace)
	s.labels = b.String()
	if r.nsvc.Load() >= MaxPeers {
		return r.Service("")
	}
	if v, loaded := r.services.LoadOrStore(host, s); loaded {
		return v.(*Service)
	}
	r.nsvc.Add(1)
	return s
}

type authorityKey struct{ authority, ns string }

// AuthorityService is the service a request's authority names, as a
// server's sidecar reports it: a short name (reviews, reviews:9080) is
// in namespace ns, reviews.ns and reviews.ns.svc are completed to the
// cluster domain, an IP address names no service.
func (r *Registry) AuthorityService(authority, ns string) *Service {
	k := authorityKey{authority, ns}
	if v, ok := r.authorities.Load(k); ok {
		return v.(*Service)
	}
	host := authority
	if h, _, err := net.SplitHostPort(authority); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	switch {
	case host == "" || net.ParseIP(strings.Trim(host, "[]")) != nil:
		host = ""
	case !strings.Contains(host, "."):
		host += "." + ns + ".svc.cluster.local"
	case strings.HasSuffix(host, ".svc"):
		host += ".cluster.local"
	case strings.Count(host, ".") == 1:
		host += ".svc.cluster.local"
	}
	s := r.Service(host)
	if r.nsvc.Load() < MaxPeers {
		r.authorities.Store(k, s)
	}
	return s
}

// ClusterService is the service host in an Istio cluster name
// (outbound|9080|v1|reviews.default.svc.cluster.local), "" if it names
// none (inbound|9080||, PassthroughCluster).
func ClusterService(cluster string) string {
	if i := strings.LastIndexByte(cluster, '|'); i >= 0 && strings.Count(cluster, "|") == 3 {
		return cluster[i+1:]
	}
	return ""
}

// Request is one finished HTTP or gRPC request, as a sidecar saw it.
type Request struct {
	Reporter            Reporter
	Source, Destination *Peer
	Service             *Service
	Protocol            Protocol // HTTP or GRPC
	Security            Security
	Code                int
	GRPCStatus          int // -1: none (not gRPC, or no status)
	Flags               uint64
	Duration            time.Duration
	RequestBytes        int64
	ResponseBytes       int64
	// gRPC messages each way (length-prefixed frames); 0 for HTTP.
	RequestMessages, ResponseMessages uint64
}

type httpKey struct {
	rep      Reporter
	proto    Protocol
	sec      Security
	code     uint16
	grpc     int16
	flags    uint64
	src, dst *Peer
	svc      *Service
}

type httpSeries struct {
	labels                string
	rep                   Reporter
	requests              atomic.Uint64
	duration, reqB, respB histogram
	reqMsgs, respMsgs     atomic.Uint64
	grpc                  bool
}

// RecordHTTP counts one request in istio_requests_total and its
// histograms (and its gRPC messages).
func (r *Registry) RecordHTTP(q *Request) {
	k := httpKey{rep: q.Reporter, proto: q.Protocol, sec: q.Security, code: uint16(min(max(q.Code, 0), 999)), grpc: int16(min(max(q.GRPCStatus, -1), 99)), flags: q.Flags, src: q.Source, dst: q.Destination, svc: q.Service}
	if k.src == nil {
		k.src = UnknownPeer
	}
	if k.dst == nil {
		k.dst = UnknownPeer
	}
	if k.svc == nil {
		k.svc = r.Service("")
	}
	s := lookupOrAdd(r, r.http, k, r.newHTTP)
	if s == nil {
		return
	}
	s.requests.Add(1)
	s.duration.observe(float64(q.Duration)/float64(time.Millisecond), uint64(q.Duration))
	s.reqB.observe(float64(q.RequestBytes), uint64(max(q.RequestBytes, 0)))
	s.respB.observe(float64(q.ResponseBytes), uint64(max(q.ResponseBytes, 0)))
	if q.Protocol == GRPC {
		s.reqMsgs.Add(q.RequestMessages)
		s.respMsgs.Add(q.ResponseMessages)
	}
}

func (r *Registry) newHTTP(k httpKey) *httpSeries {
	var b strings.Builder
	peerLabels(&b, k.rep, k.src, k.dst, k.svc)
	writeLabel(&b, "request_protocol", k.proto.String())
	writeLabel(&b, "response_code", strconv.Itoa(int(k.code)))
	grpc := ""
	if k.grpc >= 0 {
		grpc = strconv.Itoa(int(k.grpc))
	}
	writeLabel(&b, "grpc_response_status", grpc)
	writeLabel(&b, "response_flags", r.flags(k.flags))
	writeLabel(&b, "connection_security_policy", k.sec.String())
	return &httpSeries{labels: strings.TrimSuffix(b.String(), ","), rep: k.rep, grpc: k.proto == GRPC}
}

// lookupOrAdd is k's series in m, made by mk the first time, or nil
// past MaxSeries (counted).
func lookupOrAdd[K comparable, S any](r *Registry, m map[K]*S, k K, mk func(K) *S) *S {
	r.mu.RLock()
	s := m[k]
	r.mu.RUnlock()
	if s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := m[k]; s != nil {
		return s
	}
	if len(m) >= MaxSeries {
		r.overflow.Add(1)
		return nil
	}
	s = mk(k)
	m[k] = s
	return s
}

// peerLabels starts a series' labels: the reporter, both sides and the
// destination service.
func peerLabels(b *strings.Builder, rep Reporter, src, dst *Peer, svc *Service) {
	writeLabel(b, "reporter", rep.String())
	b.WriteString(src.src)
	b.WriteString(dst.dst)
	b.WriteString(svc.labels)
}

func (r *Registry) flags(f uint64) string {
	if f == 0 {
		return "-"
	}
	if r.FormatFlags != nil {
		return r.FormatFlags(f)
	}
	return strconv.FormatUint(f, 10)
}

// TCPConn is one TCP connection's labels.
type TCPConn struct {
	Reporter            Reporter
	Source, Destination *Peer
	Service             *Service
	Security            Security
}

type tcpKey struct {
	rep      Reporter
	sec      Security
	flags    uint64
	src, dst *Peer
	svc      *Service
}

// TCPSeries are the TCP counters of one label set; a connection adds its
// bytes as they pass.
type TCPSeries struct {
	labels         string
	rep            Reporter
	opened, closed atomic.Uint64
	sent, received atomic.Uint64
}

// AddSent counts bytes sent to the downstream (istio_tcp_sent_bytes_total).
func (s *TCPSeries) AddSent(n int) {
	if s != nil {
		s.sent.Add(uint64(n))
	}
}

// AddReceived counts bytes received from the downstream.
func (s *TCPSeries) AddReceived(n int) {
	if s != nil {
		s.received.Add(uint64(n))
	}
}

// OpenTCP counts a connection opened and returns its series for its
// bytes; CloseTCP counts it closed, under the flags it ended with (the
// bytes stay on the series it was opened with, as Envoy's periodic
// reports keep them). nil when the registry is full.
func (r *Registry) OpenTCP(c TCPConn) *TCPSeries {
	s := r.tcpSeries(c, 0)
	if s != nil {
		s.opened.Add(1)
	}
	return s
}

// CloseTCP counts a connection closed with those response flags.
func (r *Registry) CloseTCP(c TCPConn, flags uint64) {
	if s := r.tcpSeries(c, flags); s != nil {
		s.closed.Add(1)
	}
}

func (r *Registry) tcpSeries(c TCPConn, flags uint64) *TCPSeries {
	k := tcpKey{rep: c.Reporter, sec: c.Security, flags: flags, src: c.Source, dst: c.Destination, svc: c.Service}
	if k.src == nil {
		k.src = UnknownPeer
	}
	if k.dst == nil {
		k.dst = UnknownPeer
	}
	if k.svc == nil {
		k.svc = r.Service("")
	}
	return lookupOrAdd(r, r.tcp, k, func(k tcpKey) *TCPSeries {
		var b strings.Builder
		peerLabels(&b, k.rep, k.src, k.dst, k.svc)
		writeLabel(&b, "request_protocol", "tcp")
		writeLabel(&b, "response_flags", r.flags(k.flags))
		writeLabel(&b, "connection_security_policy", k.sec.String())
		return &TCPSeries{labels: strings.TrimSuffix(b.String(), ","), rep: k.rep}
	})
}

// writeLabel appends name="value", with the value escaped as the text
// format requires.
func writeLabel(b *strings.Builder, name, value string) {
	b.WriteString(name)
	b.WriteString(`="`)
	for i := range len(value) {
		switch c := value[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString(`",`)
}
