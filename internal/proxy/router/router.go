package router

import (
	"fmt"
	"net/netip"
	"net/textproto"
	"regexp"
	"slices"
	"strings"

	"github.com/trellismesh/trellis/internal/proxy/strmatch"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Request is the router's view of a request. The HTTP front end fills it
// from what it already holds, so building one allocates nothing; the
// router never keeps it.
type Request struct {
	Method    string
	Authority string // Host header or :authority, as received
	// Path is the request target as received: path, query and (rarely)
	// fragment. Empty for CONNECT.
	Path   string
	Scheme string // "http" or "https"
	Header Headers
	// SourceIP is the downstream address, for source-IP hash policies.
	SourceIP netip.Addr
}

// Headers gives the router the request's headers. http.Header satisfies
// it without allocating: names are passed in canonical MIME form ("X-User"),
// precomputed at Compile, so its Values does no case conversion. A front end
// keyed by lower-case HTTP/2 names must fold case itself.
type Headers interface {
	// Values returns every value of the named header in the order received,
	// or nil when it is absent. The router does not modify the slice.
	Values(name string) []string
}

// Table is a compiled RouteConfig. It is immutable and safe for concurrent
// use; it refers to the RouteConfig it was compiled from, which must not be
// modified afterwards.
type Table struct {
	rc *xdsresource.RouteConfig
	// exact holds lower-cased exact domains; suffixes and prefixes hold
	// wildcard domains without their "*", grouped by length, longest first,
	// so that a lookup costs one map probe per distinct length.
	exact    map[string]*vhost
	suffixes []wildcards
	prefixes []wildcards
	any      *vhost
	onlyAny  bool
	// hashes holds each route action's hash policies with header names
	// already canonical.
	hashes map[*xdsresource.RouteAction][]hashPolicy
}

type wildcards struct {
	n int
	m map[string]*vhost
}

type vhost struct {
	vh     *xdsresource.VirtualHost
	routes []route
}

type route struct {
	r       *xdsresource.Route
	kind    xdsresource.PathKind
	path    string // lower-cased when fold
	fold    bool
	re      *regexp.Regexp
	headers []headerMatcher
	queries []queryMatcher
}

type pseudo uint8

const (
	notPseudo pseudo = iota
	pseudoMethod
	pseudoAuthority
	pseudoPath
	pseudoScheme
	pseudoUnknown // a pseudo-header the router does not know: never present
)

type headerMatcher struct {
	pseudo  pseudo
	name    string // canonical MIME form
	present bool
	invert  bool
	// missingEmpty matches a missing header as the empty value.
	missingEmpty bool
	m            strmatch.Matcher
}

type queryMatcher struct {
	name    string
	present bool
	m       strmatch.Matcher
}

// Compile precompiles rc for matching. It fails on what Envoy would refuse
// to load (duplicate domains, several "*") and on matchers the router
// cannot evaluate (unknown kinds, missing regexes), so the proxy can NACK.
func Compile(rc *xdsresource.RouteConfig) (*Table, error) {
	t := &Table{rc: rc, exact: map[string]*vhost{}, hashes: map[*xdsresource.RouteAction][]hashPolicy{}}
	if rc == nil {
		t.onlyAny = true
		return t, nil
	}
	suffixes := map[int]map[string]*vhost{}
	prefixes := map[int]map[string]*vhost{}
	for i := range rc.VirtualHosts {
		vh := &rc.VirtualHosts[i]
		v := &vhost{vh: vh, routes: make([]route, 0, len(vh.Routes))}
		for j := range vh.Routes {
			r, err := compileRoute(&vh.Routes[j])
			if err != nil {
				return nil, fmt.Errorf("virtual_hosts[%d] (%s): routes[%d] (%s): %w", i, vh.Name, j, vh.Routes[j].Name, err)
			}
			v.routes = append(v.routes, r)
			if a := vh.Routes[j].Action; a != nil && len(a.HashPolicies) > 0 {
				t.hashes[a] = compileHash(a.HashPolicies)
			}
		}
		for _, d := range vh.Domains {
			d = asciiLower(d)
			var dup bool
			switch {
			case d == "*":
				dup = t.any != nil
				t.any = v
			case strings.HasPrefix(d, "*"):
				dup = insert(suffixes, d[1:], v)
			case strings.HasSuffix(d, "*"):
				dup = insert(prefixes, d[:len(d)-1], v)
			default:
				_, dup = t.exact[d]
				t.exact[d] = v
			}
			if dup {
				return nil, fmt.Errorf("virtual_hosts[%d] (%s): domain %q is not unique in route config %s", i, vh.Name, d, rc.Name)
			}
		}
	}
	t.suffixes = byLength(suffixes)
	t.prefixes = byLength(prefixes)
	t.onlyAny = len(t.exact) == 0 && len(t.suffixes) == 0 && len(t.prefixes) == 0
	return t, nil
}

func insert(byLen map[int]map[string]*vhost, key string, v *vhost) (dup bool) {
	m := byLen[len(key)]
	if m == nil {
		m = map[string]*vhost{}
		byLen[len(key)] = m
	}
	_, dup = m[key]
	m[key] = v
	return dup
}

func byLength(byLen map[int]map[string]*vhost) []wildcards {
	out := make([]wildcards, 0, len(byLen))
	for n, m := range byLen {
		out = append(out, wildcards{n: n, m: m})
	}
	slices.SortFunc(out, func(a, b wildcards) int { return b.n - a.n })
	return out
}

func compileRoute(xr *xdsresource.Route) (route, error) {
	m := &xr.Match
	r := route{r: xr, kind: m.PathKind, path: m.Path, fold: m.CaseInsensitive}
	switch m.PathKind {
	case xdsresource.PathPrefix, xdsresource.PathExact, xdsresource.PathSeparatedPrefix:
		if r.fold {
			r.path = asciiLower(r.path)
		}
	case xdsresource.PathRegex:
		if m.PathRegex == nil {
			return route{}, fmt.Errorf("match: safe_regex path without a compiled regex")
		}
		r.re = anchored(m.PathRegex)
		r.fold = false
	default:
		return route{}, fmt.Errorf("match: unknown path kind %d", m.PathKind)
	}
	for i, h := range m.Headers {
		hm := headerMatcher{present: h.Present, invert: h.Invert, missingEmpty: h.MissingAsEmpty && !h.Present}
		setHeaderName(&hm, h.Name)
		if !h.Present {
			sm, err := compileString(h.Match)
			if err != nil {
				return route{}, fmt.Errorf("match: headers[%d] (%s): %w", i, h.Name, err)
			}
			hm.m = sm
		}
		r.headers = append(r.headers, hm)
	}
	for i, q := range m.QueryParams {
		qm := queryMatcher{name: q.Name, present: q.Present}
		if !q.Present {
			sm, err := compileString(q.Match)
			if err != nil {
				return route{}, fmt.Errorf("match: query_parameters[%d] (%s): %w", i, q.Name, err)
			}
			qm.m = sm
		}
		r.queries = append(r.queries, qm)
	}
	return r, nil
}

// setHeaderName resolves a matcher's header name once: pseudo-headers to
// Request fields, others to the canonical form http.Header is keyed by.
func setHeaderName(hm *headerMatcher, name string) {
	name = asciiLower(name)
	switch {
	case name == ":method":
		hm.pseudo = pseudoMethod
	case name == ":authority":
		hm.pseudo = pseudoAuthority
	case name == ":path":
		hm.pseudo = pseudoPath
	case name == ":scheme":
		hm.pseudo = pseudoScheme
	case strings.HasPrefix(name, ":"):
		hm.pseudo = pseudoUnknown
	default:
		hm.name = textproto.CanonicalMIMEHeaderKey(name)
	}
}

// compileString anchors a regex to the whole value, as Envoy's
// safe_regex matches, before compiling.
func compileString(s xdsresource.StringMatcher) (strmatch.Matcher, error) {
	if s.Kind == xdsresource.StringRegex && s.Regex != nil {
		s.Regex = anchored(s.Regex)
	}
	return strmatch.Compile(s)
}

// anchored makes sure a regex matches whole values, as RE2's FullMatch in
// Envoy does. The decoder already anchors; this guards hand-built configs.
func anchored(re *regexp.Regexp) *regexp.Regexp {
	s := re.String()
	if strings.HasPrefix(s, "^(?:") && strings.HasSuffix(s, ")$") {
		return re
	}
	return regexp.MustCompile("^(?:" + s + ")$") // a valid regexp stays valid when wrapped
}

// Config returns the RouteConfig the table was compiled from.
func (t *Table) Config() *xdsresource.RouteConfig { return t.rc }

// Match returns the virtual host and route for a request. A nil route
// means no route: the proxy answers 404 with response flag NR. The virtual
// host is returned even when no route in it matched, for logs and stats.
func (t *Table) Match(r *Request) (*xdsresource.VirtualHost, *xdsresource.Route) {
	v := t.virtualHost(r.Authority)
	if v == nil {
		return nil, nil
	}
	if r.Path == "" {
		return v.vh, nil
	}
	path := r.Path
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	for i := range v.routes {
		rt := &v.routes[i]
		if rt.matches(r, path) {
			return v.vh, rt.r
		}
	}
	return v.vh, nil
}

// hostBuf bounds the authority lower-cased on the stack: a DNS name (253)
// plus port fits; longer ones cost one allocation.
const hostBuf = 512

func (t *Table) virtualHost(authority string) *vhost {
	if t.onlyAny {
		return t.any
	}
	var buf [hostBuf]byte
	h := strmatch.AppendLower(buf[:0], authority)
	// m[string(b)] does not allocate: the compiler looks up the bytes.
	if v, ok := t.exact[string(h)]; ok {
		return v
	}
	for _, w := range t.suffixes {
		if w.n >= len(h) {
			continue
		}
		if v, ok := w.m[string(h[len(h)-w.n:])]; ok {
			return v
		}
	}
	for _, w := range t.prefixes {
		if w.n >= len(h) {
			continue
		}
		if v, ok := w.m[string(h[:w.n])]; ok {
			return v
		}
	}
	return t.any
}

func (rt *route) matches(r *Request, path string) bool {
	switch rt.kind {
	case xdsresource.PathPrefix:
		if !strmatch.HasPrefix(path, rt.path, rt.fold) {
			return false
		}
	case xdsresource.PathExact:
		if len(path) != len(rt.path) || !strmatch.HasPrefix(path, rt.path, rt.fold) {
			return false
		}
	case xdsresource.PathSeparatedPrefix:
		if !strmatch.HasPrefix(path, rt.path, rt.fold) || (len(path) > len(rt.path) && path[len(rt.path)] != '/') {
			return false
		}
	case xdsresource.PathRegex:
		if !rt.re.MatchString(path) {
			return false
		}
	}
	for i := range rt.headers {
		if !rt.headers[i].matches(r) {
			return false
		}
	}
	if len(rt.queries) > 0 {
		query := queryOf(r.Path)
		for i := range rt.queries {
			if !rt.queries[i].matches(query) {
				return false
			}
		}
	}
	return true
}

func (h *headerMatcher) matches(r *Request) bool {
	v, ok := h.value(r)
	if !ok {
		if h.missingEmpty {
			return h.m.Match("") != h.invert
		}
		// Envoy: a missing header matches only "present" inverted.
		return h.present && h.invert
	}
	if h.present {
		return !h.invert
	}
	return h.m.Match(v) != h.invert
}

func (h *headerMatcher) value(r *Request) (string, bool) {
	switch h.pseudo {
	case pseudoMethod:
		return r.Method, r.Method != ""
	case pseudoAuthority:
		return r.Authority, r.Authority != ""
	case pseudoPath:
		return r.Path, r.Path != ""
	case pseudoScheme:
		return r.Scheme, r.Scheme != ""
	case pseudoUnknown:
		return "", false
	}
	return headerValue(r.Header, h.name)
}

// headerValue joins repeated headers with "," as Envoy's
// getAllOfHeaderAsString does; only that rare case allocates.
func headerValue(hs Headers, name string) (string, bool) {
	if hs == nil {
		return "", false
	}
	vals := hs.Values(name)
	switch len(vals) {
	case 0:
		return "", false
	case 1:
		return vals[0], true
	}
	return strings.Join(vals, ","), true
}

func (q *queryMatcher) matches(query string) bool {
	v, ok := queryParam(query, q.name)
	if !ok {
		return false
	}
	return q.present || q.m.Match(v)
}

// SchemeOf is the :scheme Envoy gives a request that arrives on an HTTP/1
// listener, for Request.Scheme: the scheme of an absolute-form target (a
// forward-proxy request, "http://reviews:9080/"), else X-Forwarded-Proto
// when it is one value naming http or https, else the connection's: https
// over TLS, http otherwise (Envoy's ConnectionManagerUtility sets :scheme
// from a valid X-Forwarded-Proto before the connection's).
func SchemeOf(target string, forwardedProto []string, tls bool) string {
	if i := strings.Index(target, "://"); i > 0 && target[0] != '/' {
		if s := knownScheme(target[:i]); s != "" {
			return s
		}
	}
	if len(forwardedProto) == 1 {
		if s := knownScheme(strings.TrimSpace(forwardedProto[0])); s != "" {
			return s
		}
	}
	if tls {
		return "https"
	}
	return "http"
}

func knownScheme(s string) string {
	switch {
	case strings.EqualFold(s, "http"):
		return "http"
	case strings.EqualFold(s, "https"):
		return "https"
	}
	return ""
}

// asciiLower folds names, domains and schemes as Envoy does: ASCII only,
// the same folding as ignore_case matchers.
func asciiLower(s string) string { return strmatch.ASCIILower(s) }
