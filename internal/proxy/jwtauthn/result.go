package jwtauthn

import "strings"

// Result is what verification proved about a request: the tokens that
// verified, each with its claims. Authorization reads it for
// requestPrincipals and request.auth.* conditions, as Istio's RBAC reads
// the payloads Envoy's jwt_authn filter leaves in its dynamic metadata
// (envoy.filters.http.jwt_authn, one payload per provider, named by the
// provider's payload_in_metadata: istiod names it by the issuer).
//
// A nil *Result, or one without tokens, is a request that carried no
// token a provider verified: its request principal is empty, as Istio's.
type Result struct {
	Tokens []Verified
}

// Verified is one verified token.
type Verified struct {
	// Provider is the provider that verified it, Metadata its
	// payload_in_metadata (istiod: the issuer; "" if unset).
	Provider, Metadata string
	// Issuer and Subject are the iss and sub claims.
	Issuer, Subject string
	// Audiences is the aud claim (a single string becomes one element).
	Audiences []string
	// Claims is the whole payload as encoding/json decodes it with
	// UseNumber: strings, json.Number, bool, nil, []any and
	// map[string]any. A claim named in the provider's
	// normalize_payload_in_metadata whose value is a string holding
	// space-separated words is a []any of those words.
	Claims map[string]any

	raw string // the token, so that one verified twice counts once
}

// Principal is the token's request principal as Istio writes it:
// "<iss>/<sub>".
func (v *Verified) Principal() string { return v.Issuer + "/" + v.Subject }

// Principals lists the request principals of the verified tokens, in
// the order they verified.
func (r *Result) Principals() []string {
	if r == nil {
		return nil
	}
	out := make([]string, 0, len(r.Tokens))
	for i := range r.Tokens {
		out = append(out, r.Tokens[i].Principal())
	}
	return out
}

// Claim returns the value at path (["groups"], or ["nested", "key"] for
// request.auth.claims[nested][key]) in the first verified token that has
// it, and whether one had it.
func (r *Result) Claim(path ...string) (any, bool) {
	if r == nil || len(path) == 0 {
		return nil, false
	}
	for i := range r.Tokens {
		if v, ok := lookup(r.Tokens[i].Claims, path); ok {
			return v, true
		}
	}
	return nil, false
}

func lookup(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, p := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// ClaimStrings is a claim's value as the strings Istio compares
// request.auth.claims against: a string, or the strings of a list.
func ClaimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// splitSpaces is normalize_payload_in_metadata's split of a
// space-delimited claim.
func splitSpaces(s string) []any {
	f := strings.Fields(s)
	out := make([]any, len(f))
	for i, w := range f {
		out[i] = w
	}
	return out
}

// Principal is the request principal authorization sees, "<iss>/<sub>"
// of the first verified token, or "" when none verified (Istio's
// request.auth.principal).
func (r *Result) Principal() string {
	if r == nil || len(r.Tokens) == 0 {
		return ""
	}
	return r.Tokens[0].Principal()
}

// AuthnAttribute is the value of one of Istio's request authentication
// attributes, as its istio_authn metadata holds them for the first
// verified token, at path: ["request.auth.principal"],
// ["request.auth.audiences"], ["request.auth.presenter"] (azp), or
// ["request.auth.claims", name, nested...]. A claim's value is its
// strings (a string, or a list's strings); ok is false when the request
// has no verified token or the token lacks the attribute.
func (r *Result) AuthnAttribute(path []string) (values []string, ok bool) {
	if r == nil || len(r.Tokens) == 0 || len(path) == 0 {
		return nil, false
	}
	t := &r.Tokens[0]
	switch path[0] {
	case "request.auth.principal":
		return []string{t.Principal()}, len(path) == 1
	case "request.auth.audiences":
		return t.Audiences, len(path) == 1 && len(t.Audiences) > 0
	case "request.auth.presenter":
		azp, isStr := t.Claims["azp"].(string)
		return []string{azp}, len(path) == 1 && isStr
	case "request.auth.claims":
		v, found := lookup(t.Claims, path[1:])
		if !found || len(path) < 2 {
			return nil, false
		}
		s := ClaimStrings(v)
		return s, len(s) > 0
	}
	return nil, false
}
