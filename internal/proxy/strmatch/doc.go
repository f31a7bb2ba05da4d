// Package strmatch is Envoy's StringMatcher (exact, prefix, suffix,
// contains, safe_regex) for the proxy's hot paths: a matcher is compiled
// once when a resource is accepted and then matched per request with no
// allocation. The router (route headers and query parameters) and
// authorization (RBAC principals and permissions) share it so the two
// cannot drift apart on ignore_case, which Envoy applies to ASCII letters
// only.
package strmatch
