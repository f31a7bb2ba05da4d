package hcm

import (
	"io"
	"strconv"
)

// authenticate is the request path's request authentication step
// (RequestAuthentication compiled to Envoy's jwt_authn filter): the
// connection's chain's filter verifies the request's tokens first, before
// authorization and routing, as jwt_authn runs first among istiod's
// inbound filters. A request without a token goes on unauthenticated
// (authorization's requestPrincipals decide); an invalid token is Envoy's
// 401 (403 for an audience not allowed) with its reason as the body and
// WWW-Authenticate, and never reaches the app. What verified is left in
// x.jwt for authorization.
func (s *Server) authenticate(x *exchange) bool {
	c := x.c
	if c == nil || c.JWT == nil {
		return true
	}
	f := c.JWT()
	if f == nil {
		return true
	}
	res, d := f.Verify(x.r)
	if d == nil {
		x.jwt = res
		return true
	}
	s.log.Debug("request refused by request authentication", "status", d.Status.String(), "method", x.r.Method, "path", x.r.URL.Path, "source", c.Source)
	h := x.w.Header()
	if d.WWWAuthenticate != "" {
		h.Set("Www-Authenticate", d.WWWAuthenticate)
	}
	if isGRPC(x.r) {
		// UNAUTHENTICATED (PERMISSION_DENIED for 403), as Envoy maps it.
		s.reply(x, d.Code, 0, d.Body)
		return false
	}
	closeIfBodyPending(h, x)
	s.count(d.Code)
	h.Set("Content-Length", strconv.Itoa(len(d.Body)))
	if d.Body != "" {
		h.Set("Content-Type", "text/plain")
	}
	x.w.WriteHeader(d.Code)
	io.WriteString(x.w, d.Body)
	return false
}
