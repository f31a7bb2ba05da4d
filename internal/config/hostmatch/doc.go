// Package hostmatch is Istio's host name matching (pkg/config/host's
// Name.Matches and Name.SubsetOf), the one implementation validation,
// analysis, the registry and translation share, so that two of them can
// never disagree on whether a route or rule applies to a host.
//
// Names are as validation leaves them: lower case, a plain name or a
// wildcard "*" / "*.example.com" (a leading "*" covers any name ending in
// what follows it).
package hostmatch
