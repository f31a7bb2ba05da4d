// Package router is the sidecar's HTTP request router: it chooses the
// virtual host and route for a request from a RouteConfig, picks a weighted
// cluster and computes the consistent-hash key, all with Envoy's semantics
// so that the control plane's xDS output means the same thing here as it
// would in an Envoy.
//
// Matching runs on every request, so a RouteConfig is compiled once, when
// config arrives, into an immutable Table that the proxy swaps atomically;
// Match then allocates nothing for ordinary requests (single-valued
// headers, authorities up to 512 bytes) and only runs a regular expression
// where the config asks for one.
//
// Semantics, with the Envoy behaviour each follows:
//
//   - Virtual host: the authority, ASCII lower-cased, is looked up exactly,
//     then against suffix wildcards ("*.foo.com", "*-bar.foo.com"), longest
//     first, then prefix wildcards ("foo.*"), longest first, then "*". A
//     wildcard never matches an empty part ("*.foo.com" does not match
//     ".foo.com"). The port is part of the authority and is never stripped:
//     Envoy only strips it with ignore_port_in_host_matching or the HCM's
//     strip_*_host_port options, which Trellis does not use; the translator
//     lists every domain both bare and with ":port" instead. Duplicate
//     domains (case-insensitively) or more than one "*" fail to compile, as
//     they fail to load in Envoy.
//   - Routes: first match wins. A request without a path (CONNECT) matches
//     no route, as Envoy's path-based routes skip path-less requests.
//   - Path: prefix, exact, path-separated prefix and regex all compare the
//     path without its query string and fragment; the regex must match the
//     whole path; case_sensitive=false folds ASCII case for everything but
//     regex (Envoy ignores it for safe_regex).
//   - Headers: a header sent several times is matched as its values joined
//     with ","; the pseudo-headers :method, :authority, :path (with query)
//     and :scheme come from the Request. A missing header fails every
//     matcher except present-with-invert ("must be absent"), even when the
//     matcher is inverted: Envoy's rule, which means Istio withoutHeaders
//     with a value does not match a request lacking the header.
//   - Query parameters: the raw query is scanned without decoding, as
//     Envoy's route matcher does (QueryParamsMulti::parseQueryString, not
//     parseAndDecodeQueryString): "a%20b" is compared as is. The first
//     occurrence of a name is used; "?flag" has the empty value.
//   - Weighted clusters: Envoy's selection, rnd % (sum of weights) walked
//     through the cumulative weights, so callers own the RNG.
//   - Hashing: Envoy's hash policies over xxHash64 (seed 0), combining
//     several policies by rotate-left-1 and XOR, so keys hash as Envoy's
//     would.
package router
