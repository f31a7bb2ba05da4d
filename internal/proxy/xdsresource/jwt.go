package xdsresource

import (
	"strconv"
	"strings"
	"time"
)

// jwtType is Envoy's JWT authentication HTTP filter, which istiod makes
// of RequestAuthentications.
const jwtType = "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"

// JWTAuthentication is an envoy.filters.http.jwt_authn filter's config:
// which providers verify tokens, and which requirement applies to which
// request. Everything the proxy cannot honour is refused when decoded.
type JWTAuthentication struct {
	Providers map[string]*JWTProvider
	// Rules are tried in order; the first whose path matches decides the
	// request's requirement. A request no rule matches is not verified.
	Rules []JWTRule
	// BypassCORSPreflight lets CORS preflight requests (OPTIONS with
	// Origin and Access-Control-Request-Method) through unverified.
	BypassCORSPreflight bool
	// StripFailureResponse answers a refusal with an empty body and no
	// WWW-Authenticate header.
	StripFailureResponse bool
}

// JWTRule applies Requires to requests whose path matches (a prefix, or
// exactly, as PathKind says). Requires nil: the request passes unverified.
type JWTRule struct {
	PathKind PathKind // PathPrefix or PathExact
	Path     string
	Requires *JWTRequirement
}

// JWTRequirementKind says what a JWTRequirement asks.
type JWTRequirementKind int

// Requirement kinds, as Envoy's JwtRequirement oneof.
const (
	// RequireProvider: the provider's tokens are present and valid.
	RequireProvider JWTRequirementKind = iota
	// RequireAny: one of Of is satisfied.
	RequireAny
	// RequireAll: every one of Of is satisfied.
	RequireAll
	// AllowMissing: no token, or only valid ones (a present, invalid
	// token fails).
	AllowMissing
	// AllowMissingOrFailed: always satisfied; valid tokens still count.
	AllowMissingOrFailed
)

// JWTRequirement is one node of a requirement tree.
type JWTRequirement struct {
	Kind      JWTRequirementKind
	Provider  string   // RequireProvider
	Audiences []string // RequireProvider: overrides the provider's, when set
	Of        []JWTRequirement
}

// JWTProvider says how to verify one issuer's tokens and where to find
// them.
type JWTProvider struct {
	Issuer    string   // "" accepts any issuer
	Audiences []string // empty: the token's aud is not checked
	// Forward keeps the token in the request sent upstream; otherwise the
	// header or query parameter it came in is removed.
	Forward bool
	// FromHeaders, FromParams and FromCookies are where tokens are looked
	// for; all empty means Envoy's defaults, "Authorization: Bearer
	// <token>" and the access_token query parameter.
	FromHeaders []JWTHeader
	FromParams  []string
	FromCookies []string
	// ForwardPayloadHeader, when set, carries the verified payload
	// (base64url, padded when PadForwardPayloadHeader) to the upstream.
	ForwardPayloadHeader    string
	PadForwardPayloadHeader bool
	// PayloadInMetadata names the verified payload for later filters
	// (istiod sets it to the issuer).
	PayloadInMetadata string
	// SpaceDelimitedClaims are claims whose string value is a
	// space-separated list, given to later filters as that list.
	SpaceDelimitedClaims []string
	// ClaimToHeaders copies claims (primitive values only) to headers.
	ClaimToHeaders []JWTClaimHeader
	// ClockSkew is the leeway on exp and nbf; 0 means Envoy's 60 s.
	ClockSkew time.Duration
	// Exactly one of LocalJWKS and RemoteJWKS is set.
	LocalJWKS  *string
	RemoteJWKS *RemoteJWKS
}

// JWTHeader is a header that may carry a token, after ValuePrefix when
// one is set.
type JWTHeader struct {
	Name        string // lower case
	ValuePrefix string
}

// JWTClaimHeader copies claim Claim (a.b for nested) to header Header.
type JWTClaimHeader struct {
	Header string // lower case
	Claim  string
}

// RemoteJWKS is a JWKS fetched over HTTP(S) and cached.
type RemoteJWKS struct {
	URI     string
	Cluster string
	Timeout time.Duration // 0: the fetcher's default
	// CacheDuration is how long fetched keys stand before they are
	// fetched again; 0: Envoy's 10 minutes.
	CacheDuration time.Duration
	// FailedRefetch is how soon a failed fetch is tried again; 0: the
	// fetcher's default.
	FailedRefetch time.Duration
}

// decodeJWTAuthentication reads a JwtAuthentication.
func decodeJWTAuthentication(b []byte) (*JWTAuthentication, error) {
	j := &JWTAuthentication{Providers: map[string]*JWTProvider{}}
	m := msg{b: b, varints: 1<<4 | 1<<6}
	rules := 0
	for m.next() {
		switch m.num {
		case 1:
			eb, ok := m.bytes()
			if !ok {
				break
			}
			key, value, err := mapEntry(eb)
			if err != nil {
				m.fail(err, "providers")
				break
			}
			seg := "providers[" + strconv.Quote(string(key)) + "]"
			p, err := decodeJWTProvider(value)
			m.fail(err, seg)
			j.Providers[string(key)] = p
		case 2:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			r, err := decodeJWTRule(rb)
			m.failIndex(err, "rules", rules)
			j.Rules = append(j.Rules, r)
			rules++
		case 3:
			m.fail(errNotSupported, "filter_state_rules")
		case 4:
			j.BypassCORSPreflight = m.bool()
		case 5:
			m.fail(errNotSupported, "requirement_map")
		case 6:
			j.StripFailureResponse = m.bool()
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	for i := range j.Rules {
		if err := j.checkProviders(j.Rules[i].Requires); err != nil {
			return nil, within(within(err, "requires"), "rules["+strconv.Itoa(i)+"]")
		}
	}
	return j, nil
}

// checkProviders refuses a requirement naming a provider the filter does
// not define, as Envoy does.
func (j *JWTAuthentication) checkProviders(r *JWTRequirement) error {
	if r == nil {
		return nil
	}
	if r.Kind == RequireProvider {
		if _, ok := j.Providers[r.Provider]; !ok {
			return errorf("provider %q is not configured", r.Provider)
		}
	}
	for i := range r.Of {
		if err := j.checkProviders(&r.Of[i]); err != nil {
			return within(err, "requirements["+strconv.Itoa(i)+"]")
		}
	}
	return nil
}

func decodeJWTProvider(b []byte) (*JWTProvider, error) {
	p := &JWTProvider{}
	m := msg{b: b, varints: 1<<5 | 1<<10 | 1<<11 | 1<<17 | 1<<20}
	headers, claims := 0, 0
	for m.next() {
		switch m.num {
		case 1:
			p.Issuer = m.str("issuer")
		case 2:
			p.Audiences = append(p.Audiences, m.str("audiences"))
		case 3:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			r, err := decodeRemoteJWKS(rb)
			m.fail(err, "remote_jwks")
			p.RemoteJWKS, p.LocalJWKS = r, nil
		case 4:
			db, ok := m.bytes()
			if !ok {
				break
			}
			s, err := decodeInlineDataSource(db)
			m.fail(err, "local_jwks")
			p.LocalJWKS, p.RemoteJWKS = &s, nil
		case 5:
			p.Forward = m.bool()
		case 6:
			hb, ok := m.bytes()
			if !ok {
				break
			}
			h, err := decodeJWTHeader(hb)
			m.failIndex(err, "from_headers", headers)
			p.FromHeaders = append(p.FromHeaders, h)
			headers++
		case 7:
			p.FromParams = append(p.FromParams, m.str("from_params"))
		case 8:
			p.ForwardPayloadHeader = m.str("forward_payload_header")
			m.fail(checkHeaderName(p.ForwardPayloadHeader), "forward_payload_header")
			p.ForwardPayloadHeader = lowerASCII(p.ForwardPayloadHeader)
		case 9:
			p.PayloadInMetadata = m.str("payload_in_metadata")
		case 10:
			p.ClockSkew = time.Duration(m.uint32()) * time.Second
		case 11:
			p.PadForwardPayloadHeader = m.bool()
		case 12:
			// jwt_cache_config sizes Envoy's cache of verified tokens:
			// performance only, and the proxy verifies every time.
		case 13:
			p.FromCookies = append(p.FromCookies, m.str("from_cookies"))
		case 14, 16:
			// header_in_metadata and failed_status_in_metadata only name
			// dynamic metadata, which nothing in the proxy reads.
		case 15:
			cb, ok := m.bytes()
			if !ok {
				break
			}
			c, err := decodeJWTClaimHeader(cb)
			m.failIndex(err, "claim_to_headers", claims)
			p.ClaimToHeaders = append(p.ClaimToHeaders, c)
			claims++
		case 17:
			// clear_route_cache: routes are chosen after verification
			// anyway.
		case 18:
			nb, ok := m.bytes()
			if !ok {
				break
			}
			n := msg{b: nb}
			for n.next() {
				if n.num == 1 {
					p.SpaceDelimitedClaims = append(p.SpaceDelimitedClaims, n.str("space_delimited_claims"))
				}
			}
			m.fail(n.err, "normalize_payload_in_metadata")
		case 19:
			m.fail(errNotSupported, "subjects")
		case 20:
			if m.bool() {
				m.fail(errNotSupported, "require_expiration")
			}
		case 21:
			m.fail(errNotSupported, "max_lifetime")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if p.LocalJWKS == nil && p.RemoteJWKS == nil {
		return nil, errorf("needs local_jwks or remote_jwks")
	}
	return p, nil
}

func decodeRemoteJWKS(b []byte) (*RemoteJWKS, error) {
	r := &RemoteJWKS{}
	m := msg{b: b}
	hasURI := false
	for m.next() {
		switch m.num {
		case 1:
			ub, ok := m.bytes()
			if !ok {
				break
			}
			hasURI = true
			u := msg{b: ub}
			for u.next() {
				switch u.num {
				case 1:
					r.URI = u.str("uri")
				case 2:
					r.Cluster = u.str("cluster")
				case 3:
					r.Timeout = u.duration("timeout")
				}
			}
			m.fail(u.err, "http_uri")
		case 2:
			r.CacheDuration = m.duration("cache_duration")
		case 3:
			// async_fetch: the proxy always fetches in the background;
			// its failed_refetch_duration is the retry interval.
			ab, ok := m.bytes()
			if !ok {
				break
			}
			a := msg{b: ab}
			for a.next() {
				if a.num == 2 {
					r.FailedRefetch = a.duration("failed_refetch_duration")
				}
			}
			m.fail(a.err, "async_fetch")
		case 4:
			// retry_policy: failed fetches are retried with the proxy's
			// own backoff.
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if !hasURI || r.URI == "" {
		return nil, within(errRequired, "http_uri.uri")
	}
	return r, nil
}

// decodeInlineDataSource reads a config.core.v3.DataSource that holds its
// data inline; a file or environment variable names something on the
// Envoy's host, which the control plane never means for a sidecar.
func decodeInlineDataSource(b []byte) (string, error) {
	m := msg{b: b}
	var s string
	set := false
	for m.next() {
		switch m.num {
		case 1:
			m.fail(errNotSupported, "filename")
		case 2:
			v, _ := m.bytes()
			s, set = string(v), true
		case 3:
			s, set = m.str("inline_string"), true
		case 4:
			m.fail(errNotSupported, "environment_variable")
		}
	}
	if m.err != nil {
		return "", m.err
	}
	if !set {
		return "", errorf("needs inline_string or inline_bytes")
	}
	return s, nil
}

func decodeJWTHeader(b []byte) (JWTHeader, error) {
	var h JWTHeader
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			h.Name = m.str("name")
		case 2:
			h.ValuePrefix = m.str("value_prefix")
		}
	}
	if m.err != nil {
		return h, m.err
	}
	if err := checkHeaderName(h.Name); err != nil {
		return h, within(err, "name")
	}
	h.Name = lowerASCII(h.Name)
	return h, nil
}

func decodeJWTClaimHeader(b []byte) (JWTClaimHeader, error) {
	var c JWTClaimHeader
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			c.Header = m.str("header_name")
		case 2:
			c.Claim = m.str("claim_name")
		case 3:
			m.fail(errNotSupported, "claim_path")
		}
	}
	switch {
	case m.err != nil:
		return c, m.err
	case c.Claim == "":
		return c, within(errRequired, "claim_name")
	}
	if err := checkHeaderName(c.Header); err != nil {
		return c, within(err, "header_name")
	}
	c.Header = lowerASCII(c.Header)
	return c, nil
}

func decodeJWTRule(b []byte) (JWTRule, error) {
	r := JWTRule{PathKind: PathPrefix, Path: "/"}
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			mb, ok := m.bytes()
			if !ok {
				break
			}
			var rm RouteMatch
			err := decodeRouteMatch(mb, &rm)
			if err == nil && (rm.PathKind != PathPrefix && rm.PathKind != PathExact || rm.CaseInsensitive || len(rm.Headers) > 0 || len(rm.QueryParams) > 0) {
				err = errorf("only a case-sensitive prefix or path is supported by trellis-proxy")
			}
			m.fail(err, "match")
			r.PathKind, r.Path = rm.PathKind, rm.Path
		case 2:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			req, err := decodeJWTRequirement(rb, 0)
			m.fail(err, "requires")
			r.Requires = req
		case 3:
			m.fail(errNotSupported, "requirement_name")
		}
	}
	return r, m.err
}

// maxRequirementDepth bounds a requirement tree's nesting (istiod's is
// three deep).
const maxRequirementDepth = 8

// decodeJWTRequirement reads a JwtRequirement; one that sets nothing is
// nil, which Envoy treats as no requirement.
func decodeJWTRequirement(b []byte, depth int) (*JWTRequirement, error) {
	if depth > maxRequirementDepth {
		return nil, errorf("nested deeper than %d", maxRequirementDepth)
	}
	var r *JWTRequirement
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			r = &JWTRequirement{Kind: RequireProvider, Provider: m.str("provider_name")}
		case 2:
			pb, ok := m.bytes()
			if !ok {
				break
			}
			r = &JWTRequirement{Kind: RequireProvider}
			p := msg{b: pb}
			for p.next() {
				switch p.num {
				case 1:
					r.Provider = p.str("provider_name")
				case 2:
					r.Audiences = append(r.Audiences, p.str("audiences"))
				}
			}
			m.fail(p.err, "provider_and_audiences")
		case 3, 4:
			lb, ok := m.bytes()
			if !ok {
				break
			}
			kind, seg := RequireAny, "requires_any"
			if m.num == 4 {
				kind, seg = RequireAll, "requires_all"
			}
			r = &JWTRequirement{Kind: kind}
			l := msg{b: lb}
			for l.next() {
				if l.num != 1 {
					continue
				}
				eb, _ := l.bytes()
				e, err := decodeJWTRequirement(eb, depth+1)
				l.failIndex(err, "requirements", len(r.Of))
				if e == nil {
					// An empty requirement is satisfied by anything.
					e = &JWTRequirement{Kind: AllowMissingOrFailed}
				}
				r.Of = append(r.Of, *e)
			}
			m.fail(l.err, seg)
			if m.err == nil && len(r.Of) < 2 {
				// Envoy's validation: an or/and list has two or more.
				m.fail(errorf("needs at least 2 requirements"), seg+".requirements")
			}
		case 5:
			r = &JWTRequirement{Kind: AllowMissingOrFailed}
		case 6:
			r = &JWTRequirement{Kind: AllowMissing}
		case 7:
			m.fail(errNotSupported, "extract_only_without_validation")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if r != nil && r.Kind == RequireProvider && r.Provider == "" {
		return nil, within(errRequired, "provider_name")
	}
	return r, nil
}

// checkHeaderName refuses a header name that is not an HTTP token.
func checkHeaderName(n string) error {
	if n == "" {
		return errRequired
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '"' || c == '(' || c == ')' || c == ',' || c == '/' || c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' || c == '[' || c == '\\' || c == ']' || c == '{' || c == '}' {
			return errorf("%q is not a valid header name", n)
		}
	}
	return nil
}

func lowerASCII(s string) string { return strings.ToLower(s) }

// decodeJWTFilter decodes a jwt_authn filter into h; a connection manager
// has at most one, ahead of the router. The proxy verifies tokens before
// authorization whatever the filters' order, which is istiod's order.
func decodeJWTFilter(b []byte, h *HTTPConnectionManager, afterRouter bool) error {
	switch {
	case afterRouter:
		return errorf("jwt_authn follows the router, which must be the last filter")
	case h.JWT != nil:
		return errorf("a second jwt_authn filter is not supported by trellis-proxy")
	}
	j, err := decodeJWTAuthentication(b)
	if err != nil {
		return within(err, "typed_config")
	}
	h.JWT = j
	return nil
}
