package xdsresource

import (
	"net/netip"
	"regexp"
	"time"
)

// Type URLs of the resources the proxy consumes.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Direction of a listener's traffic.
type Direction int

// Directions, as Envoy's TrafficDirection.
const (
	Unspecified Direction = iota
	Inbound
	Outbound
)

// Listener is a port the proxy serves (or, with BindToPort false, a
// per-port configuration that virtualOutbound hands connections to).
type Listener struct {
	Name           string
	Address        string // IP to bind ("0.0.0.0" for any)
	Port           uint32
	BindToPort     bool // Envoy's default is true
	UseOriginalDst bool
	Direction      Direction
	FilterChains   []FilterChain
	// Host is the service hostname of a TCP listener (metadata
	// filter_metadata.trellis.host), used to route CONNECT in explicit mode.
	Host string
}

// FilterChain is one way of handling a listener's connections. A
// connection takes the most specific chain, as in Envoy (see
// Listener.ChainFor); no two chains of a listener match alike.
type FilterChain struct {
	Name string
	// DestinationPort selects the chain by the connection's original
	// destination port; 0 matches any.
	DestinationPort uint32
	// PrefixRanges select the chain by the connection's original
	// destination address (Envoy's prefix_ranges), masked; empty matches
	// any address, and a connection whose address is unknown.
	PrefixRanges []netip.Prefix
	// ServerNames select the chain by the TLS ClientHello's SNI (Envoy's
	// server_names), lower case: exact names, or "*.example.com" for any
	// name under example.com. Empty matches any connection, TLS or not.
	ServerNames []string
	// TransportProtocol selects the chain by what the connection speaks
	// (filter_chain_match.transport_protocol): "tls", "raw_buffer" for
	// plaintext, "" for either. Only on virtualInbound, where Istio's
	// PeerAuthentication splits each port this way.
	TransportProtocol string
	// ApplicationProtocols select a tls chain by the ClientHello's ALPN
	// (any one of them): Istio marks its mutual TLS with
	// istio-peer-exchange and istio. Empty matches any.
	ApplicationProtocols []string
	// TLS terminates mesh mTLS on the chain (transport_socket, see
	// tls.go); nil serves the bytes as they come.
	TLS *DownstreamTLS
	// Exactly one of HTTP and TCP is set.
	HTTP *HTTPConnectionManager
	TCP  *TCPProxy
	// RBAC are the network RBAC filters ahead of TCP, in order
	// (AuthorizationPolicy for TCP ports; see rbac.go).
	RBAC []*RBAC
}

// HTTPConnectionManager routes HTTP requests by a route configuration,
// either named (RDS) or inline.
type HTTPConnectionManager struct {
	StatPrefix  string
	RDSName     string       // set when routes come from RDS
	RouteConfig *RouteConfig // set when inline
	// RBAC are the RBAC HTTP filters ahead of the router, in order.
	RBAC []*RBAC
	// ExtAuthz is the ext_authz HTTP filter (extauthz.go), nil if none.
	ExtAuthz *ExtAuthz
	// JWT is the jwt_authn filter's config, nil without one (jwt.go).
	JWT *JWTAuthentication
	// Paths is what is done to a request's path first (pathnorm.go).
	Paths PathNormalization
	// Tracing, AccessLogs and Stats are the chain's telemetry
	// (telemetry.go): nil Tracing traces nothing, nil Stats records no
	// Istio metrics.
	Tracing    *Tracing
	AccessLogs []AccessLog
	Stats      *Stats
}

// TCPProxy forwards a connection to a cluster: Cluster, or when that is
// empty one of WeightedClusters picked by weight (TotalWeight is their
// sum, > 0).
type TCPProxy struct {
	StatPrefix       string
	Cluster          string
	WeightedClusters []ClusterWeight
	TotalWeight      uint64
	// IdleTimeout closes a connection with no bytes either way for that
	// long (0: unset, Envoy's hour, TCPIdleTimeout), unless NoIdleTimeout
	// (idle_timeout 0s); MaxConnectionDuration closes it at that age (0:
	// never). See connpool.go.
	IdleTimeout           time.Duration
	NoIdleTimeout         bool
	MaxConnectionDuration time.Duration
	// AccessLogs and Stats are the connection's telemetry (telemetry.go);
	// Stats comes from an istio.stats network filter ahead of the proxy.
	AccessLogs []AccessLog
	Stats      *Stats
}

// ClusterWeight is one destination of a TCP proxy's weighted_clusters.
type ClusterWeight struct {
	Name   string
	Weight uint32 // >= 1
}

// Pick names the cluster a connection goes to; rnd is a uniformly random
// number, so each weighted cluster is chosen in proportion to its weight.
func (t *TCPProxy) Pick(rnd uint64) string {
	if t.Cluster != "" || t.TotalWeight == 0 {
		return t.Cluster
	}
	v := rnd % t.TotalWeight
	for _, c := range t.WeightedClusters {
		if v < uint64(c.Weight) {
			return c.Name
		}
		v -= uint64(c.Weight)
	}
	return t.WeightedClusters[len(t.WeightedClusters)-1].Name // unreachable: v < TotalWeight
}

// RouteConfig is an RDS resource: virtual hosts chosen by the request's
// authority.
type RouteConfig struct {
	Name         string
	VirtualHosts []VirtualHost
}

// VirtualHost groups the routes of a set of domains ("*" and leading or
// trailing wildcards as in Envoy).
type VirtualHost struct {
	Name    string
	Domains []string
	Routes  []Route // first match wins
}

// Route is one match and what to do with it.
type Route struct {
	Name  string
	Match RouteMatch
	// Exactly one of Action, Redirect and Direct is set.
	Action   *RouteAction
	Redirect *Redirect
	Direct   *DirectResponse

	RequestHeadersToAdd     []HeaderValueOption
	RequestHeadersToRemove  []string
	ResponseHeadersToAdd    []HeaderValueOption
	ResponseHeadersToRemove []string

	// Fault is the route's fault injection (fault.go), nil if none.
	Fault *Fault
	// CORS is the route's CORS policy (cors.go), nil if none.
	CORS *CORSPolicy
}

// PathKind says how RouteMatch.Path is compared.
type PathKind int

// Path match kinds.
const (
	PathPrefix          PathKind = iota // Path is a prefix ("/" matches all)
	PathExact                           // Path equals
	PathRegex                           // PathRegex matches the whole path
	PathSeparatedPrefix                 // Path or Path + "/..." (Gateway API PathPrefix)
)

// RouteMatch is the request side of a route; every part must match.
type RouteMatch struct {
	PathKind        PathKind
	Path            string
	PathRegex       *regexp.Regexp // PathRegex only; anchored to the whole path
	CaseInsensitive bool           // Envoy's case_sensitive: false
	Headers         []HeaderMatcher
	QueryParams     []QueryParamMatcher
}

// HeaderMatcher matches one request header (pseudo-headers :method,
// :authority and :path included).
type HeaderMatcher struct {
	Name    string // lower case
	Present bool   // match on presence only
	Match   StringMatcher
	Invert  bool
	// MissingAsEmpty matches a request without the header as if it had
	// the empty value (Envoy's treat_missing_header_as_empty).
	MissingAsEmpty bool
}

// QueryParamMatcher matches one query parameter.
type QueryParamMatcher struct {
	Name    string
	Present bool
	Match   StringMatcher
}

// StringKind says how StringMatcher.Value is compared.
type StringKind int

// String match kinds, as Envoy's StringMatcher.
const (
	StringExact StringKind = iota
	StringPrefix
	StringSuffix
	StringContains
	StringRegex
)

// StringMatcher matches a string value.
type StringMatcher struct {
	Kind       StringKind
	Value      string
	Regex      *regexp.Regexp // StringRegex only; anchored to the whole value
	IgnoreCase bool
}

// RouteAction forwards to one or more clusters.
type RouteAction struct {
	// Clusters are the weighted destinations; a single cluster has one
	// entry of weight 1. TotalWeight is their sum (> 0).
	Clusters    []WeightedCluster
	TotalWeight uint64
	Timeout     time.Duration // 0: none; Envoy's 15 s when the route sets no timeout
	// Rewrites.
	PrefixRewrite string
	RegexRewrite  *regexp.Regexp // replaces every match; not anchored
	// RegexSubstitution is in regexp.Expand syntax (${1}): the decoder
	// turns Envoy's \1 into ${1} and a literal $ into $$.
	RegexSubstitution string
	HostRewrite       string
	HashPolicies      []HashPolicy
	// Mirrors are the request_mirror_policies (mirror.go).
	Mirrors []MirrorPolicy
	// Retry is the route's retry policy (retry.go), nil: one try.
	Retry *RetryPolicy
}

// WeightedCluster is one destination of a route.
type WeightedCluster struct {
	Name   string
	Weight uint32

	RequestHeadersToAdd     []HeaderValueOption
	RequestHeadersToRemove  []string
	ResponseHeadersToAdd    []HeaderValueOption
	ResponseHeadersToRemove []string
}

// HeaderValueOption adds or sets a header.
type HeaderValueOption struct {
	Name   string
	Value  string
	Append bool // false: overwrite if present, else add
}

// Redirect answers with an HTTP redirect.
type Redirect struct {
	Scheme string
	Host   string
	Port   uint32
	Path   string
	Code   int // 301 (default), 302, 303, 307, 308
	// PrefixRewrite, or RegexRewrite with RegexSubstitution (regexp.Expand
	// syntax), rewrites the request's path for the Location as a route's
	// rewrite would; Path, when set, replaces it instead. At most one of
	// the three is set (Envoy's path_rewrite_specifier).
	PrefixRewrite     string
	RegexRewrite      *regexp.Regexp
	RegexSubstitution string
}

// DirectResponse answers without an upstream.
type DirectResponse struct {
	Status int
	Body   []byte
}

// HashKind says what a consistent-hash policy hashes.
type HashKind int

// Hash policy kinds.
const (
	HashHeader HashKind = iota
	HashCookie
	HashSourceIP
	HashQueryParam
)

// HashPolicy is one input of a request's consistent hash.
type HashPolicy struct {
	Kind       HashKind
	Name       string        // header, cookie or query parameter name
	CookieTTL  time.Duration // cookie: generate one with this TTL when absent (0: never)
	CookiePath string
}

// Discovery says where a cluster's endpoints come from.
type Discovery int

// Cluster discovery types.
const (
	ClusterEDS Discovery = iota
	ClusterStatic
	ClusterStrictDNS
	ClusterLogicalDNS
	ClusterOriginalDst
)

// LBPolicy is a cluster's load-balancing algorithm.
type LBPolicy int

// Load-balancing policies, as Envoy's.
const (
	LBRoundRobin LBPolicy = iota
	LBLeastRequest
	LBRandom
	LBRingHash
	LBMaglev
	LBClusterProvided
)

// Cluster is a set of upstream endpoints and how to reach them.
type Cluster struct {
	Name            string
	Type            Discovery
	LBPolicy        LBPolicy
	ConnectTimeout  time.Duration // Envoy's 5 s when the cluster sets none
	RingMinSize     uint64        // ring hash; 0: default
	MaglevTableSize uint64        // maglev; 0: default (65537)
	CircuitBreakers CircuitBreakers
	// HTTP2 is set when requests go upstream as HTTP/2 (explicit
	// http2_protocol_options); DownstreamProtocol when they go as the
	// downstream's (use_downstream_protocol_config); with neither, they
	// go as HTTP/1.1, Envoy's default.
	HTTP2                    bool
	DownstreamProtocol       bool
	MaxRequestsPerConnection uint32
	IdleTimeout              time.Duration
	// Connection pool settings beyond limits (connpool.go): the upstream
	// connection's age limit (0: none set), the streams one HTTP/2
	// connection carries (0: the server's limit), HTTP/2 PINGs and TCP
	// keepalive (nil: none).
	MaxConnectionDuration time.Duration
	MaxConcurrentStreams  uint32
	HTTP2Keepalive        *HTTP2Keepalive
	TCPKeepalive          *TCPKeepalive
	// PeakEWMA weighs LEAST_REQUEST by each host's latency estimate
	// (filter_metadata.trellis.lb: PEAK_EWMA, from a DestinationRule's
	// trellis.io/load-balancer annotation).
	PeakEWMA bool
	// LocalityWeighted is common_lb_config.locality_weighted_lb_config:
	// pick a locality by its weight, then a host in it; SlowStart is the
	// policy's slow_start_config, nil without one (lbconfig.go).
	LocalityWeighted bool
	SlowStart        *SlowStart
	// LoadAssignment holds the endpoints of STATIC and DNS clusters.
	LoadAssignment *ClusterLoadAssignment
	// TLS is the cluster's transport socket (nil: plaintext) and
	// TLSMatches its transport_socket_matches, which come first: see
	// TLSFor and tls.go.
	TLS        *UpstreamTLS
	TLSMatches []TLSMatch
	// Outlier is the cluster's outlier detection (outlier.go), nil
	// without it.
	Outlier *OutlierDetection
	// PanicThreshold is common_lb_config.healthy_panic_threshold, in
	// percent; nil leaves Envoy's default, 50.
	PanicThreshold *float64
}

// CircuitBreakers are a cluster's limits; 0 means Envoy's default.
type CircuitBreakers struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32
	// RetryBudget, when set, bounds retries in place of MaxRetries.
	RetryBudget *RetryBudget
}

// ClusterLoadAssignment is an EDS resource: a cluster's endpoints.
type ClusterLoadAssignment struct {
	ClusterName string
	Localities  []LocalityEndpoints
}

// LocalityEndpoints are the endpoints of one locality and priority.
type LocalityEndpoints struct {
	Region, Zone, SubZone string
	Weight                uint32
	Priority              uint32
	Endpoints             []Endpoint
}

// Endpoint is one upstream address.
type Endpoint struct {
	Address string // IP or DNS name
	Port    uint32
	Weight  uint32 // >= 1
	Healthy bool   // HEALTHY or UNKNOWN
	// Degraded is EDS health_status DEGRADED: able to take traffic, but
	// given it only while the healthy endpoints do not suffice (Envoy's
	// degraded endpoints). A degraded endpoint is not Healthy.
	Degraded bool
	// Identity of the workload behind it (filter_metadata.trellis), used to
	// verify the peer once mTLS lands and for telemetry labels.
	Workload, Namespace, ServiceAccount string
	// Peer describes the workload for telemetry labels
	// (filter_metadata.trellis.peer): "name;namespace;app;version;
	// canonical service;canonical revision;cluster", one string shared by
	// a workload's endpoints so the proxy parses it once (translate's
	// endpointMetadata writes it).
	Peer string
	// TLSMode is "istio" when the workload runs a sidecar that accepts mesh
	// traffic on its tunnel port (filter_metadata.trellis.tlsMode, from the
	// pod's security.istio.io/tlsMode label, as in Istio); the proxy then
	// tunnels to it. Empty otherwise.
	TLSMode string
	// Proxyless is a proxyless gRPC workload (filter_metadata.trellis.
	// proxyless): it has no tunnel port, so mesh mTLS goes straight to
	// the endpoint.
	Proxyless bool
}
