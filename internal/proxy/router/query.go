package router

import "strings"

// queryOf returns the raw query of a request target: after the first '?',
// up to a fragment. Envoy's parser would keep a fragment in the last value,
// but its connection manager strips fragments before routing, so the
// end-to-end behaviour is to ignore it.
func queryOf(target string) string {
	i := strings.IndexByte(target, '?')
	if i < 0 {
		return ""
	}
	q := target[i+1:]
	if j := strings.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	return q
}

// queryParam finds the first parameter called name in a raw query, without
// decoding either side (Envoy's QueryParamsMulti::parseQueryString): a
// parameter without '=' has the empty value.
func queryParam(query, name string) (string, bool) {
	for query != "" {
		seg := query
		if i := strings.IndexByte(query, '&'); i >= 0 {
			seg, query = query[:i], query[i+1:]
		} else {
			query = ""
		}
		k, v := seg, ""
		if i := strings.IndexByte(seg, '='); i >= 0 {
			k, v = seg[:i], seg[i+1:]
		}
		if k == name {
			return v, true
		}
	}
	return "", false
}
