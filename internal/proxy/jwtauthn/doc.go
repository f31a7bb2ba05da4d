// Package jwtauthn verifies JSON Web Tokens for the sidecar as Envoy's
// jwt_authn HTTP filter does, which is what istiod compiles
// RequestAuthentications into: providers (issuer, audiences, where tokens
// are, what to do with a verified one) and a requirement tree per path.
//
// It uses the standard library's crypto only (the proxy's dependency
// allowlist): RS256/384/512, PS256/384/512, ES256/384/512, EdDSA
// (Ed25519) and HS256/384/512; "none" and every other alg are refused.
// Checks run in Envoy's order (format, issuer, exp/nbf with a 60 s clock
// skew, audience, key by kid and alg, signature) and a refusal carries
// Envoy's status text, 401 (403 for an audience not allowed) and
// WWW-Authenticate.
//
// Remote key sets (remote_jwks, a RequestAuthentication's jwksUri) are
// held by a Cache the proxy keeps across config updates: fetched in the
// background when a filter first names them, again every cache duration
// (and early, at most every few seconds, when a token names a key the set
// lacks), never while a request waits. A request whose issuer's keys have
// not been fetched yet fails with "Jwks remote fetch is failed", where
// Envoy would hold the request for the fetch.
//
// Where it differs from Envoy: allow_missing requires every token found to
// be valid (Envoy lets an invalid token through when a later one at the
// same locations verifies); subjects, max_lifetime, require_expiration,
// claim_path and requirement_map are refused when the config is decoded
// (xdsresource), so a config using them is NACKed. Like Envoy, a token
// from a cookie stays in the request.
//
// The verified tokens go to authorization as a Result (the request's
// principals "<iss>/<sub>" and claims), what Envoy's RBAC reads from the
// envoy.filters.http.jwt_authn dynamic metadata.
package jwtauthn
