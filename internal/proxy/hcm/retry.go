package hcm

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Retries, as Envoy's router makes them for a route's retry policy: the
// request is tried again when an answer or a failure meets one of the
// policy's conditions, while retries are left (num_retries), the body can
// be sent again, and the cluster has a retry slot (its retry budget or
// max_retries). Each try has its own per-try timeout inside the route's
// timeout, which bounds them all; a retry waits a jittered back-off first
// and prefers a host not tried yet (previous_hosts). What the client gets
// is the last try's answer, or, when that was a failure, a local reply
// saying why no more tries were made.

// maxRetryBody bounds the request body kept for sending again. A body
// that grows past it is still sent, but the request is not retried once
// it has been: Envoy's bound is its 1 MiB connection buffer, ours is kept
// smaller to hold the sidecar's memory budget under many uploads at once.
const maxRetryBody = 64 << 10

// The headers a trusted caller steers retries and timeouts with, as
// Envoy's router reads them. They are removed from every request before
// it goes on, so they never reach the next hop.
const (
	hdrMaxRetries       = "X-Envoy-Max-Retries"
	hdrRetryOn          = "X-Envoy-Retry-On"
	hdrRetryGRPCOn      = "X-Envoy-Retry-Grpc-On"
	hdrTimeoutMs        = "X-Envoy-Upstream-Rq-Timeout-Ms"
	hdrPerTryTimeoutMs  = "X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms"
	hdrRetriableHeaders = "X-Envoy-Retriable-Header-Names"
)

// retryState is one request's retries.
type retryState struct {
	on     bool // the request may be retried
	policy xdsresource.RetryPolicy
	// retriableHeaders is the caller's x-envoy-retriable-header-names.
	retriableHeaders string
	retries          uint32 // retries made
	slot             bool   // a retry slot of the cluster is held
	body             *retryBody
	tried            [4]*balance.Host
	cancel           context.CancelFunc // the current try's per-try timeout
	// gaveUpFlags and detail say why a retriable last try was not made
	// again, for the reply or the answer (gaveUp).
	gaveUpFlags upstream.Flags
	detail      string
}

// end releases what the request's tries held, once it is done.
func (rs *retryState) end() {
	if rs.cancel != nil {
		rs.cancel()
		rs.cancel = nil
	}
	if rs.body != nil {
		rs.body.release()
		rs.body = nil
	}
}

// trustedCaller says whether the request's x-envoy-* controls are
// honoured: on the outbound side they come from the pod's own app, the
// caller the sidecar works for; on the inbound side only from a mesh
// peer that proved its identity over mTLS.
func (s *Server) trustedCaller(x *exchange) bool {
	return s.cfg.Outbound || (x.c != nil && x.c.PeerID != "")
}

// callerControls reads the trusted caller's retry and timeout headers
// from h (the request about to go upstream) and removes them all, trusted
// or not. timeout is the route's; the header's, when there is one,
// replaces it, as in Envoy (0 there means none).
func (s *Server) callerControls(x *exchange, h http.Header, timeout time.Duration) time.Duration {
	if !hasEnvoyControls(h) {
		return timeout
	}
	trusted := s.trustedCaller(x)
	rs := &x.retry
	if trusted {
		if v := h.Get(hdrTimeoutMs); v != "" {
			if ms, err := strconv.ParseUint(v, 10, 32); err == nil {
				timeout = time.Duration(ms) * time.Millisecond
			}
		}
		if !rs.on && (h.Get(hdrRetryOn) != "" || h.Get(hdrRetryGRPCOn) != "") {
			// As in Envoy, the caller's conditions retry a route that
			// has no policy of its own, with the defaults of one.
			rs.on = true
			rs.policy = xdsresource.RetryPolicy{NumRetries: 1, HostSelectionAttempts: 1,
				BackoffBase: xdsresource.DefaultRetryBaseInterval, BackoffMax: 10 * xdsresource.DefaultRetryBaseInterval}
		}
		if rs.on {
			if v := h.Get(hdrMaxRetries); v != "" {
				if n, err := strconv.ParseUint(v, 10, 32); err == nil {
					rs.policy.NumRetries = uint32(n)
				}
			}
			// Envoy adds the header's conditions to the route's and
			// ignores tokens it does not know.
			for _, name := range []string{hdrRetryOn, hdrRetryGRPCOn} {
				for tok := range strings.SplitSeq(h.Get(name), ",") {
					if on, bad := xdsresource.ParseRetryOn(tok); bad == "" {
						rs.policy.On |= on
					}
				}
			}
			if v := h.Get(hdrPerTryTimeoutMs); v != "" {
				if ms, err := strconv.ParseUint(v, 10, 32); err == nil {
					rs.policy.PerTryTimeout = time.Duration(ms) * time.Millisecond
				}
			}
			rs.retriableHeaders = h.Get(hdrRetriableHeaders)
		}
	}
	for _, name := range []string{hdrMaxRetries, hdrRetryOn, hdrRetryGRPCOn, hdrTimeoutMs, hdrPerTryTimeoutMs, hdrRetriableHeaders} {
		delete(h, name)
	}
	return timeout
}

// hasEnvoyControls is a quick look for any of the controls, so that the
// common request pays one map lookup per name only when it has one of
// the prefix's headers at all.
func hasEnvoyControls(h http.Header) bool {
	for k := range h {
		if len(k) > 8 && k[:8] == "X-Envoy-" {
			return true
		}
	}
	return false
}

// startRetries readies the request's retries: the route's policy (set
// by applyRequestPolicy, possibly changed by the caller's controls), the
// body kept for sending again, and the hosts tried. Upgrades are never
// retried: their answer is a connection.
func (s *Server) startRetries(x *exchange) {
	rs := &x.retry
	if !rs.on || rs.policy.NumRetries == 0 || isUpgradeRequest(x.r) {
		rs.on = false
		return
	}
	if b := x.out.Body; b != nil && b != http.NoBody {
		rs.body = newRetryBody(b)
		x.out.Body = rs.body.view()
	}
	if rs.policy.PreviousHosts {
		x.call.Tried = rs.tried[:0]
		x.call.Reselect = rs.policy.HostSelectionAttempts
	}
	x.call.AvoidPriorities = rs.policy.PreviousPriorities
}

// tryContext is the context of one try: the request's, bounded by the
// per-try timeout when there is one.
func (rs *retryState) tryContext(ctx context.Context) context.Context {
	if rs.cancel != nil {
		rs.cancel()
		rs.cancel = nil
	}
	if !rs.on || rs.policy.PerTryTimeout <= 0 {
		return ctx
	}
	ctx, rs.cancel = context.WithTimeout(ctx, rs.policy.PerTryTimeout)
	return ctx
}

// retryVerdict is what retryAfter decided about one try.
type retryVerdict int

const (
	deliver     retryVerdict = iota // the try's outcome is the request's
	retryAgain                      // try again
	gaveUpLimit                     // retriable, but num_retries are spent (URX)
	gaveUpSlot                      // retriable, but the cluster has no retry slot (UO)
	gaveUpBody                      // retriable, but the body cannot be sent again
)

// retryAfter decides whether the try that ended with resp or err (its
// flags) is to be made again. tryCtx is the try's context.
func (s *Server) retryAfter(x *exchange, tryCtx context.Context, resp *http.Response, flags upstream.Flags, err error) retryVerdict {
	rs := &x.retry
	var retriable bool
	if err != nil {
		retriable = rs.on && x.ctx.Err() == nil && rs.retriesFailure(tryCtx, flags, err)
	} else {
		retriable = rs.retriesResponse(resp)
	}
	if rs.slot {
		// The retry this try was ends: a success when its answer goes on.
		rs.slot = false
		x.cl.EndRetry(err == nil && !retriable)
	}
	if !retriable {
		return deliver
	}
	switch {
	case rs.retries >= rs.policy.NumRetries:
		return gaveUpLimit
	case rs.body != nil && !rs.body.replayable():
		return gaveUpBody
	case !x.cl.StartRetry():
		return gaveUpSlot
	}
	rs.slot = true
	rs.retries++
	return retryAgain
}

// retriesFailure says whether a try that got no answer is retried.
func (rs *retryState) retriesFailure(tryCtx context.Context, flags upstream.Flags, err error) bool {
	on := rs.policy.On
	if rs.body != nil && rs.body.failed() {
		return false // the client's body failed, not the upstream
	}
	switch {
	case flags&(upstream.UpstreamOverflow|upstream.NoHealthyUpstream|upstream.DownstreamConnectionTermination) != 0:
		// Envoy retries neither a circuit breaker's refusal nor a
		// cluster without hosts.
		return false
	case flags&upstream.UpstreamRequestTimeout != 0:
		// Only a per-try timeout comes here (the request's own deadline
		// was checked first); Envoy retries it as a reset.
		return tryCtx.Err() != nil && on&(xdsresource.Retry5xx|xdsresource.RetryGatewayError|xdsresource.RetryReset) != 0
	case flags&upstream.UpstreamConnectionFailure != 0:
		return on&(xdsresource.Retry5xx|xdsresource.RetryGatewayError|xdsresource.RetryReset|xdsresource.RetryConnectFailure|xdsresource.RetryResetBeforeRequest) != 0
	}
	if on&(xdsresource.Retry5xx|xdsresource.RetryGatewayError|xdsresource.RetryReset) != 0 {
		return true
	}
	return on&xdsresource.RetryRefusedStream != 0 && strings.Contains(err.Error(), "REFUSED_STREAM")
}

// retriesResponse says whether an answer is retried: by its status, its
// gRPC status (a trailers-only answer's), or a header.
func (rs *retryState) retriesResponse(resp *http.Response) bool {
	if resp == nil || !rs.on {
		return false
	}
	p := &rs.policy
	if resp.StatusCode >= 400 && p.RetriesStatus(resp.StatusCode) {
		return true
	}
	if p.On&grpcConditions != 0 {
		if v := resp.Header["Grpc-Status"]; len(v) > 0 {
			if bit, ok := grpcRetryBits[v[0]]; ok && p.On&bit != 0 {
				return true
			}
		}
	}
	if p.On&xdsresource.RetryEnvoyRateLimited != 0 && resp.Header.Get("X-Envoy-Ratelimited") != "" {
		return true
	}
	if p.On&xdsresource.RetryRetriableHeaders != 0 && rs.retriableHeaders != "" {
		for name := range strings.SplitSeq(rs.retriableHeaders, ",") {
			if name = strings.TrimSpace(name); name != "" && resp.Header.Get(name) != "" {
				return true
			}
		}
	}
	return false
}

const grpcConditions = xdsresource.RetryGRPCCancelled | xdsresource.RetryGRPCDeadlineExceeded |
	xdsresource.RetryGRPCResourceExhausted | xdsresource.RetryGRPCInternal | xdsresource.RetryGRPCUnavailable

var grpcRetryBits = map[string]xdsresource.RetryOn{
	"1":  xdsresource.RetryGRPCCancelled,
	"4":  xdsresource.RetryGRPCDeadlineExceeded,
	"8":  xdsresource.RetryGRPCResourceExhausted,
	"13": xdsresource.RetryGRPCInternal,
	"14": xdsresource.RetryGRPCUnavailable,
}

// backoff waits before retry n (1-based): random in [0, min(base·(2ⁿ−1),
// max)], Envoy's fully jittered exponential back-off. It reports false
// when the request's context ended first.
func (rs *retryState) backoff(ctx context.Context, n uint32) bool {
	p := &rs.policy
	ceiling := p.BackoffMax
	if n < 31 {
		if d := p.BackoffBase * time.Duration(1<<n-1); d > 0 && d < ceiling {
			ceiling = d
		}
	}
	if ceiling <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(rand.N(ceiling + 1))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// nextTry readies the request for its next try: the body from its start.
func (rs *retryState) nextTry(x *exchange) {
	if rs.body != nil {
		x.out.Body = rs.body.view()
	}
}

// gaveUp is the detail a reply or answer carries when a retriable try was
// not made again, and the flag Envoy logs for it.
func (rs *retryState) gaveUp(v retryVerdict) (upstream.Flags, string) {
	tries := strconv.Itoa(int(rs.retries) + 1)
	switch v {
	case gaveUpLimit:
		return upstream.UpstreamRetryLimitExceeded, "retries exhausted after " + tries + " tries"
	case gaveUpSlot:
		return upstream.UpstreamOverflow, "retry budget exhausted after " + tries + " tries"
	case gaveUpBody:
		return 0, "not retried after " + tries + " tries: request body over " + strconv.Itoa(maxRetryBody>>10) + " KiB"
	}
	return 0, ""
}

// retryBody keeps a request body as it is read, so that a retry can send
// it again from the start. Each try reads through its own view; a view of
// an earlier try fails once a later one exists, since the Transport may
// still be reading it from a goroutine of its own after its try ended.
type retryBody struct {
	mu   sync.Mutex
	src  io.ReadCloser
	buf  *[]byte
	over bool  // the body passed maxRetryBody: it cannot be sent again
	err  error // what src returned last: io.EOF at the end
	gen  int
	// first is the first try's view, allocated with the body: most
	// requests are never retried.
	first retryView
}

var errStaleTry = errors.New("hcm: request body read by a try that was retried")

var retryBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func newRetryBody(src io.ReadCloser) *retryBody {
	return &retryBody{src: src, buf: retryBufs.Get().(*[]byte)}
}

// view returns a reader of the body from its start for a new try.
func (b *retryBody) view() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	if b.gen == 1 {
		b.first = retryView{b: b, gen: 1}
		return &b.first
	}
	return &retryView{b: b, gen: b.gen}
}

func (b *retryBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.over && (b.err == nil || b.err == io.EOF)
}

// failed reports whether reading the client's body failed (not its end).
func (b *retryBody) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil && b.err != io.EOF
}

func (b *retryBody) release() {
	b.mu.Lock()
	buf := b.buf
	b.buf, b.gen = nil, -1
	b.mu.Unlock()
	if buf != nil && cap(*buf) <= maxRetryBody {
		*buf = (*buf)[:0]
		retryBufs.Put(buf)
	}
}

type retryView struct {
	b   *retryBody
	gen int
	off int
}

func (v *retryView) Read(p []byte) (int, error) {
	b := v.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if v.gen != b.gen {
		return 0, errStaleTry
	}
	if b.buf != nil && v.off < len(*b.buf) {
		n := copy(p, (*b.buf)[v.off:])
		v.off += n
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	// Read under the lock: a stale view blocked here finishes before the
	// current one reads on, and what it read is kept for the current one.
	n, err := b.src.Read(p)
	if n > 0 {
		if !b.over && b.buf != nil && len(*b.buf)+n <= maxRetryBody {
			*b.buf = append(*b.buf, p[:n]...)
		} else if !b.over {
			b.over = true
		}
		v.off += n
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// Close leaves the client's body to its server, which closes it.
func (v *retryView) Close() error { return nil }
