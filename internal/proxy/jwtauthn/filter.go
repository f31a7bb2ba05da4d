package jwtauthn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// DefaultClockSkew is the leeway on exp and nbf when a provider sets
// none (Envoy's clock_skew_seconds default).
const DefaultClockSkew = 60 * time.Second

// maxRealmPath is how much of the request path WWW-Authenticate's realm
// carries, as Envoy's.
const maxRealmPath = 256

// Filter is a compiled jwt_authn filter: the providers and rules of one
// HTTP connection manager. It is safe for concurrent use.
type Filter struct {
	providers []*provider // by name
	rules     []rule
	cors      bool // bypass CORS preflight requests
	strip     bool // refusals without body or WWW-Authenticate
	now       func() time.Time
}

type provider struct {
	name string
	cfg  *xdsresource.JWTProvider
	locs []*location
	skew int64 // seconds

	local       *KeySet
	localStatus Status // why local is nil
	remote      *Remote

	sigs           sigCache
	spaceDelimited map[string]bool
	// sanitize are the headers the provider writes, removed from every
	// request it may verify so a client cannot forge them.
	sanitize []string
}

// location is one place tokens are looked for, with the issuers whose
// tokens may come from there ("" among them: any issuer).
type location struct {
	header string // canonical header name; "" for the others
	prefix string
	param  string // query parameter name
	cookie string // cookie name
	issuer map[string]bool
	any    bool
}

func (l *location) allows(iss string) bool { return l.any || l.issuer[iss] }

type rule struct {
	exact bool
	path  string
	req   *node // nil: nothing required
	// sanitize are the headers of every provider req may verify with.
	sanitize []string
}

// node is a requirement, compiled as Envoy's verifier tree.
type node struct {
	kind xdsresource.JWTRequirementKind
	p    *provider
	auds []string // RequireProvider: overrides the provider's audiences
	of   []*node
	// locs are where an allow_missing(_or_failed) node looks for tokens:
	// those of its requires_any siblings' providers (none elsewhere, as
	// in Envoy).
	locs []*location
}

// Options configure a Filter.
type Options struct {
	// Now is the clock exp and nbf are checked against; nil is time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// New compiles cfg. Remote JWKS come from cache, which starts fetching
// those it does not hold yet; a nil cache leaves remote providers without
// keys. An inline JWKS that does not parse is logged and fails the
// requests whose tokens it should verify (as Envoy does), rather than the
// whole config.
func New(cfg *xdsresource.JWTAuthentication, cache *Cache, o Options) *Filter {
	f := &Filter{cors: cfg.BypassCORSPreflight, strip: cfg.StripFailureResponse, now: o.Now}
	if f.now == nil {
		f.now = time.Now
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	names := make([]string, 0, len(cfg.Providers))
	for n := range cfg.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	byName := map[string]*provider{}
	for _, n := range names {
		pc := cfg.Providers[n]
		p := &provider{name: n, cfg: pc, skew: int64(DefaultClockSkew / time.Second)}
		if pc.ClockSkew > 0 {
			p.skew = int64(pc.ClockSkew / time.Second)
		}
		p.locs = mergeLocations(nil, pc)
		if len(pc.SpaceDelimitedClaims) > 0 {
			p.spaceDelimited = map[string]bool{}
			for _, c := range pc.SpaceDelimitedClaims {
				p.spaceDelimited[c] = true
			}
		}
		if pc.ForwardPayloadHeader != "" {
			p.sanitize = append(p.sanitize, textproto.CanonicalMIMEHeaderKey(pc.ForwardPayloadHeader))
		}
		for _, ch := range pc.ClaimToHeaders {
			p.sanitize = append(p.sanitize, textproto.CanonicalMIMEHeaderKey(ch.Header))
		}
		switch {
		case pc.LocalJWKS != nil:
			ks, st, err := ParseJWKS([]byte(*pc.LocalJWKS))
			p.local, p.localStatus = ks, st
			if err != nil {
				level := slog.LevelWarn
				if ks != nil {
					level = slog.LevelInfo
				}
				log.Log(context.Background(), level, "inline JWKS: tokens of this issuer fail verification with the keys it lacks", "provider", n, "issuer", pc.Issuer, "err", err)
			}
		case pc.RemoteJWKS != nil && cache != nil:
			r := pc.RemoteJWKS
			p.remote = cache.get(f, r.URI, r.CacheDuration, r.Timeout, r.FailedRefetch)
		}
		f.providers = append(f.providers, p)
		byName[n] = p
	}
	for _, r := range cfg.Rules {
		cr := rule{exact: r.PathKind == xdsresource.PathExact, path: r.Path}
		if r.Requires != nil {
			seen := map[*provider]bool{}
			cr.req = compile(r.Requires, byName, nil, seen)
			for _, p := range f.providers {
				if seen[p] {
					cr.sanitize = append(cr.sanitize, p.sanitize...)
				}
			}
		}
		f.rules = append(f.rules, cr)
	}
	return f
}

// compile builds the verifier tree of r. parents are the providers of a
// requires_any's provider children, where an allow_missing child looks
// for tokens; seen collects every provider the tree may verify with.
func compile(r *xdsresource.JWTRequirement, byName map[string]*provider, parents []*provider, seen map[*provider]bool) *node {
	n := &node{kind: r.Kind}
	switch r.Kind {
	case xdsresource.RequireProvider:
		n.p, n.auds = byName[r.Provider], r.Audiences
		seen[n.p] = true
	case xdsresource.AllowMissing, xdsresource.AllowMissingOrFailed:
		for _, p := range parents {
			n.locs = mergeLocations(n.locs, p.cfg)
		}
	case xdsresource.RequireAll:
		for i := range r.Of {
			n.of = append(n.of, compile(&r.Of[i], byName, nil, seen))
		}
	case xdsresource.RequireAny:
		var used []*provider
		var bypass *xdsresource.JWTRequirement
		for i := range r.Of {
			c := &r.Of[i]
			switch c.Kind {
			case xdsresource.RequireProvider:
				used = append(used, byName[c.Provider])
			case xdsresource.AllowMissing, xdsresource.AllowMissingOrFailed:
				// One bypass, tried last; allow_missing_or_failed wins.
				if bypass == nil || bypass.Kind == xdsresource.AllowMissing {
					bypass = c
				}
				continue
			}
			n.of = append(n.of, compile(c, byName, nil, seen))
		}
		if bypass != nil {
			n.of = append(n.of, compile(bypass, byName, used, seen))
		}
	}
	return n
}

// mergeLocations adds p's token locations to locs: its from_headers and
// from_params, or when it names none Envoy's defaults (Authorization with
// "Bearer ", and the access_token parameter). A location several
// providers name is one location allowing each one's issuer.
func mergeLocations(locs []*location, p *xdsresource.JWTProvider) []*location {
	add := func(l location) {
		for _, have := range locs {
			if have.header == l.header && have.prefix == l.prefix && have.param == l.param && have.cookie == l.cookie {
				have.add(p.Issuer)
				return
			}
		}
		l.issuer = map[string]bool{}
		l.add(p.Issuer)
		locs = append(locs, &l)
	}
	for _, h := range p.FromHeaders {
		add(location{header: textproto.CanonicalMIMEHeaderKey(h.Name), prefix: h.ValuePrefix})
	}
	for _, q := range p.FromParams {
		add(location{param: q})
	}
	for _, c := range p.FromCookies {
		add(location{cookie: c})
	}
	if len(p.FromHeaders) == 0 && len(p.FromParams) == 0 && len(p.FromCookies) == 0 {
		add(location{header: "Authorization", prefix: "Bearer "})
		add(location{param: "access_token"})
	}
	// Headers, then parameters, then cookies, as Envoy's extractor
	// orders them.
	sort.SliceStable(locs, func(i, j int) bool { return locs[i].order() < locs[j].order() })
	return locs
}

func (l *location) order() int {
	switch {
	case l.header != "":
		return 0
	case l.param != "":
		return 1
	}
	return 2
}

func (l *location) add(iss string) {
	if iss == "" {
		l.any = true
		return
	}
	l.issuer[iss] = true
}

// Denial is a refused request's answer.
type Denial struct {
	Status Status
	// Code is 401, or 403 for a token whose audience is not allowed
	// (Envoy's codes).
	Code int
	// WWWAuthenticate is the header's value, Body the answer's; both
	// empty when the filter strips failure responses.
	WWWAuthenticate string
	Body            string
}

// Verify checks r against the first rule its path matches and rewrites
// r as the providers say: tokens removed unless forwarded (the header, or
// the query parameter in both r.URL.RawQuery and r.RequestURI), payload
// and claim headers set, and forged copies of those removed first. It
// returns the verified tokens (nil when none verified), or the answer
// that refuses r.
func (f *Filter) Verify(r *http.Request) (*Result, *Denial) {
	if f.cors && r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		return nil, nil
	}
	path := r.URL.Path
	var rl *rule
	for i := range f.rules {
		ru := &f.rules[i]
		if (ru.exact && path == ru.path) || (!ru.exact && strings.HasPrefix(path, ru.path)) {
			rl = ru
			break
		}
	}
	if rl == nil || rl.req == nil {
		return nil, nil
	}
	for _, h := range rl.sanitize {
		delete(r.Header, h)
	}
	realm := realmOf(r)
	v := verification{f: f, r: r, now: f.now().Unix()}
	st := v.run(rl.req)
	if st == Ok {
		return v.res, nil
	}
	d := &Denial{Status: st, Code: http.StatusUnauthorized}
	if st == JwtAudienceNotAllowed {
		d.Code = http.StatusForbidden
	}
	if !f.strip {
		d.Body = st.String()
		d.WWWAuthenticate = `Bearer realm="` + realm + `"`
		if st != JwtMissed {
			d.WWWAuthenticate += `, error="invalid_token"`
		}
	}
	return nil, d
}

// realmOf is the request's URI as Envoy writes it in WWW-Authenticate:
// scheme, host and at most 256 bytes of the path.
func realmOf(r *http.Request) string {
	scheme := r.Header.Get("X-Forwarded-Proto")
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	p := r.URL.RequestURI()
	if len(p) > maxRealmPath {
		p = p[:maxRealmPath]
	}
	return strings.NewReplacer(`"`, "%22", `\`, "%5C").Replace(scheme + "://" + r.Host + p)
}

// verification is one request's pass over a requirement tree.
type verification struct {
	f     *Filter
	r     *http.Request
	now   int64
	query url.Values
	res   *Result
}

// found is a token and where it was.
type found struct {
	tok string
	loc *location
}

// run evaluates n as Envoy's verifiers do: a provider needs a token at
// its locations and every one there valid; requires_any takes the first
// child satisfied, else fails as its last child did; requires_all the
// first failure; allow_missing accepts no token, and tokens all valid;
// allow_missing_or_failed anything. Envoy's allow_missing lets an
// invalid token through when a later token at its locations is valid;
// here every token must be.
func (v *verification) run(n *node) Status {
	switch n.kind {
	case xdsresource.RequireProvider:
		toks := v.extract(n.p.locs)
		if len(toks) == 0 {
			return JwtMissed
		}
		for i := len(toks) - 1; i >= 0; i-- {
			if st := v.authenticate(toks[i], n.p, n.auds); st != Ok {
				return st
			}
		}
		return Ok
	case xdsresource.AllowMissing, xdsresource.AllowMissingOrFailed:
		toks := v.extract(n.locs)
		st := Ok
		for i := len(toks) - 1; i >= 0; i-- {
			if s := v.authenticate(toks[i], nil, nil); s != Ok && st == Ok {
				st = s
			}
		}
		if n.kind == xdsresource.AllowMissingOrFailed {
			return Ok
		}
		return st
	case xdsresource.RequireAny:
		st := JwtMissed
		for _, c := range n.of {
			if st = v.run(c); st == Ok {
				return Ok
			}
		}
		return st
	case xdsresource.RequireAll:
		for _, c := range n.of {
			if st := v.run(c); st != Ok {
				return st
			}
		}
		return Ok
	}
	return Ok
}

// extract finds the tokens at locs: each value of a location's header
// (after its prefix, when it has one and the value holds it), the first
// value of each query parameter, and each cookie's.
func (v *verification) extract(locs []*location) []found {
	var out []found
	for _, l := range locs {
		if l.header != "" {
			for _, val := range v.r.Header[l.header] {
				if l.prefix != "" {
					i := strings.Index(val, l.prefix)
					if i < 0 {
						continue
					}
					val = tokenAfter(val, i+len(l.prefix))
				}
				out = append(out, found{tok: val, loc: l})
			}
			continue
		}
		if l.cookie != "" {
			if c, err := v.r.Cookie(l.cookie); err == nil {
				out = append(out, found{tok: c.Value, loc: l})
			}
			continue
		}
		if v.query == nil {
			v.query, _ = url.ParseQuery(v.r.URL.RawQuery)
		}
		if vals := v.query[l.param]; len(vals) > 0 {
			out = append(out, found{tok: vals[0], loc: l})
		}
	}
	return out
}

// tokenAfter is the token in s from position i on: its run of base64url
// characters and dots, skipping anything else before it (Envoy's
// extractJWT); all of s when there is none.
func tokenAfter(s string, i int) string {
	start := -1
	for j := i; j < len(s); j++ {
		if jwtChar(s[j]) {
			start = j
			break
		}
	}
	if start < 0 {
		return s
	}
	end := start
	for end < len(s) && jwtChar(s[end]) {
		end++
	}
	return s[start:end]
}

func jwtChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// authenticate verifies one token, for provider p, or (p nil, an
// allow_missing node) for the provider its issuer names, in Envoy's
// order: format, issuer, time, audience, key, signature. A token that
// verifies is handled as its provider says.
func (v *verification) authenticate(fd found, p *provider, auds []string) Status {
	t, st := parseToken(fd.tok)
	if st != Ok {
		return st
	}
	if !fd.loc.allows(t.iss) {
		return JwtUnknownIssuer
	}
	if p == nil {
		if p = v.f.byIssuer(t.iss); p == nil {
			return JwtUnknownIssuer
		}
	}
	if t.hasNbf && v.now+p.skew < t.nbf {
		return JwtNotYetValid
	}
	if t.hasExp && v.now > t.exp+p.skew {
		return JwtExpired
	}
	if auds == nil {
		auds = p.cfg.Audiences
	}
	if !audienceAllowed(auds, t.aud) {
		return JwtAudienceNotAllowed
	}
	keys := p.local
	switch {
	case p.remote != nil:
		if keys = p.remote.Keys(); keys == nil {
			// Never waiting on a fetch: until the first one succeeds
			// the issuer's tokens fail.
			return JwksFetchFail
		}
	case keys == nil && p.localStatus != Ok:
		return p.localStatus
	case keys == nil:
		return JwksFetchFail
	}
	if !p.sigs.verified(keys, fd.tok) {
		st = verifySignature(t, keys)
		if st == JwksKidAlgMismatch && p.remote != nil {
			p.remote.Refresh()
		}
		if st != Ok {
			return st
		}
		p.sigs.add(keys, fd.tok)
	}
	v.accept(fd, t, p)
	return Ok
}

// byIssuer is the provider of an issuer, else one that accepts any
// issuer (Envoy's findByIssuer).
func (f *Filter) byIssuer(iss string) *provider {
	var anyIss *provider
	for _, p := range f.providers {
		if p.cfg.Issuer == iss {
			return p
		}
		if p.cfg.Issuer == "" && anyIss == nil {
			anyIss = p
		}
	}
	return anyIss
}

// accept does what the provider says with a verified token, and adds it
// to the result once (a tree may verify one token twice).
func (v *verification) accept(fd found, t *token, p *provider) {
	if v.res != nil {
		for _, vt := range v.res.Tokens {
			if vt.Provider == p.name && vt.raw == fd.tok {
				return
			}
		}
	}
	h := v.r.Header
	if name := p.cfg.ForwardPayloadHeader; name != "" {
		val := t.payload64
		if p.cfg.PadForwardPayloadHeader {
			if b, err := b64(val); err == nil {
				val = base64.URLEncoding.EncodeToString(b)
			}
		}
		h.Add(name, val)
	}
	for _, ch := range p.cfg.ClaimToHeaders {
		if val, ok := claimHeaderValue(t.claims, ch.Claim); ok {
			h.Add(ch.Header, val)
		}
	}
	if !p.cfg.Forward {
		v.remove(fd)
	}
	claims := t.claims
	if len(p.spaceDelimited) > 0 {
		for c := range p.spaceDelimited {
			if s, ok := claims[c].(string); ok {
				claims[c] = splitSpaces(s)
			}
		}
	}
	if v.res == nil {
		v.res = &Result{}
	}
	v.res.Tokens = append(v.res.Tokens, Verified{
		Provider: p.name, Metadata: p.cfg.PayloadInMetadata,
		Issuer: t.iss, Subject: t.sub, Audiences: t.aud, Claims: claims, raw: fd.tok,
	})
}

// remove takes a token that is not forwarded out of the request: its
// whole header, or its query parameter (every value of it). A cookie
// stays, as Envoy leaves it.
func (v *verification) remove(fd found) {
	switch {
	case fd.loc.header != "":
		delete(v.r.Header, fd.loc.header)
		return
	case fd.loc.cookie != "":
		return
	}
	u := v.r.URL
	q := removeParam(u.RawQuery, fd.loc.param)
	if q == u.RawQuery {
		return
	}
	u.RawQuery = q
	v.query = nil
	if i := strings.IndexByte(v.r.RequestURI, '?'); i >= 0 {
		v.r.RequestURI = v.r.RequestURI[:i]
		if q != "" {
			v.r.RequestURI += "?" + q
		}
	}
}

// removeParam drops every name=value pair of the parameter name from a
// raw query, keeping the others as they were written.
func removeParam(raw, name string) string {
	var b strings.Builder
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, _, _ := strings.Cut(pair, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == name {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	return b.String()
}

// claimHeaderValue is a claim as claim_to_headers writes it: strings as
// they are, numbers as integers when whole, booleans as true/false;
// other kinds are not written. A dotted name reaches into nested objects.
func claimHeaderValue(claims map[string]any, name string) (string, bool) {
	val, ok := claims[name]
	if !ok {
		val, ok = lookup(claims, strings.Split(name, "."))
	}
	if !ok {
		return "", false
	}
	switch x := val.(type) {
	case string:
		return x, x != ""
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		if i, err := x.Int64(); err == nil && i >= 0 {
			return strconv.FormatInt(i, 10), true
		}
		if fl, err := x.Float64(); err == nil {
			return strconv.FormatFloat(fl, 'f', 6, 64), true
		}
	}
	return "", false
}

// audienceAllowed reports whether one of the token's audiences is
// allowed, comparing them as jwt_verify_lib does: without an http:// or
// https:// scheme and without a trailing slash. No allowed audiences
// allow any token.
func audienceAllowed(allowed, aud []string) bool {
	if len(allowed) == 0 {
		return true
	}
	for _, a := range aud {
		a = sanitizeAudience(a)
		for _, w := range allowed {
			if sanitizeAudience(w) == a {
				return true
			}
		}
	}
	return false
}

func sanitizeAudience(a string) string {
	switch {
	case strings.HasPrefix(a, "http://"):
		a = a[len("http://"):]
	case strings.HasPrefix(a, "https://"):
		a = a[len("https://"):]
	}
	return strings.TrimSuffix(a, "/")
}
