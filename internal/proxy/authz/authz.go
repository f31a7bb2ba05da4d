// Package authz decides whether a request or connection may reach the
// workload, from the RBAC filters the control plane compiles each
// AuthorizationPolicy into (Envoy's RBAC, as Istio generates it; see
// xdsresource/rbac.go for what is decoded).
//
// An Engine holds one inbound filter chain's filters, compiled once per
// config update so that a decision costs a few map lookups and string
// comparisons and allocates nothing: OR-lists of exact principals, paths
// or methods become sets, and Istio's namespace pattern (".*/ns/NS/.*")
// becomes a substring test instead of a regular expression.
//
// The filters apply in order, as Envoy chains them: a LOG (Istio AUDIT)
// filter marks the request when a policy matches; a DENY filter refuses
// it when one matches; an ALLOW filter refuses it when none does (so an
// ALLOW filter without policies refuses everything, which is how Istio
// expresses `spec: {}`).
package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/strmatch"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Headers gives the engine a request's headers; http.Header satisfies it
// without allocating (names are passed in canonical MIME form).
type Headers interface {
	Values(name string) []string
}

// Request is what a decision looks at. The caller fills it from what it
// already holds; the engine never keeps it.
type Request struct {
	// HTTP is false for a TCP connection, which has no method, path,
	// authority or headers.
	HTTP      bool
	Method    string
	Authority string
	// Path is the request target as received (":path"), query included;
	// url_path rules see it without the query.
	Path   string
	Header Headers
	// Source is the connection's peer (Envoy's direct remote address).
	Source netip.AddrPort
	// Remote is the original client as X-Forwarded-For names it (Envoy's
	// remote address); invalid means Source.
	Remote netip.Addr
	// Dst is the connection's destination: the workload's address and
	// target port.
	Dst netip.AddrPort
	// PeerID is the SPIFFE ID the peer's verified certificate carries
	// (spiffe://td/ns/NS/sa/SA), "" on plaintext: authenticated
	// principals never match then.
	PeerID string
	// SNI is the server name the downstream's TLS handshake asked for
	// (the tunnel's or the captured connection's), "" on plaintext.
	SNI string
	// JWT is what request authentication verified (nil: no token), for
	// requestPrincipals and request.auth conditions.
	JWT *jwtauthn.Result
}

// Result is a decision.
type Result struct {
	Allowed bool
	// Filter and Policy name what refused the request: the DENY policy
	// that matched, or the ALLOW filter none of whose policies did
	// (Policy "").
	Filter string
	Policy string
	// Audit names the first AUDIT (LOG) policy that matched, "" if none.
	Audit string
}

// Engine is one filter chain's compiled authorization. A nil Engine
// allows everything. It is immutable and safe for concurrent use.
type Engine struct {
	filters []filter
	ext     *External
}

type filter struct {
	name     string
	action   xdsresource.RBACAction
	policies []policy
	// shadowOnly filters decide nothing; shadow (with its stat prefix)
	// names the request's shadow effective policy, for ext_authz.
	shadowOnly   bool
	shadow       []policy
	shadowPrefix string
}

type policy struct {
	name  string
	perms []node
	prins []node
}

// Compile builds the engine for filters in order; nil when there are none.
func Compile(filters []*xdsresource.RBAC) (*Engine, error) {
	return CompileHTTP(filters, nil)
}

// CompileHTTP is Compile for a connection manager, with its ext_authz
// filter (nil if none), which is asked before the RBAC filters decide.
func CompileHTTP(filters []*xdsresource.RBAC, ext *xdsresource.ExtAuthz) (*Engine, error) {
	if len(filters) == 0 && ext == nil {
		return nil, nil
	}
	e := &Engine{}
	for i, f := range filters {
		cf := filter{name: f.Name, action: f.Action, shadowOnly: f.ShadowOnly, shadowPrefix: f.ShadowStatPrefix}
		var err error
		if cf.policies, err = compilePolicies(f.Policies); err != nil {
			return nil, fmt.Errorf("RBAC filter %d (%s): %w", i, f.Name, err)
		}
		if cf.shadow, err = compilePolicies(f.Shadow); err != nil {
			return nil, fmt.Errorf("RBAC filter %d (%s): shadow_rules: %w", i, f.Name, err)
		}
		e.filters = append(e.filters, cf)
	}
	if ext != nil {
		x, err := compileExternal(ext)
		if err != nil {
			return nil, fmt.Errorf("ext_authz: %w", err)
		}
		e.ext = x
	}
	return e, nil
}

func compilePolicies(ps []xdsresource.RBACPolicy) ([]policy, error) {
	var out []policy
	for _, p := range ps {
		cp := policy{name: p.Name}
		for j := range p.Permissions {
			n, err := compilePermission(&p.Permissions[j])
			if err != nil {
				return nil, fmt.Errorf("policy %q: permissions[%d]: %w", p.Name, j, err)
			}
			cp.perms = append(cp.perms, n)
		}
		for j := range p.Principals {
			n, err := compilePrincipal(&p.Principals[j])
			if err != nil {
				return nil, fmt.Errorf("policy %q: principals[%d]: %w", p.Name, j, err)
			}
			cp.prins = append(cp.prins, n)
		}
		out = append(out, cp)
	}
	return out, nil
}

// Check decides r.
func (e *Engine) Check(r *Request) Result {
	res := Result{Allowed: true}
	if e == nil {
		return res
	}
	for i := range e.filters {
		f := &e.filters[i]
		if f.shadowOnly {
			continue
		}
		name, matched := matchPolicies(f.policies, r)
		switch f.action {
		case xdsresource.RBACLog:
			if matched && res.Audit == "" {
				res.Audit = name
			}
		case xdsresource.RBACDeny:
			if matched {
				return Result{Filter: f.name, Policy: name, Audit: res.Audit}
			}
		default:
			if !matched {
				return Result{Filter: f.name, Audit: res.Audit}
			}
		}
	}
	return res
}

// Empty reports whether the engine enforces nothing.
func (e *Engine) Empty() bool { return e == nil || (len(e.filters) == 0 && e.ext == nil) }

// External is the authorizer to ask about r before Check (CUSTOM comes
// first), or nil when there is none or r is not one the CUSTOM rules
// select (no shadow policy the ext_authz filter is enabled by matched).
func (e *Engine) External(r *Request) *External {
	if e == nil || e.ext == nil {
		return nil
	}
	x := e.ext
	if !x.gated {
		return x
	}
	for i := range e.filters {
		f := &e.filters[i]
		if f.shadowPrefix != x.prefix {
			continue
		}
		if name, ok := matchPolicies(f.shadow, r); ok && x.policy.Match(name) {
			return x
		}
	}
	return nil
}

func matchPolicies(policies []policy, r *Request) (string, bool) {
	for i := range policies {
		p := &policies[i]
		if anyMatch(p.perms, r) && anyMatch(p.prins, r) {
			return p.name, true
		}
	}
	return "", false
}

func anyMatch(ns []node, r *Request) bool {
	for i := range ns {
		if ns[i].match(r) {
			return true
		}
	}
	return false
}

type nodeKind uint8

const (
	nAny nodeKind = iota
	nNever
	nAnd
	nOr
	nNot
	nString        // attr's value against sm
	nSet           // attr's value in set
	nHeaderPresent // header attr present (invert: absent)
	nDstIP
	nDstPort
	nDstPortRange
	nDirectIP
	nRemoteIP
	nAuthenticated // a verified peer, any identity
	nAuthn         // request authentication's metadata (md)
)

// attr is the value a string node reads.
type attr uint8

const (
	aPeer    attr = iota // the peer's SPIFFE ID; absent on plaintext
	aURLPath             // path without query
	aMethod
	aAuthority
	aPath // :path, with query
	aScheme
	aPseudoUnknown // a pseudo-header the proxy does not have: absent
	aHeader
	aSNI // the downstream TLS server name; "" (present) on plaintext
)

type node struct {
	kind   nodeKind
	attr   attr
	header string // canonical MIME name (aHeader)
	kids   []node
	sm     strmatch.Matcher
	set    map[string]struct{}
	fold   bool // set holds lower-cased values; fold the value to look up
	// invert and missingEmpty are a header matcher's.
	invert       bool
	missingEmpty bool
	prefix       netip.Prefix
	lo, hi       uint32
	md           *metadataMatcher
}

func (n *node) match(r *Request) bool {
	switch n.kind {
	case nAny:
		return true
	case nNever:
		return false
	case nAnd:
		for i := range n.kids {
			if !n.kids[i].match(r) {
				return false
			}
		}
		return true
	case nOr:
		return anyMatch(n.kids, r)
	case nNot:
		return !n.kids[0].match(r)
	case nString, nSet, nHeaderPresent:
		v, ok := n.value(r)
		if !ok {
			if n.attr == aHeader || n.isPseudo() {
				if n.missingEmpty && n.kind != nHeaderPresent {
					return n.matchValue("") != n.invert
				}
				// Envoy: a missing header matches only an inverted matcher.
				return n.invert
			}
			return false
		}
		if n.kind == nHeaderPresent {
			return !n.invert
		}
		return n.matchValue(v) != n.invert
	case nAuthenticated:
		return r.PeerID != ""
	case nAuthn:
		return n.md.matches(r.JWT) != n.invert
	case nDstIP:
		return r.Dst.IsValid() && n.prefix.Contains(r.Dst.Addr().Unmap())
	case nDstPort:
		return uint32(r.Dst.Port()) == n.lo
	case nDstPortRange:
		p := uint32(r.Dst.Port())
		return n.lo <= p && p < n.hi
	case nDirectIP:
		return r.Source.IsValid() && n.prefix.Contains(r.Source.Addr().Unmap())
	case nRemoteIP:
		a := r.Remote
		if !a.IsValid() {
			if !r.Source.IsValid() {
				return false
			}
			a = r.Source.Addr()
		}
		return n.prefix.Contains(a.Unmap())
	}
	return false
}

func (n *node) isPseudo() bool { return n.attr >= aMethod && n.attr <= aPseudoUnknown }

func (n *node) matchValue(v string) bool {
	if n.kind == nSet {
		return inSet(n.set, v, n.fold)
	}
	return n.sm.Match(v)
}

// foldBuf bounds the value lower-cased on the stack for a set lookup.
const foldBuf = 512

func inSet(set map[string]struct{}, v string, fold bool) bool {
	if !fold {
		_, ok := set[v]
		return ok
	}
	var buf [foldBuf]byte
	_, ok := set[string(strmatch.AppendLower(buf[:0], v))] // the compiler looks up the bytes without a copy
	return ok
}

// value reads n's attribute; false when the request has none.
func (n *node) value(r *Request) (string, bool) {
	switch n.attr {
	case aPeer:
		return r.PeerID, r.PeerID != ""
	case aSNI:
		// Envoy matches the connection's requested server name, empty
		// when there is none, so an exact "" or a not-rule can match it.
		return r.SNI, true
	}
	if !r.HTTP {
		return "", false
	}
	switch n.attr {
	case aURLPath:
		p := r.Path
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		return p, p != ""
	case aMethod:
		return r.Method, r.Method != ""
	case aAuthority:
		return r.Authority, r.Authority != ""
	case aPath:
		return r.Path, r.Path != ""
	case aScheme, aPseudoUnknown:
		// The inbound side does not carry :scheme to authorization;
		// Istio never asks for it.
		return "", false
	}
	if r.Header == nil {
		return "", false
	}
	vals := r.Header.Values(n.header)
	switch len(vals) {
	case 0:
		return "", false
	case 1:
		return vals[0], true
	}
	// Envoy matches repeated headers joined with ","; only this rare
	// case allocates.
	return strings.Join(vals, ","), true
}

// namespaceRE is the regex Istio writes for namespaces (and
// source.namespace): any SPIFFE ID with the path segments /ns/NS/.
var namespaceRE = regexp.MustCompile(`^\.\*/ns/([a-z0-9]([-a-z0-9]*[a-z0-9])?)/\.\*$`)

// compileString compiles Istio's two most common regexes without one:
// ".+" (any value) and a namespace's SPIFFE pattern.
func compileString(s xdsresource.StringMatcher) (strmatch.Matcher, error) {
	if s.Kind == xdsresource.StringRegex {
		switch m := namespaceRE.FindStringSubmatch(s.Value); {
		case s.Value == ".+":
			return strmatch.MatchNonEmpty(), nil
		case m != nil && !s.IgnoreCase:
			// Equivalent for values without a newline, which no URI
			// in a verified certificate has.
			return strmatch.MatchContains("/ns/" + m[1] + "/"), nil
		}
	}
	return strmatch.Compile(s)
}

func headerNode(h *xdsresource.HeaderMatcher) (node, error) {
	n := node{kind: nString, invert: h.Invert, missingEmpty: h.MissingAsEmpty}
	name := strings.ToLower(h.Name)
	switch name {
	case ":method":
		n.attr = aMethod
	case ":authority", "host":
		// Envoy keeps Host as :authority.
		n.attr = aAuthority
	case ":path":
		n.attr = aPath
	case ":scheme":
		n.attr = aScheme
	default:
		if strings.HasPrefix(name, ":") {
			n.attr = aPseudoUnknown
		} else {
			n.attr, n.header = aHeader, textproto.CanonicalMIMEHeaderKey(name)
		}
	}
	if h.Present {
		n.kind = nHeaderPresent
		return n, nil
	}
	sm, err := compileString(h.Match)
	if err != nil {
		return n, fmt.Errorf("header %s: %w", h.Name, err)
	}
	n.sm = sm
	return n, nil
}

func compilePermission(p *xdsresource.Permission) (node, error) {
	switch p.Kind {
	case xdsresource.PermAny:
		return node{kind: nAny}, nil
	case xdsresource.PermAnd, xdsresource.PermOr, xdsresource.PermNot:
		n := node{kind: nAnd}
		if p.Kind == xdsresource.PermOr {
			n.kind = nOr
		} else if p.Kind == xdsresource.PermNot {
			n.kind = nNot
		}
		for i := range p.Rules {
			k, err := compilePermission(&p.Rules[i])
			if err != nil {
				return n, err
			}
			n.kids = append(n.kids, k)
		}
		if n.kind == nNot && len(n.kids) != 1 {
			return n, errors.New("not_rule needs one rule")
		}
		return optimize(n), nil
	case xdsresource.PermHeader:
		return headerNode(&p.Header)
	case xdsresource.PermURLPath:
		sm, err := compileString(p.Path)
		if err != nil {
			return node{}, fmt.Errorf("url_path: %w", err)
		}
		return node{kind: nString, attr: aURLPath, sm: sm}, nil
	case xdsresource.PermURITemplate:
		if p.PathRegex == nil {
			return node{}, errors.New("uri_template without a compiled template")
		}
		return node{kind: nString, attr: aURLPath, sm: strmatch.MatchRegex(p.PathRegex)}, nil
	case xdsresource.PermDestinationIP:
		return node{kind: nDstIP, prefix: p.IP}, nil
	case xdsresource.PermDestinationPort:
		return node{kind: nDstPort, lo: p.Port}, nil
	case xdsresource.PermDestinationPortRange:
		return node{kind: nDstPortRange, lo: p.Port, hi: p.PortEnd}, nil
	case xdsresource.PermMetadata:
		return metadataNode(p.Metadata)
	case xdsresource.PermRequestedServerName:
		sm, err := compileString(p.Path)
		if err != nil {
			return node{}, fmt.Errorf("requested_server_name: %w", err)
		}
		return node{kind: nString, attr: aSNI, sm: sm}, nil
	}
	return node{}, fmt.Errorf("unknown permission kind %d", p.Kind)
}

func compilePrincipal(p *xdsresource.Principal) (node, error) {
	switch p.Kind {
	case xdsresource.PrinAny:
		return node{kind: nAny}, nil
	case xdsresource.PrinAnd, xdsresource.PrinOr, xdsresource.PrinNot:
		n := node{kind: nAnd}
		if p.Kind == xdsresource.PrinOr {
			n.kind = nOr
		} else if p.Kind == xdsresource.PrinNot {
			n.kind = nNot
		}
		for i := range p.IDs {
			k, err := compilePrincipal(&p.IDs[i])
			if err != nil {
				return n, err
			}
			n.kids = append(n.kids, k)
		}
		if n.kind == nNot && len(n.kids) != 1 {
			return n, errors.New("not_id needs one identifier")
		}
		return optimize(n), nil
	case xdsresource.PrinAuthenticated:
		if p.Name == nil {
			return node{kind: nAuthenticated}, nil
		}
		sm, err := compileString(*p.Name)
		if err != nil {
			return node{}, fmt.Errorf("authenticated.principal_name: %w", err)
		}
		return node{kind: nString, attr: aPeer, sm: sm}, nil
	case xdsresource.PrinDirectRemoteIP:
		return node{kind: nDirectIP, prefix: p.IP}, nil
	case xdsresource.PrinRemoteIP:
		return node{kind: nRemoteIP, prefix: p.IP}, nil
	case xdsresource.PrinHeader:
		return headerNode(&p.Header)
	case xdsresource.PrinURLPath:
		sm, err := compileString(p.Path)
		if err != nil {
			return node{}, fmt.Errorf("url_path: %w", err)
		}
		return node{kind: nString, attr: aURLPath, sm: sm}, nil
	case xdsresource.PrinMetadata:
		return metadataNode(p.Metadata)
	}
	return node{}, fmt.Errorf("unknown principal kind %d", p.Kind)
}

// metadataNode compiles a matcher of request authentication's metadata
// (the decoder accepts only istio_authn).
func metadataNode(m xdsresource.MetadataMatcher) (node, error) {
	if len(m.Path) == 0 {
		return node{}, errors.New("metadata: empty path")
	}
	v, err := compileValue(m.Value)
	if err != nil {
		return node{}, fmt.Errorf("metadata %s: %w", strings.Join(m.Path, "."), err)
	}
	return node{kind: nAuthn, invert: m.Invert, md: &metadataMatcher{path: m.Path, value: v}}, nil
}

// metadataMatcher matches a request authentication value, which Istio
// keeps as a list of strings: the request principals ("iss/sub" of each
// verified token), the audiences, the presenter (azp), or a claim (a
// string, or the strings of a list).
type metadataMatcher struct {
	path  []string
	value valueMatcher
}

type valueMatcher struct {
	kind  xdsresource.ValueKind
	sm    strmatch.Matcher
	oneOf *valueMatcher
	or    []valueMatcher
}

func compileValue(v xdsresource.ValueMatcher) (valueMatcher, error) {
	out := valueMatcher{kind: v.Kind}
	switch v.Kind {
	case xdsresource.ValueString:
		sm, err := compileString(v.String)
		if err != nil {
			return out, err
		}
		out.sm = sm
	case xdsresource.ValueListOne:
		if v.OneOf == nil {
			return out, errors.New("list_match without one_of")
		}
		o, err := compileValue(*v.OneOf)
		if err != nil {
			return out, err
		}
		out.oneOf = &o
	case xdsresource.ValueOr:
		for _, e := range v.Or {
			c, err := compileValue(e)
			if err != nil {
				return out, err
			}
			out.or = append(out.or, c)
		}
	}
	return out, nil
}

func (m *metadataMatcher) matches(jwt *jwtauthn.Result) bool {
	vals, ok := authnValues(jwt, m.path)
	return ok && m.value.matches(vals)
}

func (v *valueMatcher) matches(vals []string) bool {
	switch v.kind {
	case xdsresource.ValuePresent:
		return true
	case xdsresource.ValueListOne:
		return v.oneOf.matches(vals)
	case xdsresource.ValueOr:
		for i := range v.or {
			if v.or[i].matches(vals) {
				return true
			}
		}
		return false
	}
	for _, s := range vals {
		if v.sm.Match(s) {
			return true
		}
	}
	return false
}

// authnValues reads a path of istio_authn from the verified tokens.
func authnValues(jwt *jwtauthn.Result, path []string) ([]string, bool) {
	if jwt == nil || len(jwt.Tokens) == 0 {
		return nil, false
	}
	switch path[0] {
	case "request.auth.principal":
		return jwt.Principals(), true
	case "request.auth.audiences":
		var out []string
		for i := range jwt.Tokens {
			out = append(out, jwt.Tokens[i].Audiences...)
		}
		return out, len(out) > 0
	case "request.auth.presenter":
		return claimStrings(jwt.Claim("azp"))
	case "request.auth.claims":
		if len(path) < 2 {
			return nil, false
		}
		return claimStrings(jwt.Claim(path[1:]...))
	}
	return nil, false
}

// claimStrings is a claim as a list of strings: a string, or the string
// elements of a list (other JSON values are not compared, as in Istio).
func claimStrings(v any, ok bool) ([]string, bool) {
	if !ok {
		return nil, false
	}
	switch c := v.(type) {
	case string:
		return []string{c}, true
	case []any:
		var out []string
		for _, e := range c {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out, len(out) > 0
	}
	return nil, false
}

// optimize turns an OR of exact matches on one attribute into a set
// lookup, and collapses a single-child AND or OR.
func optimize(n node) node {
	if (n.kind == nAnd || n.kind == nOr) && len(n.kids) == 1 {
		return n.kids[0]
	}
	if n.kind != nOr || len(n.kids) < 2 {
		return n
	}
	first := &n.kids[0]
	for i := range n.kids {
		k := &n.kids[i]
		if k.kind != nString || k.sm.Kind() != strmatch.Exact || k.invert || k.missingEmpty || k.sm.Value() == "" ||
			k.attr != first.attr || k.header != first.header || k.sm.IgnoreCase() != first.sm.IgnoreCase() {
			return n
		}
	}
	set := make(map[string]struct{}, len(n.kids))
	for i := range n.kids {
		set[n.kids[i].sm.Value()] = struct{}{}
	}
	return node{kind: nSet, attr: first.attr, header: first.header, set: set, fold: first.sm.IgnoreCase()}
}
