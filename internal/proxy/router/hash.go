package router

import (
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"

	"github.com/trellismesh/trellis/internal/proxy/xxhash"
)

type hashPolicy struct {
	kind xdsresource.HashKind
	name string // canonical MIME form for headers; as configured otherwise
	pseudo
}

func compileHash(hps []xdsresource.HashPolicy) []hashPolicy {
	out := make([]hashPolicy, 0, len(hps))
	for _, hp := range hps {
		p := hashPolicy{kind: hp.Kind, name: hp.Name}
		if hp.Kind == xdsresource.HashHeader {
			hm := headerMatcher{}
			setHeaderName(&hm, hp.Name)
			p.name, p.pseudo = hm.name, hm.pseudo
		}
		out = append(out, p)
	}
	return out
}

// Hash computes the consistent-hash key of a request for the route action
// a (which must come from this table's config), following Envoy's hash
// policies: a header hashes its values sorted, a cookie its value, a query
// parameter its first raw value, the source IP its text form, each with
// xxHash64; several policies combine as rotl(h,1) ^ next. ok is false when
// no policy produced a hash (the balancer then picks as it would without
// hashing). A cookie policy with a TTL does not generate the cookie here:
// the HTTP front end sets it on the response when ok is false.
//
// It is a Table method because header names are canonicalised at Compile;
// doing it per request would allocate.
func (t *Table) Hash(a *xdsresource.RouteAction, r *Request) (hash uint64, ok bool) {
	if a == nil || len(a.HashPolicies) == 0 {
		return 0, false
	}
	hps, found := t.hashes[a]
	if !found {
		// An action from another config: still correct, at the cost of
		// allocating the canonical names.
		hps = compileHash(a.HashPolicies)
	}
	for i := range hps {
		h, ok1 := hps[i].evaluate(r)
		if !ok1 {
			continue
		}
		if ok {
			hash = (hash<<1 | hash>>63) ^ h
		} else {
			hash, ok = h, true
		}
	}
	return hash, ok
}

func (p *hashPolicy) evaluate(r *Request) (uint64, bool) {
	switch p.kind {
	case xdsresource.HashHeader:
		hm := headerMatcher{pseudo: p.pseudo, name: p.name}
		if p.pseudo != notPseudo {
			v, ok := hm.value(r)
			if !ok {
				return 0, false
			}
			return xxhash.Sum64(v, 0), true
		}
		if r.Header == nil {
			return 0, false
		}
		return hashValues(r.Header.Values(p.name))
	case xdsresource.HashCookie:
		if r.Header == nil {
			return 0, false
		}
		v, ok := cookie(r.Header.Values("Cookie"), p.name)
		if !ok || v == "" {
			return 0, false
		}
		return xxhash.Sum64(v, 0), true
	case xdsresource.HashSourceIP:
		if !r.SourceIP.IsValid() {
			return 0, false
		}
		var buf [64]byte
		b := r.SourceIP.Unmap().AppendTo(buf[:0])
		return xxhash.Sum64(b, 0), true
	case xdsresource.HashQueryParam:
		v, ok := queryParam(queryOf(r.Path), p.name)
		if !ok {
			return 0, false
		}
		return xxhash.Sum64(v, 0), true
	}
	return 0, false
}

// hashValues hashes a header's values in sorted order, chaining seeds as
// Envoy's HashUtil::xxHash64(span) does, so the order they arrived in does
// not matter. Sorting copies up to 8 values on the stack.
func hashValues(vals []string) (uint64, bool) {
	switch len(vals) {
	case 0:
		return 0, false
	case 1:
		return xxhash.Sum64(vals[0], 0), true
	}
	var arr [8]string
	var s []string
	if len(vals) <= len(arr) {
		s = arr[:len(vals)]
	} else {
		s = make([]string, len(vals))
	}
	copy(s, vals)
	// Insertion sort: a handful of values, and sort.Strings would escape s.
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	var h uint64
	for _, v := range s {
		h = xxhash.Sum64(v, h)
	}
	return h, true
}

// cookie finds a cookie's value as Envoy's Utility::parseCookieValue does:
// pairs split on ';', leading spaces trimmed, pairs without '=' skipped,
// one pair of surrounding double quotes removed.
func cookie(headers []string, name string) (string, bool) {
	for _, h := range headers {
		for h != "" {
			pair := h
			if i := indexByte(h, ';'); i >= 0 {
				pair, h = h[:i], h[i+1:]
			} else {
				h = ""
			}
			for len(pair) > 0 && pair[0] == ' ' {
				pair = pair[1:]
			}
			eq := indexByte(pair, '=')
			if eq < 0 || pair[:eq] != name {
				continue
			}
			v := pair[eq+1:]
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
