package xdsresource

import (
	"regexp"
	"strings"
	"time"
)

// defaultRouteTimeout is Envoy's when a route action sets no timeout
// (Trellis sets 0, "none", explicitly, as Istio does).
const defaultRouteTimeout = 15 * time.Second

// DecodeRouteConfig decodes and validates an
// envoy.config.route.v3.RouteConfiguration.
func DecodeRouteConfig(b []byte) (*RouteConfig, error) {
	rc := &RouteConfig{}
	m := msg{b: b}
	if n := count(b, 2); n > 0 {
		rc.VirtualHosts = make([]VirtualHost, 0, n)
	}
	for m.next() {
		switch m.num {
		case 1:
			rc.Name = m.str("name")
		case 2:
			vb, ok := m.bytes()
			if !ok {
				break
			}
			vh, err := decodeVirtualHost(vb)
			m.failIndex(err, "virtual_hosts", len(rc.VirtualHosts))
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		case 3:
			m.fail(errNotSupported, "internal_only_headers")
		case 4:
			m.fail(errNotSupported, "response_headers_to_add")
		case 5:
			m.fail(errNotSupported, "response_headers_to_remove")
		case 6:
			m.fail(errNotSupported, "request_headers_to_add")
		case 8:
			m.fail(errNotSupported, "request_headers_to_remove")
		case 9:
			m.fail(errNotSupported, "vhds")
		case 13:
			m.fail(errNotSupported, "request_mirror_policies")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	// Envoy refuses a domain claimed twice: which host would win is
	// otherwise an accident of order.
	seen := map[string]int{}
	for i, vh := range rc.VirtualHosts {
		for j, d := range vh.Domains {
			key := strings.ToLower(d)
			if k, dup := seen[key]; dup && k != i {
				return nil, withinIndex(withinIndex(errorf("domain %q is also in virtual_hosts[%d]", d, k), "domains", j), "virtual_hosts", i)
			}
			seen[key] = i
		}
	}
	return rc, nil
}

func decodeVirtualHost(b []byte) (VirtualHost, error) {
	var vh VirtualHost
	m := msg{b: b, varints: 1 << 4}
	if n := count(b, 3); n > 0 {
		vh.Routes = make([]Route, 0, n)
	}
	for m.next() {
		switch m.num {
		case 1:
			vh.Name = m.str("name")
		case 2:
			d := m.str("domains")
			if d == "" || (strings.Count(d, "*") > 0 && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")) || strings.Count(d, "*") > 1 {
				m.failIndex(errorf("invalid domain %q: a wildcard may only lead or trail", d), "domains", len(vh.Domains))
			}
			vh.Domains = append(vh.Domains, d)
		case 3:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			r, err := decodeRoute(rb)
			m.failIndex(err, "routes", len(vh.Routes))
			vh.Routes = append(vh.Routes, r)
		case 4:
			if m.enum() != 0 {
				m.fail(errNotSupported, "require_tls")
			}
		case 7:
			m.fail(errNotSupported, "request_headers_to_add")
		case 10:
			m.fail(errNotSupported, "response_headers_to_add")
		case 11:
			m.fail(errNotSupported, "response_headers_to_remove")
		case 13:
			m.fail(errNotSupported, "request_headers_to_remove")
		case 16:
			m.fail(errNotSupported, "retry_policy")
		case 20:
			m.fail(errNotSupported, "retry_policy_typed_config")
		case 21:
			m.fail(errNotSupported, "matcher")
		case 22:
			m.fail(errNotSupported, "request_mirror_policies")
		case 8:
			m.fail(errNotSupported, "cors")
		}
	}
	if m.err != nil {
		return vh, m.err
	}
	if len(vh.Domains) == 0 {
		return vh, within(errRequired, "domains")
	}
	return vh, nil
}

func decodeRoute(b []byte) (Route, error) {
	var r Route
	m := msg{b: b}
	hasMatch := false
	for m.next() {
		switch m.num {
		case 14:
			r.Name = m.str("name")
		case 1:
			mb, ok := m.bytes()
			if !ok {
				break
			}
			hasMatch = true
			m.fail(decodeRouteMatch(mb, &r.Match), "match")
		case 2:
			ab, ok := m.bytes()
			if !ok {
				break
			}
			a, err := decodeRouteAction(ab)
			m.fail(err, "route")
			r.Action, r.Redirect, r.Direct = a, nil, nil
		case 3:
			ab, ok := m.bytes()
			if !ok {
				break
			}
			rd, err := decodeRedirect(ab)
			m.fail(err, "redirect")
			r.Action, r.Redirect, r.Direct = nil, rd, nil
		case 7:
			ab, ok := m.bytes()
			if !ok {
				break
			}
			d, err := decodeDirectResponse(ab)
			m.fail(err, "direct_response")
			r.Action, r.Redirect, r.Direct = nil, nil, d
		case 13:
			if eb, ok := m.bytes(); ok {
				m.fail(decodeRouteFilterConfig(eb, &r), "typed_per_filter_config") // cors.go
			}
		case 17:
			m.fail(errNotSupported, "filter_action")
		case 18:
			m.fail(errNotSupported, "non_forwarding_action")
		case 9:
			r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, m.headerOption("request_headers_to_add", len(r.RequestHeadersToAdd)))
		case 10:
			r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, m.headerOption("response_headers_to_add", len(r.ResponseHeadersToAdd)))
		case 12:
			r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, m.str("request_headers_to_remove"))
		case 11:
			r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, m.str("response_headers_to_remove"))
		}
	}
	switch {
	case m.err != nil:
		return r, m.err
	case !hasMatch:
		return r, within(errRequired, "match")
	case r.Action == nil && r.Redirect == nil && r.Direct == nil:
		return r, errorf("needs one of route, redirect or direct_response")
	}
	return r, nil
}

func decodeRouteMatch(b []byte, rm *RouteMatch) error {
	m := msg{b: b}
	hasPath := false
	setPath := func(k PathKind, p string, re *regexp.Regexp) {
		rm.PathKind, rm.Path, rm.PathRegex, hasPath = k, p, re, true
	}
	for m.next() {
		switch m.num {
		case 1:
			setPath(PathPrefix, m.str("prefix"), nil)
		case 2:
			setPath(PathExact, m.str("path"), nil)
		case 10:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			src, re, err := decodeRegexMatcher(rb, true)
			m.fail(err, "safe_regex")
			setPath(PathRegex, src, re)
		case 14:
			p := m.str("path_separated_prefix")
			if !strings.HasPrefix(p, "/") || (len(p) > 1 && strings.HasSuffix(p, "/")) {
				m.fail(errorf("%q must start with / and not end with one", p), "path_separated_prefix")
			}
			setPath(PathSeparatedPrefix, p, nil)
		case 12:
			m.fail(errNotSupported, "connect_matcher")
		case 15:
			m.fail(errNotSupported, "path_match_policy")
		case 4:
			rm.CaseInsensitive = !m.wrappedBool("case_sensitive")
		case 6:
			hb, ok := m.bytes()
			if !ok {
				break
			}
			h, err := decodeHeaderMatcher(hb)
			m.failIndex(err, "headers", len(rm.Headers))
			rm.Headers = append(rm.Headers, h)
		case 7:
			qb, ok := m.bytes()
			if !ok {
				break
			}
			q, err := decodeQueryParamMatcher(qb)
			m.failIndex(err, "query_parameters", len(rm.QueryParams))
			rm.QueryParams = append(rm.QueryParams, q)
		case 8:
			m.fail(errNotSupported, "grpc")
		case 9:
			m.fail(errNotSupported, "runtime_fraction")
		case 11:
			m.fail(errNotSupported, "tls_context")
		case 13:
			m.fail(errNotSupported, "dynamic_metadata")
		case 16:
			m.fail(errNotSupported, "filter_state")
		case 17:
			m.fail(errNotSupported, "cookies")
		}
	}
	if m.err != nil {
		return m.err
	}
	if !hasPath {
		return errorf("needs one of prefix, path, safe_regex or path_separated_prefix")
	}
	return nil
}

// decodeRegexMatcher reads a type.matcher.v3.RegexMatcher and compiles it
// with Go's regexp, which implements RE2's syntax as Envoy's safe_regex
// does. Matchers must match the whole value, as in Envoy, so anchored
// patterns are wrapped; rewrites replace every match, so they are not.
func decodeRegexMatcher(b []byte, anchored bool) (string, *regexp.Regexp, error) {
	var src string
	m := msg{b: b}
	for m.next() {
		if m.num == 2 {
			src = m.str("regex")
		}
	}
	if m.err != nil {
		return "", nil, m.err
	}
	expr := src
	if anchored {
		expr = "^(?:" + src + ")$"
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return "", nil, errorf("invalid regex %q: %v", src, err)
	}
	return src, re, nil
}

func decodeHeaderMatcher(b []byte) (HeaderMatcher, error) {
	var h HeaderMatcher
	m := msg{b: b, varints: 1<<7 | 1<<8 | 1<<14}
	hasMatch := false
	set := func(k StringKind, v string, re *regexp.Regexp) {
		h.Present, h.Match, hasMatch = false, StringMatcher{Kind: k, Value: v, Regex: re}, true
	}
	for m.next() {
		switch m.num {
		case 1:
			h.Name = strings.ToLower(m.str("name"))
		case 4:
			set(StringExact, m.str("exact_match"), nil)
		case 9:
			set(StringPrefix, m.str("prefix_match"), nil)
		case 10:
			set(StringSuffix, m.str("suffix_match"), nil)
		case 12:
			set(StringContains, m.str("contains_match"), nil)
		case 11:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			src, re, err := decodeRegexMatcher(rb, true)
			m.fail(err, "safe_regex_match")
			set(StringRegex, src, re)
		case 13:
			sb, ok := m.bytes()
			if !ok {
				break
			}
			sm, err := decodeStringMatcher(sb)
			m.fail(err, "string_match")
			h.Present, h.Match, hasMatch = false, sm, true
		case 7:
			h.Present = m.bool()
			if !h.Present {
				// present_match: false matches requests without the
				// header, which the proxy expresses as an inverted match.
				h.Present, h.Invert = true, !h.Invert
			}
			h.Match, hasMatch = StringMatcher{}, true
		case 6:
			m.fail(errNotSupported, "range_match")
		case 8:
			if m.bool() {
				h.Invert = !h.Invert
			}
		case 14:
			h.MissingAsEmpty = m.bool()
		}
	}
	if m.err != nil {
		return h, m.err
	}
	if h.Name == "" {
		return h, within(errRequired, "name")
	}
	if !hasMatch {
		// Envoy treats a matcher with no criterion as a presence check.
		h.Present = true
	}
	return h, nil
}

func decodeQueryParamMatcher(b []byte) (QueryParamMatcher, error) {
	var q QueryParamMatcher
	m := msg{b: b, varints: 1 << 6}
	hasMatch := false
	for m.next() {
		switch m.num {
		case 1:
			q.Name = m.str("name")
		case 5:
			sb, ok := m.bytes()
			if !ok {
				break
			}
			sm, err := decodeStringMatcher(sb)
			m.fail(err, "string_match")
			q.Present, q.Match, hasMatch = false, sm, true
		case 6:
			if !m.bool() {
				m.fail(errorf("only present_match: true is supported"), "present_match")
			}
			q.Present, q.Match, hasMatch = true, StringMatcher{}, true
		}
	}
	if m.err != nil {
		return q, m.err
	}
	if q.Name == "" {
		return q, within(errRequired, "name")
	}
	if !hasMatch {
		q.Present = true
	}
	return q, nil
}

func decodeStringMatcher(b []byte) (StringMatcher, error) {
	var s StringMatcher
	m := msg{b: b, varints: 1 << 6}
	hasPattern := false
	for m.next() {
		switch m.num {
		case 1:
			s.Kind, s.Value, s.Regex, hasPattern = StringExact, m.str("exact"), nil, true
		case 2:
			s.Kind, s.Value, s.Regex, hasPattern = StringPrefix, m.str("prefix"), nil, true
		case 3:
			s.Kind, s.Value, s.Regex, hasPattern = StringSuffix, m.str("suffix"), nil, true
		case 7:
			s.Kind, s.Value, s.Regex, hasPattern = StringContains, m.str("contains"), nil, true
		case 5:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			src, re, err := decodeRegexMatcher(rb, true)
			m.fail(err, "safe_regex")
			s.Kind, s.Value, s.Regex, hasPattern = StringRegex, src, re, true
		case 8:
			m.fail(errNotSupported, "custom")
		case 6:
			s.IgnoreCase = m.bool()
		}
	}
	if m.err != nil {
		return s, m.err
	}
	if !hasPattern {
		return s, errorf("needs one of exact, prefix, suffix, contains or safe_regex")
	}
	return s, nil
}

func decodeRouteAction(b []byte) (*RouteAction, error) {
	a := &RouteAction{Timeout: defaultRouteTimeout}
	m := msg{b: b}
	hasCluster := false
	for m.next() {
		switch m.num {
		case 1:
			name := m.str("cluster")
			if name == "" {
				m.fail(errRequired, "cluster")
			}
			a.Clusters, a.TotalWeight, hasCluster = []WeightedCluster{{Name: name, Weight: 1}}, 1, true
		case 3:
			wb, ok := m.bytes()
			if !ok {
				break
			}
			cs, total, err := decodeWeightedClusters(wb)
			m.fail(err, "weighted_clusters")
			a.Clusters, a.TotalWeight, hasCluster = cs, total, true
		case 2:
			m.fail(errNotSupported, "cluster_header")
		case 37:
			m.fail(errNotSupported, "cluster_specifier_plugin")
		case 39:
			m.fail(errNotSupported, "inline_cluster_specifier_plugin")
		case 4:
			m.fail(errNotSupported, "metadata_match")
		case 5:
			a.PrefixRewrite = m.str("prefix_rewrite")
		case 32:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			var err error
			a.RegexRewrite, a.RegexSubstitution, err = decodeRegexRewrite(rb)
			m.fail(err, "regex_rewrite")
		case 41:
			m.fail(errNotSupported, "path_rewrite_policy")
		case 45:
			m.fail(errNotSupported, "path_rewrite")
		case 6:
			a.HostRewrite = m.str("host_rewrite_literal")
		case 7:
			if m.wrappedBool("auto_host_rewrite") {
				m.fail(errNotSupported, "auto_host_rewrite")
			}
		case 29:
			m.fail(errNotSupported, "host_rewrite_header")
		case 35:
			m.fail(errNotSupported, "host_rewrite_path_regex")
		case 44:
			m.fail(errNotSupported, "host_rewrite")
		case 8:
			a.Timeout = m.duration("timeout")
		case 9:
			rb, _ := m.bytes()
			rp, err := decodeRetryPolicy(rb)
			m.fail(err, "retry_policy")
			a.Retry = rp
		case 33:
			m.fail(errNotSupported, "retry_policy_typed_config")
		case 30:
			pb, _ := m.bytes()
			p, err := decodeMirrorPolicy(pb) // mirror.go
			m.failIndex(err, "request_mirror_policies", len(a.Mirrors))
			a.Mirrors = append(a.Mirrors, p)
		case 17:
			m.fail(errNotSupported, "cors (set the CORS filter's policy in typed_per_filter_config)")
		case 15:
			hb, ok := m.bytes()
			if !ok {
				break
			}
			hp, err := decodeHashPolicy(hb)
			m.failIndex(err, "hash_policy", len(a.HashPolicies))
			a.HashPolicies = append(a.HashPolicies, hp)
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if !hasCluster {
		return nil, errorf("needs cluster or weighted_clusters")
	}
	if a.PrefixRewrite != "" && a.RegexRewrite != nil {
		return nil, within(errorf("cannot be combined with prefix_rewrite"), "regex_rewrite")
	}
	return a, nil
}

// decodeRegexRewrite returns the pattern (unanchored: Envoy replaces every
// match) and the substitution in Go's regexp.Expand syntax: Envoy's \N
// capture references become ${N}, and a literal $ becomes $$.
func decodeRegexRewrite(b []byte) (*regexp.Regexp, string, error) {
	var re *regexp.Regexp
	var sub string
	hasPattern := false
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			pb, ok := m.bytes()
			if !ok {
				break
			}
			var err error
			_, re, err = decodeRegexMatcher(pb, false)
			m.fail(err, "pattern")
			hasPattern = true
		case 2:
			sub = m.str("substitution")
		}
	}
	if m.err != nil {
		return nil, "", m.err
	}
	if !hasPattern {
		return nil, "", within(errRequired, "pattern")
	}
	return re, goSubstitution(sub), nil
}

func goSubstitution(s string) string {
	if !strings.ContainsAny(s, `\$`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '$':
			out.WriteString("$$")
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			out.WriteString("${")
			out.WriteByte(s[i+1])
			out.WriteString("}")
			i++
		case c == '\\' && i+1 < len(s) && s[i+1] == '\\':
			out.WriteByte('\\')
			i++
		default:
			out.WriteByte(c)
		}
	}
	return out.String()
}

func decodeWeightedClusters(b []byte) ([]WeightedCluster, uint64, error) {
	m := msg{b: b}
	out := make([]WeightedCluster, 0, count(b, 1))
	var total uint64
	for m.next() {
		switch m.num {
		case 1:
			cb, ok := m.bytes()
			if !ok {
				break
			}
			c, err := decodeClusterWeight(cb)
			m.failIndex(err, "clusters", len(out))
			out = append(out, c)
			total += uint64(c.Weight)
		case 4:
			m.fail(errNotSupported, "header_name")
		case 5:
			if m.wrappedBool("use_hash_policy") {
				m.fail(errNotSupported, "use_hash_policy")
			}
		}
	}
	if m.err != nil {
		return nil, 0, m.err
	}
	if total == 0 {
		return nil, 0, within(errorf("total weight must be > 0"), "clusters")
	}
	return out, total, nil
}

func decodeClusterWeight(b []byte) (WeightedCluster, error) {
	var c WeightedCluster
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			c.Name = m.str("name")
		case 2:
			c.Weight = m.wrappedUint32("weight")
		case 12:
			m.fail(errNotSupported, "cluster_header")
		case 3:
			m.fail(errNotSupported, "metadata_match")
		case 11:
			m.fail(errNotSupported, "host_rewrite_literal")
		case 4:
			c.RequestHeadersToAdd = append(c.RequestHeadersToAdd, m.headerOption("request_headers_to_add", len(c.RequestHeadersToAdd)))
		case 5:
			c.ResponseHeadersToAdd = append(c.ResponseHeadersToAdd, m.headerOption("response_headers_to_add", len(c.ResponseHeadersToAdd)))
		case 9:
			c.RequestHeadersToRemove = append(c.RequestHeadersToRemove, m.str("request_headers_to_remove"))
		case 6:
			c.ResponseHeadersToRemove = append(c.ResponseHeadersToRemove, m.str("response_headers_to_remove"))
		}
	}
	if m.err != nil {
		return c, m.err
	}
	if c.Name == "" {
		return c, within(errRequired, "name")
	}
	return c, nil
}

func decodeHashPolicy(b []byte) (HashPolicy, error) {
	var hp HashPolicy
	m := msg{b: b}
	hasPolicy := false
	for m.next() {
		switch m.num {
		case 1:
			hb, ok := m.bytes()
			if !ok {
				break
			}
			hp, hasPolicy = HashPolicy{Kind: HashHeader}, true
			h := msg{b: hb}
			for h.next() {
				switch h.num {
				case 1:
					hp.Name = strings.ToLower(h.str("header_name"))
				case 2:
					h.fail(errNotSupported, "regex_rewrite")
				}
			}
			m.fail(h.err, "header")
		case 2:
			cb, ok := m.bytes()
			if !ok {
				break
			}
			hp, hasPolicy = HashPolicy{Kind: HashCookie}, true
			c := msg{b: cb}
			for c.next() {
				switch c.num {
				case 1:
					hp.Name = c.str("name")
				case 2:
					hp.CookieTTL = c.duration("ttl")
				case 3:
					hp.CookiePath = c.str("path")
				}
			}
			m.fail(c.err, "cookie")
		case 3:
			cb, ok := m.bytes()
			if !ok {
				break
			}
			hp, hasPolicy = HashPolicy{Kind: HashSourceIP}, true
			c := msg{b: cb, varints: 1 << 1}
			src := false
			for c.next() {
				if c.num == 1 {
					src = c.bool()
				}
			}
			if c.err == nil && !src {
				c.err = within(errorf("only source_ip: true is supported"), "source_ip")
			}
			m.fail(c.err, "connection_properties")
		case 5:
			qb, ok := m.bytes()
			if !ok {
				break
			}
			hp, hasPolicy = HashPolicy{Kind: HashQueryParam}, true
			q := msg{b: qb}
			for q.next() {
				if q.num == 1 {
					hp.Name = q.str("name")
				}
			}
			m.fail(q.err, "query_parameter")
		case 6:
			m.fail(errNotSupported, "filter_state")
		}
	}
	if m.err != nil {
		return hp, m.err
	}
	if !hasPolicy {
		return hp, errorf("needs one of header, cookie, connection_properties or query_parameter")
	}
	if hp.Kind != HashSourceIP && hp.Name == "" {
		return hp, errorf("needs a name to hash")
	}
	return hp, nil
}

// redirectCodes maps RedirectAction.RedirectResponseCode to HTTP statuses.
var redirectCodes = [...]int{301, 302, 303, 307, 308}

func decodeRedirect(b []byte) (*Redirect, error) {
	r := &Redirect{Code: 301}
	m := msg{b: b, varints: 1<<3 | 1<<4 | 1<<6 | 1<<8}
	for m.next() {
		switch m.num {
		case 4:
			if m.bool() {
				r.Scheme = "https"
			}
		case 7:
			r.Scheme = m.str("scheme_redirect")
		case 1:
			r.Host = m.str("host_redirect")
		case 8:
			r.Port = m.uint32()
			if r.Port > 65535 {
				m.fail(errorf("port %d out of range", r.Port), "port_redirect")
			}
		case 2:
			r.Path, r.PrefixRewrite, r.RegexRewrite, r.RegexSubstitution = m.str("path_redirect"), "", nil, ""
		case 5:
			r.Path, r.PrefixRewrite, r.RegexRewrite, r.RegexSubstitution = "", m.str("prefix_rewrite"), nil, ""
		case 9:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			re, sub, err := decodeRegexRewrite(rb)
			m.fail(err, "regex_rewrite")
			r.Path, r.PrefixRewrite, r.RegexRewrite, r.RegexSubstitution = "", "", re, sub
		case 10:
			m.fail(errNotSupported, "path_rewrite")
		case 3:
			c := m.enum()
			if c < 0 || int(c) >= len(redirectCodes) {
				m.fail(errorf("unknown response code %d", c), "response_code")
				break
			}
			r.Code = redirectCodes[c]
		case 6:
			if m.bool() {
				m.fail(errNotSupported, "strip_query")
			}
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	return r, nil
}

func decodeDirectResponse(b []byte) (*DirectResponse, error) {
	d := &DirectResponse{}
	m := msg{b: b, varints: 1 << 1}
	for m.next() {
		switch m.num {
		case 1:
			d.Status = int(m.uint32())
		case 2:
			bb, ok := m.bytes()
			if !ok {
				break
			}
			var err error
			d.Body, err = decodeDataSource(bb)
			m.fail(err, "body")
		case 3:
			m.fail(errNotSupported, "body_format")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if d.Status < 100 || d.Status > 599 {
		return nil, within(errorf("%d is not an HTTP status", d.Status), "status")
	}
	return d, nil
}

// decodeDataSource reads an inline body; files and environment variables
// would be read on the proxy's host, which the control plane cannot see.
func decodeDataSource(b []byte) ([]byte, error) {
	var body []byte
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 2, 3:
			v, ok := m.bytes()
			if ok {
				body = append([]byte(nil), v...)
			}
		case 1:
			m.fail(errNotSupported, "filename")
		case 4:
			m.fail(errNotSupported, "environment_variable")
		case 5:
			m.fail(errNotSupported, "watched_directory")
		}
	}
	return body, m.err
}

// Envoy's HeaderValueOption.HeaderAppendAction.
const (
	appendIfExistsOrAdd    = 0
	overwriteIfExistsOrAdd = 2
)

// headerOption decodes element i of a repeated HeaderValueOption field.
func (m *msg) headerOption(seg string, i int) HeaderValueOption {
	b, ok := m.bytes()
	if !ok {
		return HeaderValueOption{}
	}
	h, err := decodeHeaderValueOption(b)
	m.failIndex(err, seg, i)
	return h
}

func decodeHeaderValueOption(b []byte) (HeaderValueOption, error) {
	var h HeaderValueOption
	m := msg{b: b, varints: 1 << 3}
	action := int32(appendIfExistsOrAdd)
	for m.next() {
		switch m.num {
		case 1:
			hb, ok := m.bytes()
			if !ok {
				break
			}
			v := msg{b: hb}
			for v.next() {
				switch v.num {
				case 1:
					h.Name = v.str("key")
				case 2:
					h.Value = v.str("value")
				case 3:
					if raw, ok := v.bytes(); ok {
						h.Value = string(raw) // bytes, not UTF-8 checked: that is why raw_value exists
					}
				}
			}
			m.fail(v.err, "header")
		case 2:
			// The deprecated append flag: true appends, false overwrites.
			if m.wrappedBool("append") {
				action = appendIfExistsOrAdd
			} else {
				action = overwriteIfExistsOrAdd
			}
		case 3:
			action = m.enum()
			if action != appendIfExistsOrAdd && action != overwriteIfExistsOrAdd {
				m.fail(errorf("append action %d is not supported by trellis-proxy", action), "append_action")
			}
		}
	}
	if m.err != nil {
		return h, m.err
	}
	if h.Name == "" {
		return h, within(within(errRequired, "key"), "header")
	}
	h.Append = action == appendIfExistsOrAdd
	return h, nil
}
