package accesslog

import (
	"net/http"
	"time"
)

// Entry is what one HTTP request or one TCP connection produced. A string
// left "" is a value the proxy did not have: "-" in TEXT, null in JSON.
type Entry struct {
	StartTime time.Time
	// Method is :method; "" for TCP.
	Method string
	// Path is X-Envoy-Original-Path when the request had one, else :path.
	Path string
	// Protocol is "HTTP/1.1", "HTTP/2" or "HTTP/3"; "" for TCP.
	Protocol string
	// ResponseCode is 0 for TCP and for a request that got no response.
	ResponseCode int
	// ResponseFlags is Envoy's short flags ("UH", "UF,URX"); "" for none.
	ResponseFlags                  string
	ResponseCodeDetails            string
	ConnectionTerminationDetails   string
	UpstreamTransportFailureReason string
	BytesReceived                  uint64
	BytesSent                      uint64
	Duration                       time.Duration
	// UpstreamServiceTime is the x-envoy-upstream-service-time value (ms).
	UpstreamServiceTime string
	XForwardedFor       string
	UserAgent           string
	RequestID           string
	Authority           string
	// UpstreamHost is the upstream's ip:port.
	UpstreamHost string
	// UpstreamCluster is Istio's cluster name, e.g.
	// "outbound|9080||reviews.default.svc.cluster.local".
	UpstreamCluster         string
	UpstreamLocalAddress    string
	DownstreamLocalAddress  string
	DownstreamRemoteAddress string
	RequestedServerName     string
	RouteName               string
	// DownstreamPeerPrincipal is the peer's SPIFFE ID without "spiffe://".
	DownstreamPeerPrincipal string
	// TraceID is 32 lowercase hex digits; "" when the request is untraced.
	TraceID string
	// Direction is "inbound" or "outbound".
	Direction string

	// RequestHeaders and ResponseHeaders serve %REQ(X)% and %RESP(X)% of a
	// custom TEXT format for headers that have no field above; nil when the
	// proxy has none (TCP) or the format does not need them.
	RequestHeaders  http.Header
	ResponseHeaders http.Header
}
