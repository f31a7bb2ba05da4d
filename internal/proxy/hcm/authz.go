package hcm

import (
	"io"
	"net/http"
	"net/netip"
	"strings"

	"github.com/trellismesh/trellis/internal/proxy/authz"
)

// rbacDenied is Envoy's local reply body for a request the RBAC filter
// refuses, which clients and tests of Istio meshes look for.
const rbacDenied = "RBAC: access denied"

// authorize is the request path's authorization step (AuthorizationPolicy
// compiled to RBAC): the connection's chain's engine decides on the
// request with its path normalized (normalizePath), before any route is
// looked at, as Envoy's RBAC filter runs before the router. A refusal is Envoy's 403 "RBAC: access
// denied" (PERMISSION_DENIED for gRPC), and the request never reaches the
// app.
func (s *Server) authorize(x *exchange) bool {
	c := x.c
	if c == nil || c.Authz == nil {
		return true
	}
	e := c.Authz()
	if e.Empty() {
		return true
	}
	r := x.r
	// The path as normalizePath left it: the one the app is sent.
	path := requestPath(r)
	req := authz.Request{
		HTTP:      true,
		Method:    r.Method,
		Authority: r.Host,
		Path:      path,
		Header:    r.Header,
		Source:    c.Source,
		Remote:    remoteAddress(r.Header),
		Dst:       c.Dst,
		PeerID:    c.PeerID,
		SNI:       c.SNI,
		JWT:       x.jwt,
	}
	if ext := e.External(&req); ext != nil && !s.askExternal(x, ext) {
		return false
	}
	res := e.Check(&req)
	if res.Audit != "" {
		s.log.Info("authorization audit", "policy", res.Audit, "method", r.Method, "path", path, "peer", c.PeerID, "source", c.Source, "allowed", res.Allowed)
	}
	if res.Allowed {
		return true
	}
	s.log.Debug("request denied by authorization", "filter", res.Filter, "policy", res.Policy, "method", r.Method, "path", path, "peer", c.PeerID, "source", c.Source)
	if isGRPC(r) {
		s.reply(x, http.StatusForbidden, 0, rbacDenied)
		return false
	}
	closeIfBodyPending(x.w.Header(), x)
	s.count(http.StatusForbidden)
	h := x.w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", "19")
	x.w.WriteHeader(http.StatusForbidden)
	io.WriteString(x.w, rbacDenied)
	return false
}

// remoteAddress is Envoy's downstream remote address on a connection
// manager that does not use its own peer's address (use_remote_address
// false, no trusted hops): the last X-Forwarded-For entry. Invalid when
// there is none, which makes the engine use the connection's peer.
func remoteAddress(h http.Header) netip.Addr {
	vals := h["X-Forwarded-For"]
	if len(vals) == 0 {
		return netip.Addr{}
	}
	last := vals[len(vals)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	a, err := netip.ParseAddr(strings.TrimSpace(last))
	if err != nil {
		return netip.Addr{}
	}
	return a
}
