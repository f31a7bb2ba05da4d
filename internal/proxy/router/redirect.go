package router

import (
	"strconv"
	"strings"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// RedirectLocation is the Location header of a redirect route's answer to
// a request with the given scheme (Request.Scheme), Host, escaped path and
// raw query. It follows Envoy's RedirectAction:
//
//   - scheme: scheme_redirect, else the request's.
//   - host: host_redirect, else the request's Host. Its port is dropped
//     when port_redirect is set, and when the scheme changes and the port
//     was the old scheme's default (http://a:80 -> https://a).
//   - port: port_redirect, left out of the Location when it is the
//     scheme's default (80 for http, 443 for https).
//   - path: path_redirect; else the request's path rewritten by
//     prefix_rewrite (the matched prefix, or exact path, swapped) or
//     regex_rewrite; else the request's path. The request's query is
//     kept unless path_redirect carries a query of its own.
func RedirectLocation(rt *xdsresource.Route, scheme, host, path, rawQuery string) string {
	rd := rt.Redirect
	newScheme := scheme
	if rd.Scheme != "" {
		newScheme = asciiLower(rd.Scheme)
	}
	port := ""
	if rd.Port != 0 {
		port = strconv.FormatUint(uint64(rd.Port), 10)
	}
	if rd.Host != "" {
		host = rd.Host
	}
	if h, p, ok := cutPort(host); ok {
		switch {
		case port != "":
			host = h
		case rd.Host == "" && newScheme != scheme && p == defaultPort(scheme):
			host = h
		}
	}
	if port == defaultPort(newScheme) {
		port = ""
	}
	p := path
	switch {
	case rd.Path != "":
		p = rd.Path
	case rd.RegexRewrite != nil:
		p = rd.RegexRewrite.ReplaceAllString(path, rd.RegexSubstitution)
	case rd.PrefixRewrite != "":
		p = prefixRewrite(&rt.Match, path, rd.PrefixRewrite)
	}
	var b strings.Builder
	b.WriteString(newScheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(p)
	if rawQuery != "" && !strings.Contains(p, "?") {
		b.WriteByte('?')
		b.WriteString(rawQuery)
	}
	return b.String()
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// cutPort splits "host:port", "[v6]:port"; ok is false without a port.
func cutPort(hostport string) (host, port string, ok bool) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.LastIndexByte(hostport, ']') > i {
		return hostport, "", false
	}
	if !strings.HasPrefix(hostport, "[") && strings.Count(hostport, ":") > 1 {
		return hostport, "", false // a bare IPv6 address has no port
	}
	return hostport[:i], hostport[i+1:], true
}

// prefixRewrite swaps the part of path a route's prefix (or exact path)
// matched for rewrite, as Envoy's prefix_rewrite does; with a
// path-separated prefix, a rewrite ending in "/" does not double the
// slash that follows the prefix.
func prefixRewrite(m *xdsresource.RouteMatch, path, rewrite string) string {
	switch m.PathKind {
	case xdsresource.PathPrefix, xdsresource.PathSeparatedPrefix:
		if len(path) >= len(m.Path) {
			rest := path[len(m.Path):]
			if m.PathKind == xdsresource.PathSeparatedPrefix && strings.HasSuffix(rewrite, "/") && strings.HasPrefix(rest, "/") {
				rest = rest[1:]
			}
			return rewrite + rest
		}
	}
	return rewrite
}
