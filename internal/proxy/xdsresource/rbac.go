package xdsresource

import (
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Type names of Envoy's RBAC filters, as Istio configures them for
// AuthorizationPolicy.
const (
	httpRBACType    = "envoy.extensions.filters.http.rbac.v3.RBAC"
	networkRBACType = "envoy.extensions.filters.network.rbac.v3.RBAC"
)

// RBACAction is what a matching policy does, as Envoy's RBAC.Action.
type RBACAction int

// RBAC actions.
const (
	// RBACAllow lets a request through only when some policy matches.
	RBACAllow RBACAction = iota
	// RBACDeny refuses a request some policy matches.
	RBACDeny
	// RBACLog lets every request through and logs the ones a policy
	// matches (Istio's AUDIT).
	RBACLog
)

// RBAC is one RBAC filter: an HTTP filter of an inbound connection
// manager, or a network filter ahead of a TCP proxy. Filters apply in
// order; the first that refuses decides.
type RBAC struct {
	Name   string // the filter's name, for logs
	Action RBACAction
	// Policies are sorted by name (Envoy keeps them in a map; which one
	// matched only names the decision).
	Policies []RBACPolicy
	// ShadowOnly marks a filter without rules: it decides nothing, and
	// only its shadow rules are evaluated.
	ShadowOnly bool
	// Shadow are the shadow rules' policies (a dry run that decides
	// nothing); the name of the first that matches is what ext_authz's
	// EnabledBy looks at, under ShadowStatPrefix (Istio: CUSTOM rules).
	Shadow           []RBACPolicy
	ShadowStatPrefix string
}

// RBACPolicy matches a request when one of its permissions (what is
// asked) and one of its principals (who asks) match.
type RBACPolicy struct {
	Name        string
	Permissions []Permission
	Principals  []Principal
}

// PermissionKind says which field of a Permission applies.
type PermissionKind int

// Permission kinds, as Envoy's Permission rule oneof.
const (
	PermAny PermissionKind = iota
	PermAnd
	PermOr
	PermNot // Rules[0] inverted
	PermHeader
	PermURLPath // the path without query, as Envoy's url_path
	// PermURITemplate matches the path without query against
	// PathTemplate (Envoy's uri_template: {*} one segment, {**} the rest).
	PermURITemplate
	PermDestinationIP
	PermDestinationPort      // Port
	PermDestinationPortRange // [Port, PortEnd)
	PermMetadata
	// PermRequestedServerName matches Path against the server name (SNI)
	// of the downstream TLS connection, "" on plaintext.
	PermRequestedServerName
)

// Permission is one of Envoy's RBAC permission rules.
type Permission struct {
	Kind     PermissionKind
	Rules    []Permission
	Header   HeaderMatcher
	Path     StringMatcher
	IP       netip.Prefix
	Port     uint32
	PortEnd  uint32
	Metadata MetadataMatcher
	// PathTemplate is a URI template (PermURITemplate), checked by the
	// decoder; PathRegex is what it matches, anchored.
	PathTemplate string
	PathRegex    *regexp.Regexp
}

// PrincipalKind says which field of a Principal applies.
type PrincipalKind int

// Principal kinds, as Envoy's Principal identifier oneof.
const (
	PrinAny PrincipalKind = iota
	PrinAnd
	PrinOr
	PrinNot // IDs[0] inverted
	// PrinAuthenticated matches a peer that presented a verified
	// certificate, by its SPIFFE ID when Name is set.
	PrinAuthenticated
	PrinDirectRemoteIP // the connection's source address
	PrinRemoteIP       // the original client, from X-Forwarded-For
	PrinHeader
	PrinURLPath
	PrinMetadata
)

// Principal is one of Envoy's RBAC principal identifiers.
type Principal struct {
	Kind     PrincipalKind
	IDs      []Principal
	Name     *StringMatcher // PrinAuthenticated: nil matches any verified peer
	IP       netip.Prefix
	Header   HeaderMatcher
	Path     StringMatcher
	Metadata MetadataMatcher
}

// MetadataMatcher matches dynamic metadata a filter set. Only Istio's
// request authentication namespace (istio_authn) is accepted: what the
// request's verified JWTs say (request.auth.principal, .audiences,
// .presenter, .claims with the claim's path), read from the request
// authentication step's result. A path without a value (no token) never
// matches, as in Envoy; Invert turns that around.
type MetadataMatcher struct {
	Filter string
	Path   []string
	Value  ValueMatcher
	Invert bool
}

// ValueKind says how a ValueMatcher compares.
type ValueKind int

// Value matcher kinds, of Envoy's ValueMatcher, as they apply to a list
// of strings (Istio keeps every request authentication value as one).
const (
	ValueString  ValueKind = iota // some element matches String
	ValuePresent                  // the path has a value
	ValueListOne                  // list_match one_of: some element matches OneOf
	ValueOr                       // one of Or matches
)

// ValueMatcher is the part of Envoy's ValueMatcher Istio writes.
type ValueMatcher struct {
	Kind   ValueKind
	String StringMatcher
	OneOf  *ValueMatcher
	Or     []ValueMatcher
}

// decodeHTTPRBAC reads envoy.extensions.filters.http.rbac.v3.RBAC.
func decodeHTTPRBAC(name string, b []byte) (*RBAC, error) {
	m := msg{b: b, varints: 1 << 7}
	var r, shadow *RBAC
	var shadowPrefix string
	for m.next() {
		switch m.num {
		case 1:
			if rb, ok := m.bytes(); ok {
				var err error
				r, err = decodeRBACRules(rb)
				m.fail(err, "rules")
			}
		case 2:
			if rb, ok := m.bytes(); ok {
				var err error
				shadow, err = decodeRBACRules(rb)
				m.fail(err, "shadow_rules")
			}
		case 3:
			shadowPrefix = m.str("shadow_rules_stat_prefix")
		case 4:
			m.fail(errNotSupported, "matcher")
		case 5:
			m.fail(errNotSupported, "shadow_matcher")
		}
		// Stat prefixes (6) and per-rule stats (7) only name counters.
	}
	if m.err != nil {
		return nil, m.err
	}
	if r == nil && shadow == nil {
		// Envoy: without rules the filter enforces nothing.
		return nil, nil
	}
	if r == nil {
		r = &RBAC{ShadowOnly: true}
	}
	if shadow != nil {
		r.Shadow, r.ShadowStatPrefix = shadow.Policies, shadowPrefix
	}
	r.Name = name
	return r, nil
}

// decodeNetworkRBAC reads envoy.extensions.filters.network.rbac.v3.RBAC.
func decodeNetworkRBAC(name string, b []byte) (*RBAC, error) {
	m := msg{b: b, varints: 1 << 4}
	var r *RBAC
	for m.next() {
		switch m.num {
		case 1:
			if rb, ok := m.bytes(); ok {
				var err error
				r, err = decodeRBACRules(rb)
				m.fail(err, "rules")
			}
		case 4:
			// CONTINUOUS re-checks on every read; the proxy decides once,
			// at accept.
			if m.enum() != 0 {
				m.fail(errorf("only ONE_TIME_ON_FIRST_BYTE is supported by trellis-proxy"), "enforcement_type")
			}
		case 6:
			m.fail(errNotSupported, "matcher")
		case 8:
			m.fail(errNotSupported, "delay_deny")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if r == nil {
		return nil, nil
	}
	r.Name = name
	return r, nil
}

// decodeRBACRules reads envoy.config.rbac.v3.RBAC.
func decodeRBACRules(b []byte) (*RBAC, error) {
	r := &RBAC{}
	m := msg{b: b, varints: 1 << 1}
	for m.next() {
		switch m.num {
		case 1:
			a := m.enum()
			if a < int32(RBACAllow) || a > int32(RBACLog) {
				m.fail(errorf("unknown action %d", a), "action")
			}
			r.Action = RBACAction(a)
		case 2:
			eb, ok := m.bytes()
			if !ok {
				break
			}
			p, err := decodePolicyEntry(eb)
			if err != nil {
				m.fail(err, "policies["+strconv.Quote(p.Name)+"]")
				break
			}
			r.Policies = append(r.Policies, p)
		case 3:
			m.fail(errNotSupported, "audit_logging_options")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	sort.SliceStable(r.Policies, func(i, j int) bool { return r.Policies[i].Name < r.Policies[j].Name })
	return r, nil
}

// decodePolicyEntry reads one map<string, Policy> entry.
func decodePolicyEntry(b []byte) (RBACPolicy, error) {
	var p RBACPolicy
	m := msg{b: b}
	var value []byte
	for m.next() {
		switch m.num {
		case 1:
			p.Name = m.str("key")
		case 2:
			value, _ = m.bytes()
		}
	}
	if m.err != nil {
		return p, m.err
	}
	m = msg{b: value}
	perms, prins := 0, 0
	for m.next() {
		switch m.num {
		case 1:
			if pb, ok := m.bytes(); ok {
				perm, err := decodePermission(pb, 0)
				m.failIndex(err, "permissions", perms)
				p.Permissions = append(p.Permissions, perm)
				perms++
			}
		case 2:
			if pb, ok := m.bytes(); ok {
				prin, err := decodePrincipal(pb, 0)
				m.failIndex(err, "principals", prins)
				p.Principals = append(p.Principals, prin)
				prins++
			}
		case 3:
			m.fail(errNotSupported, "condition")
		case 4:
			m.fail(errNotSupported, "checked_condition")
		case 5:
			m.fail(errNotSupported, "cel_config")
		}
	}
	if m.err != nil {
		return p, m.err
	}
	// Envoy's validation: a policy needs both lists.
	if perms == 0 {
		return p, within(errRequired, "permissions")
	}
	if prins == 0 {
		return p, within(errRequired, "principals")
	}
	return p, nil
}

// maxRBACDepth bounds nesting, so a hostile config cannot exhaust the
// stack of the decoder or of the evaluator.
const maxRBACDepth = 32

func decodePermission(b []byte, depth int) (Permission, error) {
	var p Permission
	if depth > maxRBACDepth {
		return p, errorf("nested more than %d deep", maxRBACDepth)
	}
	m := msg{b: b, varints: 1<<3 | 1<<6}
	set := false
	one := func(k PermissionKind) {
		if set {
			m.fail(errorf("sets more than one rule"), "rule")
		}
		p = Permission{Kind: k}
		set = true
	}
	for m.next() {
		switch m.num {
		case 1, 2:
			sb, ok := m.bytes()
			if !ok {
				break
			}
			k, seg := PermAnd, "and_rules"
			if m.num == 2 {
				k, seg = PermOr, "or_rules"
			}
			one(k)
			rules, err := decodeRBACSet(sb, "rules", depth, decodePermission)
			m.fail(err, seg)
			p.Rules = rules
		case 3:
			if !m.bool() {
				m.fail(errorf("must be true"), "any")
			}
			one(PermAny)
		case 4:
			hb, _ := m.bytes()
			one(PermHeader)
			h, err := decodeHeaderMatcher(hb)
			m.fail(err, "header")
			p.Header = h
		case 10:
			pb, _ := m.bytes()
			one(PermURLPath)
			s, err := decodePathMatcher(pb)
			m.fail(err, "url_path")
			p.Path = s
		case 5:
			cb, _ := m.bytes()
			one(PermDestinationIP)
			c, err := decodeCIDR(cb)
			m.fail(err, "destination_ip")
			p.IP = c
		case 6:
			one(PermDestinationPort)
			p.Port = m.uint32()
		case 11:
			rb, _ := m.bytes()
			one(PermDestinationPortRange)
			lo, hi, err := decodeInt32Range(rb)
			m.fail(err, "destination_port_range")
			p.Port, p.PortEnd = lo, hi
		case 7:
			mb, _ := m.bytes()
			one(PermMetadata)
			md, err := decodeMetadataMatcher(mb)
			m.fail(err, "metadata")
			p.Metadata = md
		case 8:
			nb, _ := m.bytes()
			one(PermNot)
			r, err := decodePermission(nb, depth+1)
			m.fail(err, "not_rule")
			p.Rules = []Permission{r}
		case 9:
			sb, _ := m.bytes()
			one(PermRequestedServerName)
			s, err := decodeStringMatcher(sb)
			m.fail(err, "requested_server_name")
			p.Path = s
		case 12:
			m.fail(errNotSupported, "matcher")
		case 13:
			tb, _ := m.bytes()
			one(PermURITemplate)
			tmpl, re, err := decodeURITemplate(tb)
			m.fail(err, "uri_template")
			p.PathTemplate, p.PathRegex = tmpl, re
		case 14:
			m.fail(errNotSupported, "sourced_metadata")
		}
	}
	if m.err != nil {
		return p, m.err
	}
	if !set {
		return p, errorf("needs a rule (any, and_rules, or_rules, header, url_path, destination_ip, destination_port, ...)")
	}
	return p, nil
}

func decodePrincipal(b []byte, depth int) (Principal, error) {
	var p Principal
	if depth > maxRBACDepth {
		return p, errorf("nested more than %d deep", maxRBACDepth)
	}
	m := msg{b: b, varints: 1 << 3}
	set := false
	one := func(k PrincipalKind) {
		if set {
			m.fail(errorf("sets more than one identifier"), "identifier")
		}
		p = Principal{Kind: k}
		set = true
	}
	for m.next() {
		switch m.num {
		case 1, 2:
			sb, ok := m.bytes()
			if !ok {
				break
			}
			k, seg := PrinAnd, "and_ids"
			if m.num == 2 {
				k, seg = PrinOr, "or_ids"
			}
			one(k)
			ids, err := decodeRBACSet(sb, "ids", depth, decodePrincipal)
			m.fail(err, seg)
			p.IDs = ids
		case 3:
			if !m.bool() {
				m.fail(errorf("must be true"), "any")
			}
			one(PrinAny)
		case 4:
			ab, _ := m.bytes()
			one(PrinAuthenticated)
			am := msg{b: ab}
			for am.next() {
				if am.num == 2 {
					sb, _ := am.bytes()
					s, err := decodeStringMatcher(sb)
					am.fail(err, "principal_name")
					p.Name = &s
				}
			}
			m.fail(am.err, "authenticated")
		case 5, 10, 11:
			cb, _ := m.bytes()
			k, seg := PrinDirectRemoteIP, "direct_remote_ip"
			switch m.num {
			case 5:
				// source_ip (deprecated) is the connection's address
				// without PROXY protocol, which the proxy does not take.
				seg = "source_ip"
			case 11:
				k, seg = PrinRemoteIP, "remote_ip"
			}
			one(k)
			c, err := decodeCIDR(cb)
			m.fail(err, seg)
			p.IP = c
		case 6:
			hb, _ := m.bytes()
			one(PrinHeader)
			h, err := decodeHeaderMatcher(hb)
			m.fail(err, "header")
			p.Header = h
		case 9:
			pb, _ := m.bytes()
			one(PrinURLPath)
			s, err := decodePathMatcher(pb)
			m.fail(err, "url_path")
			p.Path = s
		case 7:
			mb, _ := m.bytes()
			one(PrinMetadata)
			md, err := decodeMetadataMatcher(mb)
			m.fail(err, "metadata")
			p.Metadata = md
		case 8:
			nb, _ := m.bytes()
			one(PrinNot)
			id, err := decodePrincipal(nb, depth+1)
			m.fail(err, "not_id")
			p.IDs = []Principal{id}
		case 12:
			m.fail(errNotSupported, "filter_state")
		case 13:
			m.fail(errNotSupported, "sourced_metadata")
		case 14:
			m.fail(errNotSupported, "custom")
		}
	}
	if m.err != nil {
		return p, m.err
	}
	if !set {
		return p, errorf("needs an identifier (any, and_ids, or_ids, authenticated, direct_remote_ip, ...)")
	}
	return p, nil
}

// decodePathMatcher reads a type.matcher.v3.PathMatcher (its path).
func decodePathMatcher(b []byte) (StringMatcher, error) {
	m := msg{b: b}
	var s StringMatcher
	has := false
	for m.next() {
		if m.num == 1 {
			sb, _ := m.bytes()
			var err error
			s, err = decodeStringMatcher(sb)
			m.fail(err, "path")
			has = true
		}
	}
	if m.err != nil {
		return s, m.err
	}
	if !has {
		return s, within(errRequired, "path")
	}
	return s, nil
}

// decodeInt32Range reads a type.v3.Int32Range: [start, end).
func decodeInt32Range(b []byte) (uint32, uint32, error) {
	m := msg{b: b, varints: 1<<1 | 1<<2}
	var lo, hi int64
	for m.next() {
		switch m.num {
		case 1:
			lo = int64(int32(m.varint()))
		case 2:
			hi = int64(int32(m.varint()))
		}
	}
	if m.err != nil {
		return 0, 0, m.err
	}
	if lo < 0 || hi > 65536 || lo > hi {
		return 0, 0, errorf("[%d, %d) is not a range of ports", lo, hi)
	}
	return uint32(lo), uint32(hi), nil
}

// decodeRBACSet reads a Permission.Set or Principal.Set: its repeated
// field 1 (named seg), each element decoded one level deeper, at least
// one required.
func decodeRBACSet[T any](b []byte, seg string, depth int, decode func([]byte, int) (T, error)) ([]T, error) {
	var out []T
	m := msg{b: b}
	for m.next() {
		if m.num == 1 {
			eb, _ := m.bytes()
			e, err := decode(eb, depth+1)
			m.failIndex(err, seg, len(out))
			out = append(out, e)
		}
	}
	if m.err != nil {
		return out, m.err
	}
	if len(out) == 0 {
		return nil, within(errRequired, seg)
	}
	return out, nil
}

// istioAuthn is the dynamic metadata namespace Istio's JWT authentication
// writes request principals and claims to.
const istioAuthn = "istio_authn"

func decodeMetadataMatcher(b []byte) (MetadataMatcher, error) {
	var md MetadataMatcher
	m := msg{b: b, varints: 1 << 4}
	hasValue := false
	for m.next() {
		switch m.num {
		case 1:
			md.Filter = m.str("filter")
		case 2:
			sb, _ := m.bytes()
			sm := msg{b: sb}
			for sm.next() {
				if sm.num == 1 {
					md.Path = append(md.Path, sm.str("key"))
				}
			}
			m.fail(sm.err, "path")
		case 3:
			vb, _ := m.bytes()
			v, err := decodeValueMatcher(vb, 0)
			m.fail(err, "value")
			md.Value = v
			hasValue = true
		case 4:
			md.Invert = m.bool()
		}
	}
	if m.err != nil {
		return md, m.err
	}
	if !hasValue {
		return md, within(errRequired, "value")
	}
	if md.Filter != istioAuthn {
		return md, within(errorf("%q: only %s (request authentication, which the proxy never sets: no request carries a validated token) is supported by trellis-proxy", md.Filter, istioAuthn), "filter")
	}
	return md, nil
}

// addHTTPRBAC decodes an RBAC HTTP filter into h. One after the router
// would never run in Envoy; the proxy refuses it rather than enforce
// what Envoy would not, or drop what the control plane meant to enforce.
// addExtAuthz decodes an ext_authz HTTP filter into h. The proxy checks
// with the authorizer before it applies the RBAC filters (CUSTOM before
// DENY and ALLOW, as Istio orders them), so an ext_authz after an
// enforcing RBAC filter, or a second one, is refused.
func addExtAuthz(h *HTTPConnectionManager, name string, value []byte, afterRouter bool) error {
	switch {
	case afterRouter:
		return errorf("ext_authz filter %q follows the router, where it would never run: put it before the router", name)
	case h.ExtAuthz != nil:
		return errorf("ext_authz filter %q: a second ext_authz filter is not supported by trellis-proxy", name)
	}
	for _, r := range h.RBAC {
		if !r.ShadowOnly {
			return errorf("ext_authz filter %q follows the enforcing RBAC filter %q: trellis-proxy checks with the authorizer first (CUSTOM before DENY and ALLOW)", name, r.Name)
		}
	}
	e, err := decodeExtAuthz(value)
	if err != nil {
		return within(err, "typed_config")
	}
	h.ExtAuthz = e
	return nil
}

func addHTTPRBAC(h *HTTPConnectionManager, name string, value []byte, afterRouter bool) error {
	if afterRouter {
		return errorf("RBAC filter %q follows the router, where it would never run: put it before the router", name)
	}
	r, err := decodeHTTPRBAC(name, value)
	if err != nil {
		return within(err, "typed_config")
	}
	if r != nil {
		h.RBAC = append(h.RBAC, r)
	}
	return nil
}

// checkChainRBAC refuses network RBAC in front of an HTTP connection
// manager: the proxy enforces network RBAC on TCP chains only (the
// control plane puts HTTP RBAC inside the connection manager there).
func checkChainRBAC(fc *FilterChain) error {
	if fc.HTTP != nil && len(fc.RBAC) > 0 {
		return within(errorf("network RBAC filter %q ahead of an http_connection_manager is not supported by trellis-proxy: use the RBAC HTTP filter", fc.RBAC[0].Name), "filters")
	}
	return nil
}

// decodeValueMatcher reads the type.matcher.v3.ValueMatcher forms Istio
// writes for request authentication (string, present, list one_of, or);
// null, double and bool matchers compare values the proxy never has, and
// are refused.
func decodeValueMatcher(b []byte, depth int) (ValueMatcher, error) {
	var v ValueMatcher
	if depth > maxRBACDepth {
		return v, errorf("nested more than %d deep", maxRBACDepth)
	}
	m := msg{b: b, varints: 1<<4 | 1<<5}
	set := false
	for m.next() {
		switch m.num {
		case 3:
			sb, _ := m.bytes()
			s, err := decodeStringMatcher(sb)
			m.fail(err, "string_match")
			v, set = ValueMatcher{Kind: ValueString, String: s}, true
		case 5:
			if !m.bool() {
				m.fail(errorf("only present_match: true is supported"), "present_match")
			}
			v, set = ValueMatcher{Kind: ValuePresent}, true
		case 6:
			lb, _ := m.bytes()
			lm := msg{b: lb}
			var one *ValueMatcher
			for lm.next() {
				if lm.num == 1 {
					ob, _ := lm.bytes()
					o, err := decodeValueMatcher(ob, depth+1)
					lm.fail(err, "one_of")
					one = &o
				}
			}
			m.fail(lm.err, "list_match")
			if m.err == nil && one == nil {
				m.fail(within(errRequired, "one_of"), "list_match")
			}
			v, set = ValueMatcher{Kind: ValueListOne, OneOf: one}, true
		case 7:
			ob, _ := m.bytes()
			om := msg{b: ob}
			var or []ValueMatcher
			for om.next() {
				if om.num == 1 {
					eb, _ := om.bytes()
					e, err := decodeValueMatcher(eb, depth+1)
					om.failIndex(err, "value_matchers", len(or))
					or = append(or, e)
				}
			}
			m.fail(om.err, "or_match")
			if m.err == nil && len(or) < 2 {
				m.fail(errorf("needs at least two value_matchers"), "or_match")
			}
			v, set = ValueMatcher{Kind: ValueOr, Or: or}, true
		case 1:
			m.fail(errNotSupported, "null_match")
		case 2:
			m.fail(errNotSupported, "double_match")
		case 4:
			m.fail(errNotSupported, "bool_match")
		}
	}
	if m.err != nil {
		return v, m.err
	}
	if !set {
		return v, errorf("needs a match (string_match, present_match, list_match or or_match)")
	}
	return v, nil
}

const uriTemplateType = "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"

// decodeURITemplate reads a core.v3.TypedExtensionConfig holding Envoy's
// UriTemplateMatchConfig and compiles its path template: literal segments
// match themselves, {*} one non-empty segment, {**} (last) everything
// after it; other variable forms are refused.
func decodeURITemplate(b []byte) (string, *regexp.Regexp, error) {
	m := msg{b: b}
	var typeName string
	var value []byte
	for m.next() {
		if m.num == 2 {
			ab, _ := m.bytes()
			var err error
			typeName, value, err = anyValue(ab)
			m.fail(err, "typed_config")
		}
	}
	if m.err != nil {
		return "", nil, m.err
	}
	if typeName != uriTemplateType {
		return "", nil, within(errorf("unsupported type %s", typeName), "typed_config")
	}
	vm := msg{b: value}
	var tmpl string
	for vm.next() {
		if vm.num == 1 {
			tmpl = vm.str("path_template")
		}
	}
	if vm.err != nil {
		return "", nil, within(vm.err, "typed_config")
	}
	if !strings.HasPrefix(tmpl, "/") {
		return "", nil, within(errorf("path template %q must start with /", tmpl), "typed_config.path_template")
	}
	var sb strings.Builder
	sb.WriteString("^")
	segs := strings.Split(tmpl[1:], "/")
	for i, seg := range segs {
		sb.WriteString("/")
		switch {
		case seg == "{*}":
			sb.WriteString("[^/]+")
		case seg == "{**}":
			if i != len(segs)-1 {
				return "", nil, within(errorf("path template %q: {**} must be the last segment", tmpl), "typed_config.path_template")
			}
			sb.WriteString(".*")
		case strings.ContainsAny(seg, "{}*"):
			return "", nil, within(errorf("path template %q: segment %q is not supported by trellis-proxy (a literal, {*} or {**})", tmpl, seg), "typed_config.path_template")
		default:
			sb.WriteString(regexp.QuoteMeta(seg))
		}
	}
	sb.WriteString("$")
	re, err := regexp.Compile(sb.String())
	if err != nil {
		return "", nil, within(errorf("path template %q: %v", tmpl, err), "typed_config.path_template")
	}
	return tmpl, re, nil
}
