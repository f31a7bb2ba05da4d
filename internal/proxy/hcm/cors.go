package hcm

import (
	"net/http"

	"github.com/trellismesh/trellis/internal/proxy/strmatch"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// handleCORS is the route's CORS policy (a VirtualService's corsPolicy,
// an HTTPRoute's CORS filter) as Envoy's CORS filter applies it, right
// after the route is found as the filter sits first in istiod's outbound
// chain: a request with an Origin the policy allows has it remembered for
// the response (corsResponseHeaders); a preflight (OPTIONS with Origin and
// Access-Control-Request-Method) is answered here, 200 with the policy's
// Access-Control-Allow-* headers, unless its origin is not allowed and
// the policy forwards such preflights to the app (Istio's default).
func (s *Server) handleCORS(x *exchange) bool {
	if x.route.CORS == nil {
		return true
	}
	return s.corsPreflight(x, x.route.CORS)
}

func (s *Server) corsPreflight(x *exchange, c *xdsresource.CORSPolicy) bool {
	if !drawn(c.Enabled) {
		return true
	}
	r := x.r
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	allowed := originAllowed(c, origin)
	if allowed {
		x.corsOrigin = origin
	}
	reqMethod := r.Header.Get("Access-Control-Request-Method")
	if r.Method != http.MethodOptions || reqMethod == "" {
		return true
	}
	if !allowed && c.ForwardUnmatched {
		return true
	}
	h := x.w.Header()
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	switch c.AllowMethods {
	case "":
	case "*":
		h.Set("Access-Control-Allow-Methods", reqMethod)
	default:
		h.Set("Access-Control-Allow-Methods", c.AllowMethods)
	}
	switch c.AllowHeaders {
	case "":
	case "*":
		// Envoy echoes the request's list, even an empty one.
		h.Set("Access-Control-Allow-Headers", r.Header.Get("Access-Control-Request-Headers"))
	default:
		h.Set("Access-Control-Allow-Headers", c.AllowHeaders)
	}
	if c.MaxAge != "" {
		h.Set("Access-Control-Max-Age", c.MaxAge)
	}
	if c.AllowPrivateNetwork && r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	// Envoy's filter answers through the encoder filters, its own
	// included, which adds the expose headers of an allowed origin.
	corsResponseHeaders(x, h)
	closeIfBodyPending(h, x)
	h.Set("Content-Length", "0")
	s.count(http.StatusOK)
	x.w.WriteHeader(http.StatusOK)
	return false
}

// originAllowed is Envoy's isOriginAllowed: a matcher that takes "*"
// allows every origin.
func originAllowed(c *xdsresource.CORSPolicy, origin string) bool {
	for _, sm := range c.AllowOrigins {
		m, err := strmatch.Compile(sm)
		if err != nil {
			continue
		}
		if m.Match("*") || m.Match(origin) {
			return true
		}
	}
	return false
}

// corsResponseHeaders adds to a response (the upstream's, or one the
// proxy makes after the route is found) what Envoy's CORS filter adds
// when the request's origin is allowed.
func corsResponseHeaders(x *exchange, h http.Header) {
	if x.corsOrigin == "" {
		return
	}
	c := x.route.CORS
	h.Set("Access-Control-Allow-Origin", x.corsOrigin)
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.ExposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", c.ExposeHeaders)
	}
}
