package hcm

import (
	"context"
	"net/http"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/router"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// exchange is one request on its way through the request path
// (serveHTTP): what each step learns about it and leaves for the steps
// after it. The fast path keeps one per connection and reuses it for
// each request; net/http's requests get one each (serveStd).
type exchange struct {
	w responseWriter
	r *http.Request
	// c is the downstream connection, hc its HTTP/1 state (the smuggling
	// guard's framing, header case); both nil if unknown.
	c  *Conn
	hc *headerConn

	// authenticate's: the request's verified JWTs (nil: none), for
	// authorization's request principals and claims.
	jwt *jwtauthn.Result

	// resolveRoute's
	table *router.Table
	rr    router.Request
	route *xdsresource.Route
	// handleCORS's: the request's Origin when the route's CORS policy
	// allows it, for the response's headers (cors.go).
	corsOrigin string

	// chooseCluster's
	wc        *xdsresource.WeightedCluster
	cl        *upstream.Cluster
	setCookie *http.Cookie
	// call is what the cluster is told besides the request (its hash,
	// chooseCluster's; its destination, applyRequestPolicy's; the fast
	// path's header donor, set with the exchange) and what it answers
	// (the response's header-name spelling).
	call upstream.Call

	// applyRequestPolicy's: the request sent upstream and its context
	// (the route timeout, where an ORIGINAL_DST cluster sends it).
	out  *http.Request
	ctx  context.Context
	grpc bool

	// retries' (retry.go): the route's policy with the caller's controls,
	// and the request's tries.
	retry retryState

	// telemetry's (telemetry.go)
	tel telemetryState

	// callUpstream's and writeResponse's
	resp *http.Response
	h    http.Header // the response header being written
}

// http1 reports whether the request came over HTTP/1.x, where the
// connection's own state (framing, header case, Connection: close)
// applies.
func (x *exchange) http1() bool { return x.r.ProtoMajor == 1 }

// responseWriter is what the request path needs of a response writer
// beyond http.ResponseWriter, so that its steps never ask which writer
// they have. Both writers satisfy it: the fast path's (fastWriter), which
// reuses its connection's timer, header maps and read deadline from
// request to request, and net/http's, wrapped (stdWriter), which makes
// each per request.
type responseWriter interface {
	http.ResponseWriter

	// startTimeout returns ctx ended after d, the request's route
	// timeout; stopTimeout releases it once the request is done.
	startTimeout(ctx context.Context, d time.Duration) context.Context
	stopTimeout()

	// bindBody bounds the reads of the request body by ctx while the
	// upstream is called: the Transport returns only once it stopped
	// reading the body, so a client stalled mid-body would otherwise hold
	// the call past the route timeout. unbindBody lifts it after the
	// call; it returns only once nothing bound to ctx runs any more,
	// since the writer is not to be used after the handler returns
	// (HTTP/2 panics).
	bindBody(ctx context.Context)
	unbindBody(ctx context.Context)

	// adoptHeader makes h, an upstream response's header map that no one
	// reads after, the response's own header map instead of copying it,
	// and reports whether it did.
	adoptHeader(h http.Header) bool

	// sent tells the writer what RoundTrip returned for the request: on
	// the direct path nothing uses the request's header map after, which
	// the fast path's parser then reuses.
	sent(resp *http.Response)

	// result is the final status written (0: none) and the body bytes
	// written after it, for telemetry.
	result() (code int, body int64)
}

// stdWriter is net/http's response writer with what responseWriter adds,
// per request. Unwrap lets http.ResponseController reach the writer's
// own Flush, Hijack and deadlines.
type stdWriter struct {
	http.ResponseWriter
	cancel context.CancelFunc
	body   bodyWatch
	// What was written, for telemetry.
	code    int
	written int64
}

func (w *stdWriter) WriteHeader(code int) {
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *stdWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

func (w *stdWriter) result() (int, int64) { return w.code, w.written }

func (w *stdWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *stdWriter) startTimeout(ctx context.Context, d time.Duration) context.Context {
	ctx, w.cancel = context.WithTimeout(ctx, d)
	return ctx
}

func (w *stdWriter) stopTimeout() {
	if w.cancel != nil {
		w.cancel()
		w.cancel = nil
	}
}

func (w *stdWriter) bindBody(ctx context.Context)   { w.body.start(ctx, w.ResponseWriter) }
func (w *stdWriter) unbindBody(ctx context.Context) { w.body.end() }
func (w *stdWriter) adoptHeader(http.Header) bool   { return false }
func (w *stdWriter) sent(*http.Response)            {}

// bodyWatch ends the reads of a request body when ctx ends, by moving
// the connection's read deadline into the past, as net/http's own
// interrupting deadline does.
type bodyWatch struct {
	stop  func() bool
	fired chan struct{}
}

func (b *bodyWatch) start(ctx context.Context, w http.ResponseWriter) {
	b.fired = make(chan struct{})
	fired := b.fired
	b.stop = context.AfterFunc(ctx, func() {
		defer close(fired)
		http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
	})
}

// end stops the watch, waiting for it when it already fired.
func (b *bodyWatch) end() {
	if b.stop != nil && !b.stop() {
		<-b.fired
	}
	b.stop, b.fired = nil, nil
}

// The fast path's writer: one timer for all of the connection's requests,
// and the connection's read deadline as a request body's bound.

func (w *fastWriter) startTimeout(ctx context.Context, d time.Duration) context.Context {
	w.timed = true
	return w.fc.timer.Start(d)
}

func (w *fastWriter) stopTimeout() {
	if w.timed {
		w.timed = false
		w.fc.timer.Stop()
	}
}

// bindBody: the fast path's requests end only by their deadline (or
// never), so that deadline is the connection's read deadline meanwhile.
func (w *fastWriter) bindBody(ctx context.Context) {
	if dl, ok := upstream.DeadlineOnly(ctx); ok {
		w.fc.hc.setBodyDeadline(dl)
		w.bodyDeadline = true
	} else if ctx.Done() != nil {
		w.body.start(ctx, w)
	}
}

func (w *fastWriter) unbindBody(ctx context.Context) {
	w.body.end()
	if w.bodyDeadline && ctx.Err() == nil {
		w.fc.hc.setBodyDeadline(time.Time{})
	}
	w.bodyDeadline = false
}

func (w *fastWriter) sent(resp *http.Response) {
	if upstream.SentDirect(resp) {
		w.fc.requestHeaderFree = true
	}
}
