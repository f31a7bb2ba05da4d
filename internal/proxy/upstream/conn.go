package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/http1"
	"github.com/trellismesh/trellis/internal/proxy/netio"
)

// dialError marks a failure to connect, which is UF, as opposed to a
// connection that failed after it was made (UC).
type dialError struct{ err error }

func (e *dialError) Error() string { return "upstream connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// acquireConn takes a connection slot. When all MaxConnections are open,
// the dial becomes a pending request: it waits for a slot, and fails with
// ErrOverflow when MaxPendingRequests already wait. The wait is bounded by
// ConnectTimeout because net/http detaches its dials from the request's
// context (a dial outlives the request that caused it, to serve the next
// one), so ctx alone would let abandoned dials hold pending slots.
func (c *Cluster) acquireConn(ctx context.Context) error {
	select {
	case c.connSlots <- struct{}{}:
		return nil
	default:
	}
	c.cxOverflow.Add(1)
	if c.pending.Add(1) > c.maxPending {
		c.pending.Add(-1)
		c.rqPendingOverflow.Add(1)
		return ErrOverflow
	}
	defer c.pending.Add(-1)
	t := time.NewTimer(c.connTimeout)
	defer t.Stop()
	select {
	case c.connSlots <- struct{}{}:
		return nil
	case <-t.C:
		c.rqPendingOverflow.Add(1)
		return fmt.Errorf("%w: no connection slot within %v", ErrOverflow, c.connTimeout)
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return ErrClosed
	}
}

func (c *Cluster) releaseConn() { <-c.connSlots }

// dial opens a connection to addr from the configured source address,
// counted against MaxConnections until it is closed.
func (c *Cluster) dial(ctx context.Context, h *balance.Host, holdHeads bool) (*conn, error) {
	if err := c.acquireConn(ctx); err != nil {
		return nil, err
	}
	return c.dialAcquired(ctx, h, holdHeads)
}

// dialAcquired is dial for a caller that already holds a connection slot,
// which it gives back if the dial fails.
func (c *Cluster) dialAcquired(ctx context.Context, h *balance.Host, holdHeads bool) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.connTimeout)
	var nc net.Conn
	var err error
	if c.dialHook != nil {
		nc, err = c.dialHook(dctx, h)
	} else {
		nc, err = c.dialer.DialContext(dctx, "tcp", h.Addr())
	}
	cancel()
	if err != nil {
		c.releaseConn()
		c.cxConnectFail.Add(1)
		return nil, &dialError{err}
	}
	c.cxTotal.Add(1)
	if c.keepalive != nil && c.dialHook != nil {
		// The cluster's own dialer set it already (socket.go).
		setKeepalive(nc, *c.keepalive)
	}
	cn := &conn{Conn: nc, c: c, holdHeads: holdHeads, raw: netio.NewRawIO(nc)}
	if holdHeads && c.maxConnDur > 0 {
		// HTTP/1.1: past this, the connection carries no further request
		// (traceConn, directIdle). HTTP/2 ages by lane (h2pool.go).
		cn.expires = time.Now().Add(c.maxConnDur)
	}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		nc.Close()
		c.releaseConn()
		return nil, ErrClosed
	}
	c.live[cn] = struct{}{}
	c.mu.Unlock()
	return cn, nil
}

// dialHTTP is dial with the interface type the Transport wants: a nil
// *conn must not become a non-nil net.Conn. HTTP/1.1 connections hold
// request heads for their bodies (see conn.Write).
func (c *Cluster) dialHTTP(ctx context.Context, h *balance.Host, http1 bool) (net.Conn, error) {
	cn, err := c.dial(ctx, h, http1)
	if err != nil {
		return nil, err
	}
	return cn, nil
}

// conn is an upstream connection that gives its slot back when closed.
type conn struct {
	net.Conn
	c        *Cluster
	requests atomic.Uint32 // requests (HTTP/2: streams) sent on it, for MaxRequestsPerConnection
	closed   atomic.Bool
	expires  time.Time // max_connection_duration of an HTTP/1.1 connection; zero: none

	// holdHeads is set on HTTP/1.1 connections, where held keeps a request
	// head back until the first bytes of its body (see Write). Only the
	// Transport's write loop writes, so held needs no lock.
	holdHeads bool
	held      []byte

	// heads remembers the spelling of the header names of the responses
	// read on HTTP/1.1 connections (see http1.ResponseHeads).
	heads http1.ResponseHeads

	// raw, when set, reads and writes with raw system calls (netio.RawIO).
	raw *netio.RawIO
}

// expired reports whether the connection is past its
// max_connection_duration: it may finish its request, but takes no more.
func (cn *conn) expired() bool {
	return !cn.expires.IsZero() && !time.Now().Before(cn.expires)
}

func (cn *conn) write(p []byte) (int, error) {
	if cn.raw != nil {
		return cn.raw.Write(p)
	}
	return cn.Conn.Write(p)
}

// writeAwait writes a request that the caller then reads the answer to:
// with raw I/O, the wait for the answer starts without an empty read
// first (netio.RawIO.WriteAwait).
func (cn *conn) writeAwait(p []byte) (int, error) {
	if cn.raw != nil {
		return cn.raw.WriteAwait(p)
	}
	return cn.Conn.Write(p)
}

// maxHeldHead bounds the request heads held back; larger ones go at once.
const maxHeldHead = 8 << 10

var (
	endOfHead     = []byte("\r\n\r\n")
	contentLength = []byte("\r\nContent-Length: ")
	expectHeader  = []byte("\r\nExpect:")
)

// Write sends p, except that a request head announcing a body is held
// back and sent with the body's first bytes, in one write. net/http's
// Transport flushes a request's head on its own before copying a body
// that is not already in memory (every proxied body), which costs a
// second write per request here and, through a tunnel, a second DATA
// frame with a wake-up of every goroutine on its way at both sidecars.
// The upstream cannot act on such a head before the body starts anyway,
// except to answer Expect: 100-continue, whose heads are never held.
func (cn *conn) Write(p []byte) (int, error) {
	if !cn.holdHeads {
		return cn.write(p)
	}
	cn.heads.RequestWritten()
	if len(cn.held) > 0 {
		cn.held = append(cn.held, p...)
		err := cn.flushHeld()
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if isHeadWithBody(p) {
		cn.held = append(cn.held[:0], p...)
		return len(p), nil
	}
	return cn.write(p)
}

// Read reads from the connection, following HTTP/1.1 response heads.
func (cn *conn) Read(p []byte) (int, error) {
	var n int
	var err error
	if cn.raw != nil {
		n, err = cn.raw.Read(p)
	} else {
		n, err = cn.Conn.Read(p)
	}
	if n > 0 && cn.holdHeads {
		cn.heads.Read(p[:n])
	}
	return n, err
}

func (cn *conn) flushHeld() error {
	_, err := cn.write(cn.held)
	cn.held = cn.held[:0]
	return err
}

// isHeadWithBody reports whether p is exactly one HTTP/1.1 request head
// (as the Transport writes it: canonical names, its own Content-Length)
// announcing a body, without Expect.
func isHeadWithBody(p []byte) bool {
	if len(p) > maxHeldHead || !bytes.HasSuffix(p, endOfHead) || bytes.Index(p, endOfHead) != len(p)-len(endOfHead) {
		return false
	}
	i := bytes.Index(p, contentLength)
	if i < 0 {
		return false
	}
	if d := p[i+len(contentLength)]; d < '1' || d > '9' {
		return false
	}
	return !bytes.Contains(p, expectHeader)
}

func (cn *conn) Close() error {
	err := cn.Conn.Close()
	if cn.closed.CompareAndSwap(false, true) {
		cn.c.mu.Lock()
		delete(cn.c.live, cn)
		cn.c.mu.Unlock()
		cn.c.releaseConn()
	}
	return err
}

// ReadFrom and WriteTo keep io.Copy on the kernel's splice/sendfile paths
// of *net.TCPConn, which the embedding would hide, for TCP proxying. What
// the kernel cannot splice (a tunnel stream, an HTTP request body: the
// Transport writes every request body through ReadFrom) is copied with a
// pooled buffer, where net's and io's fallbacks allocate one per call.
func (cn *conn) ReadFrom(r io.Reader) (int64, error) {
	if len(cn.held) > 0 {
		return cn.readFromHeld(r)
	}
	if rf, ok := cn.Conn.(io.ReaderFrom); ok && kernelCopyable(r) {
		return rf.ReadFrom(r)
	}
	return copyPooled(cn.Conn, r)
}

func (cn *conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := cn.Conn.(io.WriterTo); ok && kernelCopyable(w) {
		return wt.WriteTo(w)
	}
	return copyPooled(w, cn.Conn)
}

// readFromHeld sends the held request head with the first bytes of its
// body r (waiting for them), then copies the rest.
func (cn *conn) readFromHeld(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(buf)
	h := copy(buf[:], cn.held)
	if h < len(cn.held) { // cannot happen: heads held are smaller than buf
		if err := cn.flushHeld(); err != nil {
			return 0, err
		}
		h = 0
	}
	cn.held = cn.held[:0]
	var n int
	var rerr error
	for range 100 { // as bufio, give up on a reader that returns nothing
		if n, rerr = r.Read(buf[h:]); n > 0 || rerr != nil {
			break
		}
	}
	if _, err := cn.write(buf[:h+n]); err != nil {
		return 0, err
	}
	if rerr == io.EOF {
		return int64(n), nil
	}
	if rerr != nil {
		return int64(n), rerr
	}
	m, err := io.CopyBuffer(struct{ io.Writer }{cn.Conn}, struct{ io.Reader }{r}, buf[:])
	return int64(n) + m, err
}

// kernelCopyable reports whether v (or what an io.LimitedReader wraps) is
// a file descriptor the kernel can splice or sendfile: a TCP or Unix
// connection or a file.
func kernelCopyable(v any) bool {
	if lr, ok := v.(*io.LimitedReader); ok {
		v = lr.R
	}
	_, ok := v.(syscall.Conn)
	return ok
}

const copyBufSize = 32 << 10 // io.Copy's own

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// copyPooled is io.Copy with a pooled buffer; the wrappers keep io from
// calling back into ReadFrom or WriteTo.
func copyPooled(dst io.Writer, src io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf[:])
}

// CloseWrite half-closes the connection, which TCP proxying needs to pass
// a peer's FIN through while the other direction still flows.
func (cn *conn) CloseWrite() error {
	if cw, ok := cn.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return cn.Close()
}

// CloseRead half-closes the reading side.
func (cn *conn) CloseRead() error {
	if cr, ok := cn.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return nil
}

// ResponseHeaderNames returns the non-canonical header names of the last
// final (non-1xx) HTTP/1.1 response read on c, the upstream connection
// that httptrace's GotConn reported for a request; nil when they were all
// canonical or c is not one of this package's connections. Until the
// response's body is read, that response is the one the Transport just
// returned: it sends the connection's next request only after.
//
// Callers learn c from GotConn, so every path that sends HTTP/1.1
// requests on this package's connections must report the connection to
// the request's httptrace GotConn hook, as net/http's Transport does.
func ResponseHeaderNames(c net.Conn) http1.HeaderNames {
	if cn, ok := c.(*conn); ok {
		return cn.heads.Names()
	}
	return nil
}
