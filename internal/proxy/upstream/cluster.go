package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Envoy's defaults for a cluster that sets none.
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
	DefaultConnectTimeout     = 5 * time.Second
	DefaultIdleTimeout        = time.Hour
	// DefaultMaxIdleConnsPerHost is larger than net/http's 2: a sidecar
	// under concurrency would otherwise close and redial connections on
	// every burst, which costs more than the idle sockets.
	DefaultMaxIdleConnsPerHost = 64
)

// Errors that RoundTrip and DialTCP return with their flags.
var (
	ErrOverflow          = errors.New("upstream: circuit breaker open")
	ErrNoHealthyUpstream = errors.New("upstream: no healthy upstream")
	ErrClosed            = errors.New("upstream: cluster closed")
)

// Options are the proxy-wide settings of a Cluster, as opposed to the
// per-cluster ones that come from xDS.
type Options struct {
	// LocalIP is the source address of every upstream connection. In
	// explicit mode it is the pod IP, so that the peer (and its
	// AuthorizationPolicy) sees which workload connects. nil lets the
	// kernel choose.
	LocalIP net.IP
	// MaxIdleConnsPerHost bounds the idle HTTP/1.1 connections kept per
	// host; 0 means DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// Dial, when set, opens every connection to a host in place of a TCP
	// dial from LocalIP. Explicit mode uses it to reach hosts that run a
	// sidecar through their tunnel port. The cluster's connect timeout
	// bounds ctx.
	Dial func(ctx context.Context, h *balance.Host) (net.Conn, error)
	// MaxConnectionAge is the age at which an HTTP/2 connection takes no
	// new streams and closes once its streams are done, ±10% so that
	// connections opened together do not all go together, when the
	// cluster sets no max_connection_duration: long-lived HTTP/2 and gRPC
	// connections then reach new backends behind one address (an L4
	// balancer, a DNS name). 0 turns it off. See h2pool.go.
	MaxConnectionAge time.Duration
}

// maxOriginalDstHosts bounds the destinations an ORIGINAL_DST cluster
// keeps pools for; past it, destinations with nothing in flight are
// forgotten, as Envoy's original_dst cleanup interval does.
const maxOriginalDstHosts = 256

// Cluster is one xDS cluster's upstream state. Its methods are safe for
// concurrent use.
type Cluster struct {
	name  string
	bal   *balance.Balancer
	http2 bool
	// downstreamProto sends requests upstream in the downstream's
	// HTTP version; without it and http2, HTTP/1.1 (Envoy's default).
	downstreamProto bool
	maxReqPerConn   uint32
	idleTimeout     time.Duration
	connTimeout     time.Duration
	maxIdle         int
	dialer          net.Dialer
	dialHook        func(ctx context.Context, h *balance.Host) (net.Conn, error)
	// originalDst clusters send to the destination in the Call; their
	// hosts are made on demand, by address, under mu.
	originalDst bool
	dstHosts    map[netip.AddrPort]*balance.Host

	maxPending, maxRequests, maxRetries int64
	// connSlots holds one token per open upstream connection, so that the
	// connection limit is a channel send and waiting for a slot can also
	// watch a deadline and Close.
	connSlots chan struct{}
	pending   atomic.Int64
	requests  atomic.Int64
	retries   atomic.Int64

	// connection lifetimes and HTTP/2 streams (h2pool.go, socket.go)
	maxConnDur  time.Duration // max_connection_duration: every protocol
	defaultAge  time.Duration // Options.MaxConnectionAge: HTTP/2 without maxConnDur
	maxStreams  uint32
	h2Keepalive *xdsresource.HTTP2Keepalive
	keepalive   *net.KeepAliveConfig // for dial hooks' sockets

	// Counters for the admin page and stats, by Envoy's names.
	cxTotal, cxConnectFail, cxOverflow, rqPendingOverflow, rqOverflow atomic.Uint64
	rqRetry, rqRetryOverflow, rqRetrySuccess                          atomic.Uint64
	// retryBudget, when set, bounds retries in place of maxRetries.
	retryBudget *xdsresource.RetryBudget

	// pools is copy-on-write: RoundTrip reads it on every request without
	// a lock; mu serialises the rare writers (a new host, a sweep, Close).
	pools atomic.Pointer[map[*balance.Host]*pool]

	// successor takes the requests that arrive after a config update
	// replaced this cluster: a request may look the cluster up just
	// before the swap and call it just after.
	successor atomic.Pointer[Cluster]

	mu     sync.Mutex
	live   map[*conn]struct{} // every open connection, for Close
	closed chan struct{}
	done   bool
}

// pool is one host's connections.
type pool struct {
	host *balance.Host
	h1   *http.Transport
	h2   *h2Pool // HTTP/2 Transports, one per lane of streams (h2pool.go)
	// usedH2 spares pools that never spoke HTTP/2 the second drain pass.
	usedH2 atomic.Bool
	// active counts requests sent through the pool and not yet finished,
	// so that a retired pool closes its last connections once they are
	// idle rather than at the moment of retirement.
	active  atomic.Int64
	retired atomic.Bool
	// direct holds the idle connections of the direct HTTP/1.1 path.
	direct directIdle
}

// New returns the upstream state of cluster c, whose hosts b picks. The
// caller must Close it.
func New(c *xdsresource.Cluster, b *balance.Balancer, opts Options) *Cluster {
	cb := c.CircuitBreakers
	cl := &Cluster{
		name:            c.Name,
		bal:             b,
		http2:           c.HTTP2,
		downstreamProto: c.DownstreamProtocol,
		maxReqPerConn:   c.MaxRequestsPerConnection,
		idleTimeout:     orDefault(c.IdleTimeout, DefaultIdleTimeout),
		connTimeout:     orDefault(c.ConnectTimeout, DefaultConnectTimeout),
		maxIdle:         opts.MaxIdleConnsPerHost,
		maxPending:      int64(orDefault(cb.MaxPendingRequests, DefaultMaxPendingRequests)),
		maxRequests:     int64(orDefault(cb.MaxRequests, DefaultMaxRequests)),
		maxRetries:      int64(orDefault(cb.MaxRetries, DefaultMaxRetries)),
		retryBudget:     cb.RetryBudget,
		connSlots:       make(chan struct{}, orDefault(cb.MaxConnections, DefaultMaxConnections)),
		live:            map[*conn]struct{}{},
		closed:          make(chan struct{}),
		dialHook:        opts.Dial,
		originalDst:     c.Type == xdsresource.ClusterOriginalDst,
	}
	if cl.maxIdle <= 0 {
		cl.maxIdle = DefaultMaxIdleConnsPerHost
	}
	if opts.LocalIP != nil {
		cl.dialer.LocalAddr = &net.TCPAddr{IP: opts.LocalIP}
	}
	cl.setConnectionOptions(c, opts) // h2pool.go
	cl.pools.Store(&map[*balance.Host]*pool{})
	return cl
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Name is the cluster's xDS name.
func (c *Cluster) Name() string { return c.name }

// OriginalDst reports whether the cluster sends each request where its
// Call says (Call.Dst) rather than to hosts it balances over.
func (c *Cluster) OriginalDst() bool { return c.originalDst }

// Balancer is the balancer the cluster picks hosts with.
func (c *Cluster) Balancer() *balance.Balancer { return c.bal }

// Update applies an EDS update: the balancer takes the new endpoints, then
// every host it dropped stops getting requests and its pool is retired:
// idle connections close now, busy ones once their requests finish.
// Endpoint updates must come through here rather than straight to the
// balancer, or removed hosts keep their idle connections until Close.
func (c *Cluster) Update(cla *xdsresource.ClusterLoadAssignment) {
	c.bal.Update(cla)
	c.mu.Lock()
	old := *c.pools.Load()
	next := make(map[*balance.Host]*pool, len(old))
	var retire []*pool
	for h, p := range old {
		if h.Removed() {
			retire = append(retire, p)
		} else {
			next[h] = p
		}
	}
	if len(retire) == 0 {
		c.mu.Unlock()
		return
	}
	c.pools.Store(&next)
	// Retired outside the lock: closing an idle connection takes it.
	c.mu.Unlock()
	for _, p := range retire {
		p.retire()
	}
}

// retire stops p taking requests and closes its connections now if it
// has no request in flight, else when the last one finishes.
func (p *pool) retire() {
	// Retired before the active check, as RoundTrip counts itself active
	// before checking retired: one of the two sees the other.
	p.retired.Store(true)
	if p.active.Load() == 0 {
		p.drained()
	}
}

func (p *pool) closeIdle() {
	p.direct.closeAll()
	p.h1.CloseIdleConnections()
	p.h2.CloseIdleConnections()
}

// drained closes a retired pool's connections after its last request.
// HTTP/2 may still count the last stream open for a moment after the
// caller saw the end of its body (the stream is torn down on the
// connection's own goroutine), and such a connection would then idle
// until IdleTimeout, so HTTP/2 pools get a second pass shortly after.
func (p *pool) drained() {
	p.closeIdle()
	if p.usedH2.Load() {
		time.AfterFunc(100*time.Millisecond, p.closeIdle)
	}
}

// Close closes every connection, idle or busy (requests in flight fail),
// and makes further calls fail with ErrClosed. Shutdown is the graceful
// form.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return nil
	}
	c.done = true
	pools := c.stopLocked()
	live := make([]*conn, 0, len(c.live))
	for cn := range c.live {
		live = append(live, cn)
	}
	c.mu.Unlock()
	for _, p := range pools {
		p.retired.Store(true)
		p.closeIdle()
	}
	for _, cn := range live {
		cn.Close()
	}
	return nil
}

// Replace hands requests that reach c after it was shut down to next, the
// cluster that took its name in a config update, so that the swap fails
// no request. Call it before Shutdown.
func (c *Cluster) Replace(next *Cluster) { c.successor.Store(next) }

// Shutdown retires the cluster when its CDS resource changes or goes
// away: new requests fail with ErrClosed at once, idle connections close,
// and busy ones close as their requests (and TCP streams) finish. It
// returns when none is left, or closes the rest when ctx is done first.
// Nothing is left running either way.
func (c *Cluster) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	pools := c.stopLocked()
	c.mu.Unlock()
	for _, p := range pools {
		p.retire()
	}
	// Polled, as http.Server.Shutdown does: connections close from
	// Transport goroutines and callers' Close, and a notification from
	// each would cost every connection close on the hot path for a rare
	// event.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		c.mu.Lock()
		n := len(c.live)
		c.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			c.Close()
			return ctx.Err()
		case <-tick.C:
			for _, p := range pools {
				p.closeIdle()
			}
		}
	}
}

// stopLocked refuses new requests and hands back the pools, which no
// lookup finds any more. c.mu must be held.
func (c *Cluster) stopLocked() map[*balance.Host]*pool {
	if !c.isClosed() {
		close(c.closed)
	}
	c.bal.Stop() // outlier detection's sweeps
	pools := *c.pools.Load()
	c.pools.Store(&map[*balance.Host]*pool{})
	return pools
}

func (c *Cluster) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// pool returns h's pool, creating it on first use.
func (c *Cluster) pool(h *balance.Host) *pool {
	if p := (*c.pools.Load())[h]; p != nil {
		return p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed() {
		return nil
	}
	old := *c.pools.Load()
	if p := old[h]; p != nil {
		return p
	}
	p := &pool{host: h}
	// Both protocols even when the cluster does not ask for HTTP/2:
	// without it the downstream's protocol is used, so gRPC arriving over
	// HTTP/2 leaves over HTTP/2. A Transport costs nothing until used.
	p.h1 = c.transport(p, false)
	p.h2 = &h2Pool{c: c, p: p}
	next := make(map[*balance.Host]*pool, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[h] = p
	c.pools.Store(&next)
	return p
}

func (c *Cluster) transport(p *pool, h2 bool) *http.Transport {
	t := &http.Transport{
		// Never from the environment: the sidecar is the proxy.
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dialHTTP(ctx, p.host, !h2)
		},
		// A proxy forwards bodies as they are; the Transport would
		// otherwise ask for gzip and decode it behind the app's back.
		DisableCompression:  true,
		MaxIdleConnsPerHost: c.maxIdle,
		IdleConnTimeout:     c.idleTimeout,
	}
	if h2 {
		var ps http.Protocols
		ps.SetUnencryptedHTTP2(true)
		t.Protocols = &ps
	}
	return t
}

// RoundTrip sends req to a host of the cluster and returns its response.
// hash is the request's consistent hash, used when hasHash and the policy
// is RING_HASH or MAGLEV.
//
// The protocol upstream is HTTP/2 (h2c, prior knowledge) when the cluster
// sets HTTP2, or sets DownstreamProtocol and req.ProtoMajor is 2; else
// HTTP/1.1, Envoy's default. Upgrade and CONNECT requests always go as
// HTTP/1.1.
//
// req is a client request: a server request forwarded must have its
// RequestURI cleared and hop-by-hop headers removed (the router's job).
// RoundTrip sets req.URL's scheme and host to the picked host; req.Host
// (the authority sent) is left as the caller set it. When MaxRequests-
// PerConnection is set, req may be shallow-copied. The response body must
// be closed: the request counts against MaxRequests and its host's active
// requests until then (or until it is read to EOF).
//
// On error, the flags say why, in Envoy's terms: UH no host, UO a circuit
// breaker, UF the connection could not be made, UT the context's deadline
// passed, DC the context was cancelled, UC the connection failed later.
func (c *Cluster) RoundTrip(ctx context.Context, req *http.Request, call *Call) (*http.Response, Flags, error) {
	if c.isClosed() {
		if next := c.successor.Load(); next != nil {
			return next.RoundTrip(ctx, req, call)
		}
		return nil, NoHealthyUpstream, ErrClosed
	}
	if c.requests.Add(1) > c.maxRequests {
		c.requests.Add(-1)
		c.rqOverflow.Add(1)
		return nil, UpstreamOverflow, ErrOverflow
	}
	var p *pool
	for {
		h := c.pick(call)
		if h == nil {
			c.requests.Add(-1)
			return nil, NoHealthyUpstream, ErrNoHealthyUpstream
		}
		if p = c.pool(h); p == nil {
			c.requests.Add(-1)
			if next := c.successor.Load(); next != nil {
				return next.RoundTrip(ctx, req, call)
			}
			return nil, NoHealthyUpstream, ErrClosed
		}
		p.active.Add(1)
		if !p.retired.Load() && !h.Removed() {
			break
		}
		// Update dropped h between Pick and now; the balancer no longer
		// offers it, so picking again terminates.
		c.finish(p)
	}
	h := p.host
	call.Host = h
	if call.Reselect > 0 {
		call.Tried = append(call.Tried, h)
	}
	if call.AvoidPriorities {
		call.TriedPriorities |= balance.PriorityBit(h.Priority())
	}
	var t http.RoundTripper = p.h1
	if (c.http2 || (c.downstreamProto && req.ProtoMajor == 2)) && !isUpgrade(req) {
		t = p.h2
		if !p.usedH2.Load() {
			p.usedH2.Store(true)
		}
	}
	req.URL.Scheme = "http"
	req.URL.Host = h.Addr()
	direct := t == p.h1 && directOK(req)
	if !direct && ctx != req.Context() {
		req = req.WithContext(ctx)
	}
	var got *net.Conn // the Transport's HTTP/1.1 connection, as GotConn tells it
	if !direct && (c.maxReqPerConn > 0 || t == p.h1) {
		req, got = c.traceConn(req, t == p.h1)
	}

	h.Start()
	start := time.Now()
	var resp *http.Response
	var err error
	call.ResponseNames = nil
	if direct {
		resp, err = c.roundTripDirect(ctx, req, p, call)
	} else {
		resp, err = t.RoundTrip(req)
	}
	latency := time.Since(start)
	if err != nil {
		h.Done(latency)
		c.finish(p)
		flags := c.errorFlags(ctx, err)
		if flags&(UpstreamConnectionFailure|UpstreamConnectionTermination|UpstreamRequestTimeout) != 0 {
			// Outlier detection's local-origin failures, as Envoy's
			// router reports them: refused, reset, timed out.
			c.bal.ReportLocalFailure(h, flags != UpstreamConnectionFailure)
		}
		return nil, flags, err
	}
	c.bal.ReportStatus(h, resp.StatusCode)
	if got != nil && resp.ProtoMajor == 1 {
		call.ResponseNames = ResponseHeaderNames(*got)
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &rwBody{body: body{ReadCloser: rwc, c: c, p: p, latency: latency}, w: rwc}
	} else if db, ok := resp.Body.(*directBody); ok && db.wrap != nil {
		// Allocated with the response by the direct path's parser.
		b := db.wrap
		b.ReadCloser, b.c, b.p, b.latency = resp.Body, c, p, latency
		resp.Body = b
	} else {
		resp.Body = &body{ReadCloser: resp.Body, c: c, p: p, latency: latency}
	}
	return resp, 0, nil
}

// pick chooses the host for a request: the balancer's choice, or for an
// ORIGINAL_DST cluster the call's destination (nil without one).
func (c *Cluster) pick(call *Call) *balance.Host {
	if !c.originalDst {
		pick := c.bal.Pick
		if call.AvoidPriorities && call.TriedPriorities != 0 {
			pick = func(hash uint64, hasHash bool) *balance.Host {
				return c.bal.PickAvoiding(hash, hasHash, call.TriedPriorities)
			}
		}
		h := pick(call.Hash, call.HasHash)
		// A retry prefers a host its request has not tried, as Envoy's
		// previous_hosts predicate: a few more picks, then whatever comes.
		for i := 0; i < call.Reselect && h != nil && call.tried(h); i++ {
			h = pick(call.Hash, call.HasHash)
		}
		return h
	}
	dst := call.Dst
	if !dst.IsValid() {
		return nil
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.dstHosts[dst]; h != nil {
		return h
	}
	if c.dstHosts == nil {
		c.dstHosts = map[netip.AddrPort]*balance.Host{}
	}
	if len(c.dstHosts) >= maxOriginalDstHosts {
		c.forgetIdleDestinationsLocked()
	}
	h := balance.NewHost(dst.Addr().String(), uint32(dst.Port()))
	c.dstHosts[dst] = h
	return h
}

// forgetIdleDestinationsLocked drops the ORIGINAL_DST hosts with nothing
// in flight and retires their pools. c.mu must be held.
func (c *Cluster) forgetIdleDestinationsLocked() {
	pools := *c.pools.Load()
	next := make(map[*balance.Host]*pool, len(pools))
	for k, v := range pools {
		next[k] = v
	}
	for dst, h := range c.dstHosts {
		if h.Active() > 0 {
			continue
		}
		delete(c.dstHosts, dst)
		if p := next[h]; p != nil {
			delete(next, h)
			p.retire()
		}
	}
	c.pools.Store(&next)
}

// StartRetry takes a slot for one retry of a request, and reports false
// when none is free: retries in flight are bounded cluster-wide, so that
// retrying cannot multiply the load on a failing cluster. The bound is
// the retry budget when the cluster has one (a share of its active and
// pending requests, never below its minimum concurrency), else
// MaxRetries (Envoy's max_retries, default 3). A refusal is counted
// (upstream_rq_retry_overflow); a slot taken is counted as a retry
// (upstream_rq_retry) and released with EndRetry when that try ends.
func (c *Cluster) StartRetry() bool {
	limit := c.maxRetries
	if b := c.retryBudget; b != nil {
		active := float64(c.requests.Load() + c.pending.Load())
		limit = max(int64(b.MinConcurrency), int64(active*b.Percent/100))
	}
	if c.retries.Add(1) > limit {
		c.retries.Add(-1)
		c.rqRetryOverflow.Add(1)
		return false
	}
	c.rqRetry.Add(1)
	return true
}

// EndRetry releases a slot taken by StartRetry; success says whether
// that retry got an answer the request went on with
// (upstream_rq_retry_success).
func (c *Cluster) EndRetry(success bool) {
	c.retries.Add(-1)
	if success {
		c.rqRetrySuccess.Add(1)
	}
}

// Stats are a cluster's gauges and counters, named as Envoy's cluster
// stats, for the admin /clusters and /stats pages.
type Stats struct {
	CxActive, RqPending, RqActive int64 // gauges

	CxTotal           uint64 // upstream_cx_total
	CxConnectFail     uint64 // upstream_cx_connect_fail
	CxOverflow        uint64 // upstream_cx_overflow: a dial waited for a connection slot
	RqPendingOverflow uint64 // upstream_rq_pending_overflow
	RqOverflow        uint64 // upstream_rq_overflow: MaxRequests
	RqRetry           uint64 // upstream_rq_retry
	RqRetryOverflow   uint64 // upstream_rq_retry_overflow: no retry slot (budget or MaxRetries)
	RqRetrySuccess    uint64 // upstream_rq_retry_success
}

// Stats returns the cluster's current stats.
func (c *Cluster) Stats() Stats {
	return Stats{
		CxActive:          int64(len(c.connSlots)),
		RqPending:         c.pending.Load(),
		RqActive:          c.requests.Load(),
		CxTotal:           c.cxTotal.Load(),
		CxConnectFail:     c.cxConnectFail.Load(),
		CxOverflow:        c.cxOverflow.Load(),
		RqPendingOverflow: c.rqPendingOverflow.Load(),
		RqOverflow:        c.rqOverflow.Load(),
		RqRetry:           c.rqRetry.Load(),
		RqRetryOverflow:   c.rqRetryOverflow.Load(),
		RqRetrySuccess:    c.rqRetrySuccess.Load(),
	}
}

// finish ends a request's accounting on p, and closes a retired pool's
// connections once its last request is done.
func (c *Cluster) finish(p *pool) {
	c.requests.Add(-1)
	if p.active.Add(-1) == 0 && p.retired.Load() {
		p.drained()
	}
}

func isUpgrade(req *http.Request) bool {
	// Upgrade has no meaning in HTTP/2 (RFC 9113 §8.2.2), and websocket
	// over HTTP/2 (RFC 8441) needs the server to offer it; the safe path
	// is the HTTP/1.1 one the client asked for.
	return req.Header.Get("Upgrade") != "" || req.Method == http.MethodConnect
}

// traceConn has the Transport tell which connection carries req
// (httptrace's GotConn, the Transport's only way to say it), for two
// things. On HTTP/1.1 (names), the connection's last response head is
// where the response's header-name spelling is read from once RoundTrip
// returns (ResponseHeaderNames); got is where the connection goes.
// When MaxRequestsPerConnection is set, the connection that carries req
// closes after it when req is its MaxRequestsPerConnection-th (Envoy
// drains a connection after that many requests, HTTP/1.1 or HTTP/2
// streams alike): the Transport reads req.Close on the same goroutine
// after GotConn, so on HTTP/1.1 it sends Connection: close; on HTTP/2 the
// stream still goes out, but the client connection takes no further
// streams (doNotReuse, as a Connection: close request does) and closes
// once its streams are done. Requests that picked the connection at the
// same moment may still share it, each marking it again; none is
// refused.
func (c *Cluster) traceConn(req *http.Request, names bool) (out *http.Request, got *net.Conn) {
	if names {
		got = new(net.Conn)
	}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if got != nil {
			*got = info.Conn
		}
		cn, _ := info.Conn.(*conn)
		if cn != nil && cn.expired() {
			// Past max_connection_duration: this request is its last.
			out.Close = true
		}
		if c.maxReqPerConn == 0 {
			return
		}
		if cn != nil && cn.requests.Add(1) >= c.maxReqPerConn {
			out.Close = true
		}
	}}
	out = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	return out, got
}

func (c *Cluster) errorFlags(ctx context.Context, err error) Flags {
	var de *dialError
	switch {
	case errors.Is(err, ErrOverflow):
		return UpstreamOverflow
	case errors.As(err, &de):
		return UpstreamConnectionFailure
	case errors.Is(err, ErrClosed):
		return NoHealthyUpstream
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return UpstreamRequestTimeout
	case ctx.Err() != nil:
		return DownstreamConnectionTermination
	}
	return UpstreamConnectionTermination
}

// body ends a request's accounting when the response is done with.
type body struct {
	io.ReadCloser
	c       *Cluster
	p       *pool
	latency time.Duration
	done    atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.release()
	}
	return n, err
}

func (b *body) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

func (b *body) release() {
	if b.done.CompareAndSwap(false, true) {
		b.p.host.Done(b.latency)
		b.c.finish(b.p)
	}
}

// rwBody is the body of a 101 response: the upgraded connection, which
// the caller writes to as well.
type rwBody struct {
	body
	w io.Writer
}

func (b *rwBody) Write(p []byte) (int, error) { return b.w.Write(p) }
