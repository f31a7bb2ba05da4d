package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/balance"
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
func (c *Cluster) dial(ctx context.Context, h *balance.Host) (*conn, error) {
	if err := c.acquireConn(ctx); err != nil {
		return nil, err
	}
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
	cn := &conn{Conn: nc, c: c}
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
// *conn must not become a non-nil net.Conn.
func (c *Cluster) dialHTTP(ctx context.Context, h *balance.Host) (net.Conn, error) {
	cn, err := c.dial(ctx, h)
	if err != nil {
		return nil, err
	}
	return cn, nil
}

// conn is an upstream connection that gives its slot back when closed.
type conn struct {
	net.Conn
	c        *Cluster
	requests atomic.Uint32 // HTTP/1.1 requests sent on it, for MaxRequestsPerConnection
	closed   atomic.Bool
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
// of *net.TCPConn, which the embedding would hide, for TCP proxying.
func (cn *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := cn.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{cn.Conn}, r)
}

func (cn *conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := cn.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{cn.Conn})
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
