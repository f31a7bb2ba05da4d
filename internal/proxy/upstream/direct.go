package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/http1"
)

// The direct path sends ordinary HTTP/1.1 requests without net/http's
// Transport: the calling goroutine writes the request (head and body in
// one write) and reads the response head itself, and the response body is
// read straight from the connection by whoever reads it. The Transport
// hands every request to a write goroutine and every response back from a
// read goroutine, then waits for the body's end on a third channel: about
// three goroutine wake-ups per request in each sidecar, which was most of
// the proxy's scheduler time (docs/performance.md, "Sidecar").
//
// It takes requests whose body is absent or small and of known length;
// anything that needs the Transport's concurrency (a streamed or large
// body that the upstream may answer before it ends, Expect: 100-continue,
// upgrades, trailers) keeps using it.

// staleCheckAfter is how long a connection may sit idle before it is
// checked for a close by the upstream before reuse.
const staleCheckAfter = 100 * time.Millisecond

// maxDirectBody bounds the request bodies the direct path buffers whole.
const maxDirectBody = 64 << 10

var directBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// directConn is one pooled HTTP/1.1 connection of the direct path.
type directConn struct {
	cn        *conn
	br        *bufio.Reader
	hp        http1.ResponseParser
	requests  uint32
	idleSince time.Time
}

// directIdle is a host's idle direct connections, most recent last, and
// the requests waiting for one because every connection slot is taken.
type directIdle struct {
	mu      sync.Mutex
	conns   []*directConn
	waiters []chan *directConn
}

func (d *directIdle) take(idleTimeout time.Duration) *directConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.conns) > 0 {
		dc := d.conns[len(d.conns)-1]
		d.conns = d.conns[:len(d.conns)-1]
		idle := time.Since(dc.idleSince)
		if idleTimeout > 0 && idle > idleTimeout || dc.cn.expired() {
			dc.cn.Close()
			continue
		}
		// Connections reused at once under load skip the check: an
		// upstream closes idle connections after seconds, not
		// microseconds, and the retry covers the rare race.
		if idle > staleCheckAfter && closedByPeer(dc.cn.Conn) {
			dc.cn.Close()
			continue
		}
		return dc
	}
	return nil
}

func (d *directIdle) put(dc *directConn, max int, retired bool) {
	dc.idleSince = time.Now()
	if dc.cn.expired() {
		// max_connection_duration: its request done, it goes.
		dc.cn.Close()
		return
	}
	d.mu.Lock()
	if !retired && len(d.waiters) > 0 {
		w := d.waiters[0]
		d.waiters = d.waiters[1:]
		d.mu.Unlock()
		w <- dc // buffered: never blocks
		return
	}
	if retired || len(d.conns) >= max {
		d.mu.Unlock()
		dc.cn.Close()
		return
	}
	d.conns = append(d.conns, dc)
	d.mu.Unlock()
}

// wait registers a waiter; cancel unregisters it and returns a connection
// handed over meanwhile, if any.
func (d *directIdle) wait() (ch chan *directConn, cancel func() *directConn) {
	ch = make(chan *directConn, 1)
	d.mu.Lock()
	d.waiters = append(d.waiters, ch)
	d.mu.Unlock()
	return ch, func() *directConn {
		d.mu.Lock()
		for i, w := range d.waiters {
			if w == ch {
				d.waiters = append(d.waiters[:i], d.waiters[i+1:]...)
				break
			}
		}
		d.mu.Unlock()
		select {
		case dc := <-ch:
			return dc
		default:
			return nil
		}
	}
}

func (d *directIdle) closeAll() {
	d.mu.Lock()
	conns := d.conns
	d.conns = nil
	d.mu.Unlock()
	for _, dc := range conns {
		dc.cn.Close()
	}
}

// directOK reports whether req can take the direct path.
func directOK(req *http.Request) bool {
	if req.ContentLength < 0 || req.ContentLength > maxDirectBody {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength == 0 {
		return false // length unknown
	}
	if req.Trailer != nil || isUpgrade(req) {
		return false
	}
	_, expect := req.Header["Expect"]
	return !expect
}

var errBadHeader = errors.New("upstream: header name or value contains a line break")

// appendHead writes req's HTTP/1.1 head. Header names go out as they are
// in the map (their case included), values must not break lines.
func appendHead(b []byte, req *http.Request, bodyLen int64, close bool) ([]byte, error) {
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Trailer":
			continue
		}
		if http1.HasLineBreak(k) {
			return b, errBadHeader
		}
		for _, v := range vv {
			if http1.HasLineBreak(v) {
				return b, errBadHeader
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if bodyLen > 0 || needsLength(req.Method) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, bodyLen, 10)
		b = append(b, "\r\n"...)
	}
	if close {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, "\r\n"...), nil
}

// needsLength: methods whose requests carry a body by meaning get an
// explicit zero length, as the Transport sends.
func needsLength(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// retryable says whether a request that failed on a reused connection
// before any response byte may be sent again on a new one, as the
// Transport decides: when nothing reached the server, or the method is
// idempotent.
func retryable(req *http.Request, wrote bool, err error) bool {
	if !wrote {
		return true
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	return key
}

// roundTripDirect sends req to p's host on the direct path.
func (c *Cluster) roundTripDirect(ctx context.Context, req *http.Request, p *pool, call *Call) (*http.Response, error) {
	// The body is read whole first, so that the message goes out in one
	// write and can be sent again if a stale connection refuses it.
	bodyBuf := directBufs.Get().(*[]byte)
	defer putDirectBuf(bodyBuf)
	body := (*bodyBuf)[:0]
	if n := int(req.ContentLength); n > 0 {
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(req.Body, body); err != nil {
			return nil, fmt.Errorf("reading the request body: %w", err)
		}
		*bodyBuf = body
	}
	msgBuf := directBufs.Get().(*[]byte)
	defer putDirectBuf(msgBuf)
	for attempt := 0; ; attempt++ {
		dc, reused, err := c.directConn(ctx, p)
		if err != nil {
			return nil, err
		}
		// As the Transport does: the HCM learns the connection, and from
		// it the response's header-name spelling, through GotConn.
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.GotConn != nil {
			trace.GotConn(httptrace.GotConnInfo{Conn: dc.cn, Reused: reused})
		}
		dc.requests++
		closing := req.Close || (c.maxReqPerConn > 0 && dc.requests >= c.maxReqPerConn)
		msg, err := appendHead((*msgBuf)[:0], req, req.ContentLength, closing)
		if err != nil {
			p.direct.put(dc, c.maxIdle, p.retired.Load())
			return nil, err
		}
		msg = append(msg, body...)
		*msgBuf = msg
		resp, wrote, err := c.exchange(ctx, req, dc, p, msg, !closing, call.Donor)
		if err == nil {
			if resp.ProtoMajor == 1 {
				call.ResponseNames = dc.cn.heads.Names()
			}
			return resp, nil
		}
		dc.cn.Close()
		if !reused || attempt > 0 || ctx.Err() != nil || !retryable(req, wrote, err) {
			return nil, err
		}
	}
}

// directConn returns an idle connection to p's host, a new one if a
// connection slot is free, or else waits (as a pending request, bounded by
// the connect timeout) for whichever comes first: a connection of this
// host coming back idle, or a slot.
func (c *Cluster) directConn(ctx context.Context, p *pool) (*directConn, bool, error) {
	if dc := p.direct.take(c.idleTimeout); dc != nil {
		return dc, true, nil
	}
	select {
	case c.connSlots <- struct{}{}:
		return c.newDirectConn(ctx, p)
	default:
	}
	c.cxOverflow.Add(1)
	if c.pending.Add(1) > c.maxPending {
		c.pending.Add(-1)
		c.rqPendingOverflow.Add(1)
		return nil, false, ErrOverflow
	}
	defer c.pending.Add(-1)
	ch, cancel := p.direct.wait()
	t := time.NewTimer(c.connTimeout)
	defer t.Stop()
	select {
	case dc := <-ch:
		return dc, true, nil
	case c.connSlots <- struct{}{}:
		if dc := cancel(); dc != nil {
			c.releaseConn()
			return dc, true, nil
		}
		return c.newDirectConn(ctx, p)
	case <-t.C:
		if dc := cancel(); dc != nil {
			return dc, true, nil
		}
		c.rqPendingOverflow.Add(1)
		return nil, false, fmt.Errorf("%w: no connection slot within %v", ErrOverflow, c.connTimeout)
	case <-ctx.Done():
		if dc := cancel(); dc != nil {
			p.direct.put(dc, c.maxIdle, p.retired.Load())
		}
		return nil, false, ctx.Err()
	case <-c.closed:
		if dc := cancel(); dc != nil {
			dc.cn.Close()
		}
		return nil, false, ErrClosed
	}
}

func (c *Cluster) newDirectConn(ctx context.Context, p *pool) (*directConn, bool, error) {
	cn, err := c.dialAcquired(ctx, p.host, true)
	if err != nil {
		return nil, false, err
	}
	return &directConn{cn: cn, br: bufio.NewReaderSize(cn, 4<<10)}, false, nil
}

func putDirectBuf(b *[]byte) {
	if cap(*b) > 2*maxDirectBody {
		return
	}
	*b = (*b)[:0]
	directBufs.Put(b)
}

// exchange writes msg on dc and reads the response head. The body is
// read later through the returned response, which gives dc back to p at
// its end when keep allows.
func (c *Cluster) exchange(ctx context.Context, req *http.Request, dc *directConn, p *pool, msg []byte, keep bool, donor HeaderDonor) (*http.Response, bool, error) {
	// A cancelled or timed-out request unblocks its reads and writes by
	// an expired deadline; such a connection is never reused. A context
	// that can only time out (a ConnTimer's) is the connection's deadline
	// itself, with nothing to watch it.
	// A context that cannot end (no timeout on the fast path) needs
	// neither.
	var stop func() bool
	deadline := false
	if dl, ok := DeadlineOnly(ctx); ok {
		dc.cn.SetDeadline(dl)
		deadline = true
	} else if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { dc.cn.SetDeadline(time.Unix(1, 0)) })
	}
	// Straight to the connection: Write would arm responseHeads, whose
	// work readResponse does from the head it parses. Nothing is left
	// unread on a pooled connection (finish), so the response is what
	// ends the wait.
	if _, err := dc.cn.writeAwait(msg); err != nil {
		if stop != nil {
			stop()
		}
		return nil, false, err
	}
	var resp *http.Response
	var err error
	for {
		resp, err = dc.readResponse(req, donor)
		if err != nil {
			if stop != nil {
				stop()
			}
			return nil, true, err
		}
		// Interim answers (102, 103) are not relayed; 101 cannot come
		// without an Upgrade, which never takes this path.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	keep = keep && !resp.Close && resp.ProtoAtLeast(1, 1)
	b, parsed := resp.Body.(*directBody)
	if !parsed {
		b = &directBody{rc: resp.Body}
		resp.Body = b
	}
	b.dc, b.c, b.p, b.stop, b.deadline, b.keep = dc, c, p, stop, deadline, keep
	return resp, true, nil
}

// directBody is a direct response's body: reading it to the end gives
// the connection back to the host's pool, closing it early closes the
// connection (what is left unread cannot be skipped cheaply). The body
// of a response that http.ReadResponse read is rc; one that the head
// parser read has none and reads its remaining bytes from br.
type directBody struct {
	rc        io.ReadCloser
	br        *bufio.Reader
	remaining int64
	dc        *directConn
	c         *Cluster
	p         *pool
	stop      func() bool // ends the watch of the request's context, if any
	deadline  bool        // the request's deadline is the connection's
	wrap      *body       // the Cluster's wrapper, allocated with it
	keep      bool
	done      bool
}

func (b *directBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	var n int
	var err error
	if b.rc == nil {
		n, err = b.readLength(p)
	} else {
		n, err = b.rc.Read(p)
	}
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *directBody) Close() error {
	// A response without a body is complete before anyone reads it.
	b.finish(b.rc == http.NoBody || (b.rc == nil && b.remaining == 0))
	return nil
}

func (b *directBody) finish(atEOF bool) {
	if b.done {
		return
	}
	b.done = true
	var fired bool
	if b.stop != nil {
		fired = !b.stop()
	}
	if b.deadline {
		// A read past the request's deadline failed, so at EOF it is
		// simply lifted.
		b.dc.cn.SetDeadline(time.Time{})
	}
	if atEOF && b.keep && !fired && b.dc.br.Buffered() == 0 && b.p != nil {
		b.p.direct.put(b.dc, b.c.maxIdle, b.p.retired.Load())
		return
	}
	b.dc.cn.Close()
}
