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
