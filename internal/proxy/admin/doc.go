// Package admin serves the proxy's admin interface (port 15000 and, in
// local mode, a Unix socket in the state dir) and its readiness endpoint
// (port 15021). The proxy core implements Source; this package owns only
// the HTTP surface, so the admin API can be tested without a proxy.
package admin
