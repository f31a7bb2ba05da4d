package xdsresource

import (
	"net/http"
	"strings"
	"time"
)

const extAuthzType = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"

// ExtAuthz is Envoy's ext_authz HTTP filter with an HTTP authorization
// service, as Istio configures it for a CUSTOM AuthorizationPolicy whose
// provider is envoyExtAuthzHttp: requests the CUSTOM rules select (see
// EnabledBy) are checked with the authorizer before the other policies.
type ExtAuthz struct {
	// GRPC marks a gRPC authorization service (envoy.service.auth.v3
	// Authorization/Check, Istio's envoyExtAuthzGrpc); the others are
	// HTTP services. Only Cluster, Authority, Timeout and the failure
	// settings apply to it.
	GRPC       bool
	Cluster    string // the authorizer's cluster
	Authority  string // host[:port] of server_uri, sent as the check's Host
	PathPrefix string
	Timeout    time.Duration
	// AllowedHeaders are the request headers copied into the check
	// besides Envoy's defaults (Host, Method, Path, Content-Length,
	// Authorization); HeadersToAdd are set on it.
	AllowedHeaders []StringMatcher
	HeadersToAdd   []HeaderValueOption
	// AllowedUpstreamHeaders are the authorizer's response headers set on
	// an allowed request; AllowedClientHeaders those sent back with a
	// denial (all but Host when none are listed).
	AllowedUpstreamHeaders []StringMatcher
	AllowedClientHeaders   []StringMatcher
	FailureModeAllow       bool
	StatusOnError          int // 403 when unset
	// EnabledBy, when set, limits the check to requests for which the
	// RBAC filter with shadow rules stat prefix EnabledBy.StatPrefix found
	// a shadow policy whose name matches EnabledBy.Policy (Istio's
	// filter_enabled_metadata on the CUSTOM rules).
	EnabledBy *ShadowMatch
	// Body, when set, sends the request body with the check (Envoy's
	// with_request_body, Istio's includeRequestBodyInCheck).
	Body *BodySettings
}

// BodySettings is ext_authz's BufferSettings: the request body is
// buffered up to MaxBytes and sent with the check; a longer body is
// refused (413) unless AllowPartial, which sends its first MaxBytes.
// PackAsBytes puts it in a gRPC check's raw_body instead of body.
type BodySettings struct {
	MaxBytes     uint32
	AllowPartial bool
	PackAsBytes  bool
}

// ShadowMatch selects requests by the shadow policy an RBAC filter
// matched.
type ShadowMatch struct {
	StatPrefix string
	Policy     StringMatcher
}

// shadowPolicyKey is the dynamic metadata key (after the stat prefix)
// the RBAC filter writes the matched shadow policy's name under.
const shadowPolicyKey = "shadow_effective_policy_id"

// decodeExtAuthz reads envoy.extensions.filters.http.ext_authz.v3.ExtAuthz,
// refusing every setting it does not honour (a gRPC service, request
// bodies, metadata namespaces, ...).
func decodeExtAuthz(b []byte) (*ExtAuthz, error) {
	e := &ExtAuthz{StatusOnError: http.StatusForbidden}
	m := msg{b: b, varints: 1<<2 | 1<<6 | 1<<10 | 1<<12 | 1<<18 | 1<<19 | 1<<23 | 1<<24 | 1<<29 | 1<<31 | 1<<32}
	hasService := false
	for m.next() {
		switch m.num {
		case 1:
			gb, _ := m.bytes()
			m.fail(decodeExtAuthzGRPCService(gb, e), "grpc_service")
			hasService = true
		case 3:
			sb, _ := m.bytes()
			m.fail(decodeExtAuthzHTTPService(sb, e), "http_service")
			hasService = true
		case 2:
			e.FailureModeAllow = m.bool()
		case 7:
			sb, _ := m.bytes()
			sm := msg{b: sb, varints: 1 << 1}
			for sm.next() {
				if sm.num == 1 {
					if c := int(sm.enum()); c != 0 {
						e.StatusOnError = c
					}
				}
			}
			m.fail(sm.err, "status_on_error")
		case 14:
			mb, _ := m.bytes()
			sm, err := decodeShadowMatch(mb)
			m.fail(err, "filter_enabled_metadata")
			e.EnabledBy = sm
		case 12, 13, 6, 18, 20, 29:
			// transport_api_version, stat_prefix, clear_route_cache (the
			// route is chosen after authorization anyway),
			// include_tls_session and stats settings change no decision.
		case 17:
			sb, _ := m.bytes()
			ms, err := decodeListStringMatcher(sb)
			m.fail(err, "allowed_headers")
			e.AllowedHeaders = append(e.AllowedHeaders, ms...)
		case 5:
			bb, _ := m.bytes()
			bs, err := decodeBufferSettings(bb)
			m.fail(err, "with_request_body")
			e.Body = bs
		case 8, 16, 21, 22:
			m.fail(errNotSupported, "metadata_context_namespaces")
		case 9:
			m.fail(errNotSupported, "filter_enabled")
		case 11:
			m.fail(errNotSupported, "deny_at_disable")
		case 10:
			if m.bool() {
				m.fail(errNotSupported, "include_peer_certificate")
			}
		case 25:
			m.fail(errNotSupported, "disallowed_headers")
		case 26:
			m.fail(errNotSupported, "decoder_header_mutation_rules")
		case 32:
			if m.bool() {
				m.fail(errNotSupported, "shadow_mode")
			}
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if !hasService {
		return nil, within(errRequired, "http_service")
	}
	if e.GRPC && len(e.AllowedHeaders)+len(e.HeadersToAdd)+len(e.AllowedUpstreamHeaders)+len(e.AllowedClientHeaders) > 0 {
		return nil, errorf("allowed_headers and header settings apply to HTTP services only: a gRPC authorizer is sent every header and answers with the headers to set")
	}
	return e, nil
}

func decodeExtAuthzHTTPService(b []byte, e *ExtAuthz) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			ub, _ := m.bytes()
			um := msg{b: ub}
			var uri string
			for um.next() {
				switch um.num {
				case 1:
					uri = um.str("uri")
				case 2:
					e.Cluster = um.str("cluster")
				case 3:
					e.Timeout = um.duration("timeout")
				}
			}
			m.fail(um.err, "server_uri")
			rest := strings.TrimPrefix(strings.TrimPrefix(uri, "http://"), "https://")
			e.Authority, _, _ = strings.Cut(rest, "/")
		case 2:
			e.PathPrefix = m.str("path_prefix")
		case 10:
			m.fail(errNotSupported, "path_override")
		case 7:
			rb, _ := m.bytes()
			rm := msg{b: rb}
			for rm.next() {
				switch rm.num {
				case 1:
					sb, _ := rm.bytes()
					ms, err := decodeListStringMatcher(sb)
					rm.fail(err, "allowed_headers")
					e.AllowedHeaders = append(e.AllowedHeaders, ms...)
				case 2:
					hb, _ := rm.bytes()
					hv := msg{b: hb}
					var h HeaderValueOption
					for hv.next() {
						switch hv.num {
						case 1:
							h.Name = hv.str("key")
						case 2:
							h.Value = hv.str("value")
						}
					}
					rm.fail(hv.err, "headers_to_add")
					e.HeadersToAdd = append(e.HeadersToAdd, h)
				}
			}
			m.fail(rm.err, "authorization_request")
		case 8:
			rb, _ := m.bytes()
			rm := msg{b: rb}
			for rm.next() {
				switch rm.num {
				case 1:
					sb, _ := rm.bytes()
					ms, err := decodeListStringMatcher(sb)
					rm.fail(err, "allowed_upstream_headers")
					e.AllowedUpstreamHeaders = ms
				case 2:
					sb, _ := rm.bytes()
					ms, err := decodeListStringMatcher(sb)
					rm.fail(err, "allowed_client_headers")
					e.AllowedClientHeaders = ms
				case 3:
					rm.fail(errNotSupported, "allowed_upstream_headers_to_append")
				case 4:
					rm.fail(errNotSupported, "allowed_client_headers_on_success")
				case 5:
					rm.fail(errNotSupported, "dynamic_metadata_from_headers")
				}
			}
			m.fail(rm.err, "authorization_response")
		case 9:
			m.fail(errNotSupported, "retry_policy")
		}
	}
	if m.err != nil {
		return m.err
	}
	if e.Cluster == "" {
		return within(errRequired, "server_uri.cluster")
	}
	return nil
}

// decodeExtAuthzGRPCService reads a core.v3.GrpcService naming a cluster
// (envoy_grpc), which the proxy calls over HTTP/2 itself.
func decodeExtAuthzGRPCService(b []byte, e *ExtAuthz) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			gb, _ := m.bytes()
			gm := msg{b: gb, varints: 1 << 5}
			for gm.next() {
				switch gm.num {
				case 1:
					e.Cluster = gm.str("cluster_name")
				case 2:
					e.Authority = gm.str("authority")
				case 3:
					gm.fail(errNotSupported, "retry_policy")
				}
			}
			m.fail(gm.err, "envoy_grpc")
		case 2:
			m.fail(errNotSupported, "google_grpc")
		case 3:
			e.Timeout = m.duration("timeout")
		case 5:
			m.fail(errNotSupported, "initial_metadata")
		case 6:
			m.fail(errNotSupported, "retry_policy")
		}
	}
	if m.err != nil {
		return m.err
	}
	if e.Cluster == "" {
		return within(errRequired, "envoy_grpc.cluster_name")
	}
	e.GRPC = true
	return nil
}

func decodeListStringMatcher(b []byte) ([]StringMatcher, error) {
	var out []StringMatcher
	m := msg{b: b}
	for m.next() {
		if m.num == 1 {
			sb, _ := m.bytes()
			s, err := decodeStringMatcher(sb)
			m.failIndex(err, "patterns", len(out))
			out = append(out, s)
		}
	}
	return out, m.err
}

// decodeShadowMatch reads the filter_enabled_metadata Istio writes: the
// RBAC filter's shadow effective policy id against a string matcher.
// Anything else names metadata the proxy does not keep.
func decodeShadowMatch(b []byte) (*ShadowMatch, error) {
	md := msg{b: b, varints: 1 << 4}
	var filter string
	var path []string
	var value []byte
	for md.next() {
		switch md.num {
		case 1:
			filter = md.str("filter")
		case 2:
			sb, _ := md.bytes()
			sm := msg{b: sb}
			for sm.next() {
				if sm.num == 1 {
					path = append(path, sm.str("key"))
				}
			}
			md.fail(sm.err, "path")
		case 3:
			value, _ = md.bytes()
		case 4:
			if md.bool() {
				md.fail(errNotSupported, "invert")
			}
		}
	}
	if md.err != nil {
		return nil, md.err
	}
	if filter != "envoy.filters.http.rbac" || len(path) != 1 || !strings.HasSuffix(path[0], shadowPolicyKey) {
		return nil, errorf("only the RBAC filter's shadow effective policy id is supported by trellis-proxy")
	}
	v, err := decodeValueMatcher(value, 0)
	if err != nil {
		return nil, within(err, "value")
	}
	if v.Kind != ValueString {
		return nil, within(errorf("only string_match is supported by trellis-proxy"), "value")
	}
	return &ShadowMatch{StatPrefix: strings.TrimSuffix(path[0], shadowPolicyKey), Policy: v.String}, nil
}

// decodeBufferSettings reads ext_authz's BufferSettings; Envoy requires a
// max_request_bytes above 0.
func decodeBufferSettings(b []byte) (*BodySettings, error) {
	bs := &BodySettings{}
	m := msg{b: b, varints: 1<<1 | 1<<2 | 1<<3}
	for m.next() {
		switch m.num {
		case 1:
			bs.MaxBytes = m.uint32()
		case 2:
			bs.AllowPartial = m.bool()
		case 3:
			bs.PackAsBytes = m.bool()
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if bs.MaxBytes == 0 {
		return nil, within(errorf("must be greater than 0"), "max_request_bytes")
	}
	return bs, nil
}
