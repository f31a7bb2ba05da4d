package hcm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/http1"
	"github.com/trellismesh/trellis/internal/proxy/router"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/proxy/xxhash"
)

// FlagsHeader carries a locally generated response's flags to the client,
// so that a 503 says which of UH, UF, UO, ... it is without an access log.
const FlagsHeader = "X-Trellis-Flags"

// serveHTTP is the request path, as named steps. Each step reads what
// the steps before it left in x and leaves what the next needs; a step
// that answers the request itself (a local reply, a route's direct
// response or redirect, an upstream error) reports false, which ends the
// request. Retries, mirroring, fault injection, authorization and
// telemetry each become one more step here, not branches inside another.
func (s *Server) serveHTTP(x *exchange) {
	s.stats.RqTotal.Add(1)
	if s.cfg.Telemetry != nil {
		s.startTelemetry(x)
		defer s.endTelemetry(x)
	}
	if x.r.Method == http.MethodConnect && x.http1() {
		s.connect(x)
		return
	}
	if !s.normalizePath(x) || !s.authenticate(x) || !s.authorize(x) || !s.resolveRoute(x) || !s.handleCORS(x) || !s.injectFault(x) || !s.answerFromRoute(x) || !s.chooseCluster(x) || !s.applyRequestPolicy(x) || !s.mirrorRequest(x) {
		return
	}
	defer x.w.stopTimeout()
	defer x.retry.end()
	if !s.callUpstream(x) {
		return
	}
	defer x.resp.Body.Close()
	if x.tel.on && x.grpc {
		// Its messages are counted as they go to the client.
		x.resp.Body = &countingBody{ReadCloser: x.resp.Body, grpc: true}
	}
	if !s.writeResponse(x) {
		return
	}
	s.copyBodyAndTrailers(x)
}

// connect hands a CONNECT request to the listener's Connect (the forward
// proxy's tunnels), or refuses it.
func (s *Server) connect(x *exchange) {
	if s.cfg.Connect == nil || x.c == nil {
		closeIfBodyPending(x.w.Header(), x)
		s.local(x.w, http.StatusMethodNotAllowed, 0, "CONNECT is not served on this listener")
		return
	}
	s.stats.Rq2xx.Add(1)
	s.cfg.Connect(x.w, x.r, x.c)
}

// resolveRoute finds the request's route: the connection's route table
// (or, for the forward proxy, the one the Server's Routes picks), its
// virtual host by authority and its first route that matches. Without one
// the answer is 404 (NR).
func (s *Server) resolveRoute(x *exchange) bool {
	r, c := x.r, x.c
	var table *router.Table
	switch {
	case c != nil && c.Routes != nil:
		table = c.Routes()
	case s.cfg.Routes != nil:
		table = s.cfg.Routes(c, r)
	}
	x.rr = router.Request{
		Method:    r.Method,
		Authority: r.Host,
		Path:      requestPath(r),
		Scheme:    router.SchemeOf(r.RequestURI, r.Header.Values("X-Forwarded-Proto"), r.TLS != nil),
		Header:    r.Header,
	}
	if c != nil {
		x.rr.SourceIP = c.Source.Addr()
	}
	if table == nil {
		s.noRoute(x, "no route configuration for this port yet")
		return false
	}
	vh, route := table.Match(&x.rr)
	if route == nil {
		where := "no virtual host in route configuration " + table.Config().Name + " matches this authority"
		if vh != nil {
			where = "no route of virtual host " + vh.Name + " (route configuration " + table.Config().Name + ") matches"
		}
		s.noRoute(x, where)
		return false
	}
	x.table, x.route = table, route
	return true
}

// answerFromRoute answers a route whose action is the answer itself: a
// direct response or a redirect.
func (s *Server) answerFromRoute(x *exchange) bool {
	route, w := x.route, x.w
	switch {
	case route.Direct != nil:
		s.count(route.Direct.Status)
		applyResponseHeaders(w.Header(), route.ResponseHeadersToAdd, route.ResponseHeadersToRemove)
		corsResponseHeaders(x, w.Header()) // cors.go
		if len(route.Direct.Body) > 0 {
			w.Header().Set("Content-Length", strconv.Itoa(len(route.Direct.Body)))
			w.Header().Set("Content-Type", "text/plain")
		}
		closeIfBodyPending(w.Header(), x)
		w.WriteHeader(route.Direct.Status)
		w.Write(route.Direct.Body)
		return false
	case route.Redirect != nil:
		s.redirect(x)
		return false
	}
	return true
}

// chooseCluster picks the route's weighted cluster and its hash key
// (generating the hash policy's cookie when the request has none). It
// comes before the request policy because a weighted cluster has header
// operations of its own. A route without a cluster of weight, or a
// cluster not (yet) known, is 503 (NC).
func (s *Server) chooseCluster(x *exchange) bool {
	a := x.route.Action
	wc := router.PickCluster(a, rand.Uint64())
	if wc == nil {
		s.stats.NoCluster.Add(1)
		s.reply(x, http.StatusServiceUnavailable, upstream.NoHealthyUpstream, "route "+x.route.Name+" has no cluster with weight")
		return false
	}
	var cl *upstream.Cluster
	if s.cfg.Cluster != nil {
		cl = s.cfg.Cluster(wc.Name)
	}
	if cl == nil {
		s.stats.NoCluster.Add(1)
		s.reply(x, http.StatusServiceUnavailable, upstream.NoHealthyUpstream, "cluster "+wc.Name+" not found (not yet received or removed)")
		return false
	}
	x.wc, x.cl = wc, cl
	x.call.Hash, x.call.HasHash = x.table.Hash(a, &x.rr)
	if !x.call.HasHash {
		if hp := cookieToGenerate(a); hp != nil {
			v := strconv.FormatUint(rand.Uint64(), 16)
			x.call.Hash, x.call.HasHash = xxhash.Sum64(v, 0), true
			x.setCookie = &http.Cookie{Name: hp.Name, Value: v, Path: hp.CookiePath, MaxAge: int(hp.CookieTTL / time.Second), HttpOnly: true}
		}
	}
	return true
}

// applyRequestPolicy makes the request that goes upstream (headers by
// the route's and cluster's rules, path and host rewrites, header case)
// and its context, the route timeout (grpc-timeout for gRPC, capped by
// the route's), and says where an ORIGINAL_DST cluster sends it.
func (s *Server) applyRequestPolicy(x *exchange) bool {
	r := x.r
	out, err := s.outboundRequest(x)
	if err != nil {
		s.reply(x, http.StatusBadRequest, 0, err.Error())
		return false
	}
	x.out = out
	ctx := r.Context()
	if rp := x.route.Action.Retry; rp != nil {
		x.retry.on, x.retry.policy = true, *rp
	}
	timeout := s.callerControls(x, out.Header, x.route.Action.Timeout) // retry.go
	x.grpc = isGRPC(r)
	if x.grpc {
		// Istio has Envoy honour grpc-timeout, capped by the route's
		// timeout when there is one (grpc_timeout_header_max), so a call
		// past its deadline ends as DEADLINE_EXCEEDED at every hop.
		if gt, ok := grpcTimeout(r.Header); ok && (timeout <= 0 || gt < timeout) {
			timeout = max(gt, time.Nanosecond)
		}
	}
	if timeout > 0 && !isUpgradeRequest(r) {
		ctx = x.w.startTimeout(ctx, timeout)
	}
	// Inbound requests always carry it: a cluster an update removes
	// hands them to the app's passthrough, an ORIGINAL_DST cluster.
	if x.cl.OriginalDst() || !s.cfg.Outbound {
		if x.c != nil && x.c.Dst.IsValid() {
			x.call.Dst = x.c.Dst
		} else if dst, ok := destinationOf(r); ok {
			x.call.Dst = dst
		}
	}
	// out gets ctx from RoundTrip, and only on the path that needs it in
	// the request (the Transport's): a copy of the request per request is
	// an allocation the direct path does without.
	x.ctx = ctx
	if out.Body != nil && x.http1() {
		// Request and response may stream at once (long polls, gRPC-Web),
		// which net/http's HTTP/1 server allows only when told.
		http.NewResponseController(x.w).EnableFullDuplex()
	}
	// Header names as the client spelled them (see http1/headercase.go).
	if x.hc != nil && x.http1() {
		http1.RestoreRequestNames(out.Header, x.hc.requestNames)
	}
	return true
}

// callUpstream sends the request to the cluster, trying again as the
// route's retry policy says (retry.go), and answers the last try's
// failure (503 with the flags that say why, 504 on a timeout).
func (s *Server) callUpstream(x *exchange) bool {
	s.startRetries(x)
	rs := &x.retry
	for {
		ctx := rs.tryContext(x.ctx)
		// Requests without a body (most) have no read to end and skip this.
		if x.out.Body != nil {
			x.w.bindBody(ctx)
		}
		resp, flags, err := x.cl.RoundTrip(ctx, x.out, &x.call)
		if x.out.Body != nil {
			x.w.unbindBody(ctx)
		}
		v := s.retryAfter(x, ctx, resp, flags, err)
		if v == retryAgain {
			if resp != nil {
				resp.Body.Close()
			}
			if !rs.backoff(x.ctx, rs.retries) {
				// The route's deadline or the client ended the wait; the
				// retry's slot goes back unused.
				rs.slot = false
				x.cl.EndRetry(false)
				flags = upstream.DownstreamConnectionTermination
				if errors.Is(x.ctx.Err(), context.DeadlineExceeded) {
					flags = upstream.UpstreamRequestTimeout
				}
				s.upstreamError(x, flags, x.ctx.Err())
				return false
			}
			rs.nextTry(x)
			continue
		}
		rs.gaveUpFlags, rs.detail = rs.gaveUp(v)
		if err != nil {
			if x.hc != nil && x.http1() && x.hc.trailersRefused() {
				// The body failed on a trailer section net/http refused
				// (counted then, see http1.Framing): the client's doing,
				// answered as Envoy answers trailers over the limit. The body
				// never ended, so reply closes the connection
				// (closeIfBodyPending).
				s.reply(x, http.StatusRequestHeaderFieldsTooLarge, 0, "request trailer section over 4 KiB")
				return false
			}
			s.upstreamError(x, flags, err)
			return false
		}
		if rs.gaveUpFlags != 0 {
			// The answer goes on as the app gave it, saying why it was
			// not tried again.
			resp.Header.Set(FlagsHeader, rs.gaveUpFlags.String())
		}
		x.ctx = ctx
		x.resp = resp
		x.w.sent(resp)
		return true
	}
}

// writeResponse writes the upstream's response head to the client, with
// the route's and cluster's header rules, the hash policy's cookie and
// the header case the upstream used; a 101 goes on as an upgrade, which
// ends the request here.
func (s *Server) writeResponse(x *exchange) bool {
	resp, w, r := x.resp, x.w, x.r
	// The upgrade a 101 names goes with the hop-by-hop headers that the
	// copy strips, and is said again on the client's hop.
	var switchTo string
	if resp.StatusCode == http.StatusSwitchingProtocols {
		switchTo = upgradeType(resp.Header)
	}
	var h http.Header
	if w.adoptHeader(resp.Header) {
		// The writer takes the upstream's map as its own instead of
		// copying it, entry by entry, into an empty one.
		h = resp.Header
		stripResponseHeaders(h)
	} else {
		h = w.Header()
		copyResponseHeaders(h, resp.Header)
	}
	x.h = h
	applyResponseHeaders(h, x.route.ResponseHeadersToAdd, x.route.ResponseHeadersToRemove)
	applyResponseHeaders(h, x.wc.ResponseHeadersToAdd, x.wc.ResponseHeadersToRemove)
	corsResponseHeaders(x, h) // cors.go
	if x.setCookie != nil {
		h.Add("Set-Cookie", x.setCookie.String())
	}
	if s.draining.Load() && x.http1() {
		h.Set("Connection", "close")
	}
	if x.http1() && resp.ProtoMajor == 1 {
		http1.RestoreResponseNames(h, x.call.ResponseNames)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		s.count(resp.StatusCode)
		s.upgrade(w, r, resp, switchTo)
		return false
	}
	closeIfBodyPending(h, x) // the upstream may answer early
	s.count(resp.StatusCode)
	w.WriteHeader(resp.StatusCode)
	return true
}

// copyBodyAndTrailers streams the response body to the client, then the
// upstream's trailers. A body cut short after the head went out can only
// be told by aborting the stream or connection, except for gRPC past its
// deadline, whose status goes in the trailers.
func (s *Server) copyBodyAndTrailers(x *exchange) {
	h := x.h
	if err := copyBody(x.w, x.resp); err != nil {
		if x.grpc && x.r.ProtoMajor == 2 && deadlinePassed(x.ctx) {
			// The headers went out; the gRPC status goes in the trailers.
			s.stats.RqTimeout.Add(1)
			h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(grpcDeadlineExceeded))
			h.Set(http.TrailerPrefix+"Grpc-Message", "upstream request timeout")
			return
		}
		if !errors.Is(err, context.Canceled) {
			s.log.Debug("response body cut", "cluster", x.cl.Name(), "err", err)
		}
		panic(http.ErrAbortHandler)
	}
	copyTrailers(h, x.resp.Trailer)
}

// requestPath is the :path the router matches: the request target as
// received, without scheme and authority when it came in absolute form
// (a forward-proxy request).
func requestPath(r *http.Request) string {
	p := r.RequestURI
	if p == "" || p[0] == '/' || p == "*" {
		if p == "" {
			return r.URL.RequestURI()
		}
		return p
	}
	if i := strings.Index(p, "://"); i >= 0 {
		rest := p[i+3:]
		if j := strings.IndexAny(rest, "/?"); j >= 0 {
			if rest[j] == '?' {
				return "/" + rest[j:]
			}
			return rest[j:]
		}
		return "/"
	}
	return r.URL.RequestURI()
}

func (s *Server) noRoute(x *exchange, why string) {
	s.stats.NoRoute.Add(1)
	s.reply(x, http.StatusNotFound, upstream.NoRouteFound, fmt.Sprintf("no route for %s%s: %s", x.r.Host, x.r.URL.Path, why))
}

// local answers from the proxy itself, naming the flags in a header and
// the reason in the body, as Envoy's local replies do.
func (s *Server) local(w http.ResponseWriter, status int, flags upstream.Flags, msg string) {
	s.count(status)
	h := w.Header()
	if flags != 0 {
		h.Set(FlagsHeader, flags.String())
	}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(msg)+1))
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// closeIfBodyPending marks an HTTP/1 response that goes out before its
// request's body has been read to the end (a local reply, a redirect, a
// route timeout while the body is still coming, an upstream that answers
// early) to close the connection after it, as Envoy closes an HTTP/1
// connection whose response ends before its request. Keeping it would
// leave net/http, which serves full duplex, to discard the rest of the
// body after the handler and, if that fails (a malformed chunk, a body
// that stalls), to read on from the middle of it as if a request started
// there.
func closeIfBodyPending(h http.Header, x *exchange) {
	if !x.http1() {
		return
	}
	if hc := x.hc; hc != nil && !hc.fast && hc.bodyPending() {
		h.Set("Connection", "close")
	}
}

func (s *Server) count(status int) {
	switch {
	case status < 200:
		s.stats.Rq1xx.Add(1)
	case status < 300:
		s.stats.Rq2xx.Add(1)
	case status < 400:
		s.stats.Rq3xx.Add(1)
	case status < 500:
		s.stats.Rq4xx.Add(1)
	default:
		s.stats.Rq5xx.Add(1)
	}
}

func (s *Server) redirect(x *exchange) {
	route, r, w := x.route, x.r, x.w
	rd := route.Redirect
	loc := router.RedirectLocation(route, x.rr.Scheme, r.Host, r.URL.EscapedPath(), r.URL.RawQuery)
	code := rd.Code
	if code == 0 {
		code = http.StatusMovedPermanently
	}
	applyResponseHeaders(w.Header(), route.ResponseHeadersToAdd, route.ResponseHeadersToRemove)
	corsResponseHeaders(x, w.Header()) // cors.go
	w.Header().Set("Location", loc)
	closeIfBodyPending(w.Header(), x)
	s.count(code)
	w.WriteHeader(code)
}

// destinationOf is the forward proxy's target for ORIGINAL_DST clusters:
// the request's authority when it is an IP address.
func destinationOf(r *http.Request) (netip.AddrPort, bool) {
	host := r.Host
	if ap, err := netip.ParseAddrPort(host); err == nil {
		return ap, true
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return netip.AddrPortFrom(a, 80), true
	}
	return netip.AddrPort{}, false
}

func cookieToGenerate(a *xdsresource.RouteAction) *xdsresource.HashPolicy {
	for i := range a.HashPolicies {
		hp := &a.HashPolicies[i]
		if hp.Kind == xdsresource.HashCookie && hp.CookieTTL > 0 {
			return hp
		}
	}
	return nil
}

func (s *Server) upstreamError(x *exchange, flags upstream.Flags, err error) {
	cluster := x.cl.Name()
	// Why the last failure was not tried again (retry.go), if it was
	// retriable: its flag joins the reply's, its detail ends the message.
	extra, detail := x.retry.gaveUpFlags, x.retry.detail
	if detail != "" {
		detail = "; " + detail
	}
	switch {
	case flags&upstream.DownstreamConnectionTermination != 0:
		// The client is gone; nobody reads an answer.
		panic(http.ErrAbortHandler)
	case flags&upstream.UpstreamRequestTimeout != 0:
		s.stats.RqTimeout.Add(1)
		s.reply(x, http.StatusGatewayTimeout, flags|extra, "upstream request timeout (cluster "+cluster+")"+detail)
	case flags&upstream.NoHealthyUpstream != 0:
		s.stats.NoHealthyUpstream.Add(1)
		s.reply(x, http.StatusServiceUnavailable, flags|extra, "no healthy upstream (cluster "+cluster+")"+detail)
	case flags&upstream.UpstreamOverflow != 0:
		s.stats.Overflow.Add(1)
		s.reply(x, http.StatusServiceUnavailable, flags|extra, "upstream overflow: a circuit breaker of cluster "+cluster+" is open"+detail)
	case flags&upstream.UpstreamConnectionFailure != 0:
		s.stats.UpstreamConnectFailures.Add(1)
		s.reply(x, http.StatusServiceUnavailable, flags|extra, "upstream connect error or disconnect/reset before headers. reset reason: connection failure (cluster "+cluster+": "+err.Error()+")"+detail)
	default:
		s.reply(x, http.StatusServiceUnavailable, flags|extra, "upstream connect error or disconnect/reset before headers. reset reason: connection termination (cluster "+cluster+": "+err.Error()+")"+detail)
	}
}

// outboundRequest turns the server request into the client request sent
// upstream. It takes over r's header map: the handler owns it and nothing
// reads it after this.
func (s *Server) outboundRequest(x *exchange) (*http.Request, error) {
	r, c, route, wc := x.r, x.c, x.route, x.wc
	h := r.Header
	upgrade := upgradeType(h)
	removeHopByHop(h)
	if upgrade != "" {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", upgrade)
	}
	// The fast path's parser left room for the values added here.
	var spare []string
	if hc := x.hc; hc != nil && hc.spare != nil {
		spare, hc.spare = hc.spare, nil
	}
	one := func(v string) []string {
		if len(spare) == 0 {
			return []string{v}
		}
		vv := spare[:1:1]
		spare = spare[1:]
		vv[0] = v
		return vv
	}
	if s.cfg.Outbound {
		if c != nil && c.Source.IsValid() {
			if prior, ok := h["X-Forwarded-For"]; ok && len(prior) > 0 {
				appendForwardedFor(h, c.Source.Addr())
			} else {
				h["X-Forwarded-For"] = one(c.sourceIP())
			}
		}
		if h.Get("X-Request-Id") == "" {
			h["X-Request-Id"] = one(newRequestID())
		}
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		h["X-Forwarded-Proto"] = one("http")
	}
	s.forwardClientCert(h, c)
	applyRequestHeaders(h, route.RequestHeadersToAdd, route.RequestHeadersToRemove)
	applyRequestHeaders(h, wc.RequestHeadersToAdd, wc.RequestHeadersToRemove)

	o := &outbound{url: url.URL{Scheme: "http", Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}}
	u := &o.url
	if a := route.Action; a.PrefixRewrite != "" || a.RegexRewrite != nil {
		path := rewritePath(r.URL.EscapedPath(), route)
		pu, err := url.Parse(path)
		if err != nil {
			return nil, fmt.Errorf("rewritten path %q: %w", path, err)
		}
		u.Path, u.RawPath = pu.Path, pu.RawPath
	}
	host := r.Host
	if route.Action.HostRewrite != "" {
		host = route.Action.HostRewrite
	}
	o.req = http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         r.Proto,
		ProtoMajor:    r.ProtoMajor,
		ProtoMinor:    r.ProtoMinor,
		Header:        h,
		Body:          r.Body,
		ContentLength: r.ContentLength,
		Host:          host,
		Trailer:       r.Trailer,
	}
	out := &o.req
	if r.ContentLength == 0 {
		out.Body = nil // no body, as the Transport wants it
	}
	return out, nil
}

// outbound is a request sent upstream with its URL, in one allocation.
type outbound struct {
	req http.Request
	url url.URL
}

func rewritePath(path string, route *xdsresource.Route) string {
	a := route.Action
	if a.RegexRewrite != nil {
		return a.RegexRewrite.ReplaceAllString(path, a.RegexSubstitution)
	}
	m := route.Match
	switch m.PathKind {
	case xdsresource.PathExact:
		return a.PrefixRewrite
	case xdsresource.PathPrefix, xdsresource.PathSeparatedPrefix:
		if len(path) >= len(m.Path) {
			rest := path[len(m.Path):]
			if m.PathKind == xdsresource.PathSeparatedPrefix && strings.HasSuffix(a.PrefixRewrite, "/") && strings.HasPrefix(rest, "/") {
				rest = rest[1:]
			}
			return a.PrefixRewrite + rest
		}
	}
	return a.PrefixRewrite
}

func isUpgradeRequest(r *http.Request) bool { return upgradeType(r.Header) != "" }

// copyBody streams the response, flushing after every read when the
// response is a stream (no length: gRPC, server-sent events, chunked
// progress) so nothing waits in a buffer for bytes that may never come.
func copyBody(w http.ResponseWriter, resp *http.Response) error {
	stream := resp.ContentLength < 0
	buf := getBuf()
	defer putBuf(buf)
	rc := http.NewResponseController(w)
	for {
		n, rerr := resp.Body.Read(*buf)
		if n > 0 {
			if _, err := w.Write((*buf)[:n]); err != nil {
				return err
			}
			if stream {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// reply is local for request r: a gRPC request gets a trailers-only gRPC
// response whose grpc-status stands for the HTTP status (Envoy's mapping),
// since a gRPC client cannot read a text/plain answer.
func (s *Server) reply(x *exchange, status int, flags upstream.Flags, msg string) {
	w, r := x.w, x.r
	x.tel.flags |= flags
	closeIfBodyPending(w.Header(), x)
	corsResponseHeaders(x, w.Header()) // cors.go
	if d := responseDetails(status, flags, x.retry.detail); d != "" {
		w.Header().Set(DetailsHeader, d)
	}
	if !isGRPC(r) {
		s.local(w, status, flags, msg)
		return
	}
	s.count(status)
	h := w.Header()
	if flags != 0 {
		h.Set(FlagsHeader, flags.String())
	}
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(grpcStatus(status, flags)))
	h.Set("Grpc-Message", grpcMessage(msg))
	w.WriteHeader(http.StatusOK)
}

// DetailsHeader carries a local reply's reason in Envoy's response code
// details (%RESPONSE_CODE_DETAILS%), with why a retriable failure was not
// tried again after it, so that a program can tell one 503 from another.
const DetailsHeader = "X-Trellis-Details"

// responseDetails is Envoy's response code details for a local reply
// with flags, and the retry step's detail if any.
func responseDetails(status int, flags upstream.Flags, retry string) string {
	var d string
	switch {
	case flags&upstream.UpstreamConnectionFailure != 0:
		d = "upstream_reset_before_response_started{connection_failure}"
	case flags&upstream.UpstreamRequestTimeout != 0:
		d = "upstream_response_timeout"
	case flags&upstream.NoHealthyUpstream != 0:
		d = "no_healthy_upstream"
	case flags&upstream.UpstreamOverflow != 0:
		d = "upstream_reset_before_response_started{overflow}"
	case flags&upstream.NoRouteFound != 0:
		d = "route_not_found"
	case flags&upstream.FaultInjected != 0:
		d = "fault_filter_abort"
	case flags&upstream.UpstreamConnectionTermination != 0, status == http.StatusServiceUnavailable && flags&upstream.UpstreamRetryLimitExceeded != 0:
		d = "upstream_reset_before_response_started{connection_termination}"
	}
	if retry != "" {
		if d == "" {
			return retry
		}
		return d + "; " + retry
	}
	return d
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

const grpcDeadlineExceeded = 4

// deadlineSlack is how near its deadline a gRPC stream that fails counts
// as timed out. Every hop (client, both sidecars, the server) derives its
// own deadline from grpc-timeout, rounded to the header's units, so the
// hop behind us may give up (and reset the stream) a moment before our
// own timer fires; the client must still see DEADLINE_EXCEEDED, not a
// reset.
const deadlineSlack = 20 * time.Millisecond

// deadlinePassed says whether ctx ended by its deadline, or failed within
// deadlineSlack of it.
func deadlinePassed(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < deadlineSlack
}

// grpcStatus is Envoy's Grpc::Utility::httpToGrpcStatus, except that an
// upstream timeout is DEADLINE_EXCEEDED: with grpc-timeout honoured, it is
// the call's own deadline that passed.
func grpcStatus(status int, flags upstream.Flags) int {
	if flags&upstream.UpstreamRequestTimeout != 0 {
		return grpcDeadlineExceeded
	}
	switch status {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// grpcMessage percent-encodes msg as the gRPC spec wants grpc-message.
func grpcMessage(msg string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// grpcTimeout parses a grpc-timeout header: up to 8 digits and a unit.
func grpcTimeout(h http.Header) (time.Duration, bool) {
	v := h.Get("Grpc-Timeout")
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > int64(math.MaxInt64/unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}
