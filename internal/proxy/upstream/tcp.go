package upstream

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/balance"
)

// DialTCP connects to a host of the cluster for TCP proxying, from the
// configured source address. The connection counts against MaxConnections
// and as an active request on the returned host until it is closed; it
// keeps *net.TCPConn's splice paths and half-close (CloseWrite). The copy
// itself is the caller's. Of call, the hash and the destination count.
func (c *Cluster) DialTCP(ctx context.Context, call *Call) (net.Conn, *balance.Host, Flags, error) {
	if c.isClosed() {
		if next := c.successor.Load(); next != nil {
			return next.DialTCP(ctx, call)
		}
		return nil, nil, NoHealthyUpstream, ErrClosed
	}
	h := c.pick(call)
	if h == nil {
		return nil, nil, NoHealthyUpstream, ErrNoHealthyUpstream
	}
	h.Start()
	start := time.Now()
	cn, err := c.dial(ctx, h, false)
	latency := time.Since(start)
	if err != nil {
		h.Done(latency)
		var de *dialError
		switch {
		case errors.Is(err, ErrOverflow):
			return nil, h, UpstreamOverflow, err
		case errors.As(err, &de):
			c.bal.ReportLocalFailure(h, false) // as Envoy's tcp_proxy
			return nil, h, UpstreamConnectionFailure, err
		case errors.Is(err, ErrClosed):
			return nil, h, NoHealthyUpstream, err
		}
		return nil, h, c.errorFlags(ctx, err), err
	}
	c.bal.ReportConnected(h)
	return &tcpConn{conn: cn, host: h, latency: latency}, h, 0, nil
}

// tcpConn ends the host's active count on Close. The connect time stands
// in for its latency: a TCP stream's lifetime says nothing about the host.
type tcpConn struct {
	*conn
	host    *balance.Host
	latency time.Duration
	done    atomic.Bool
}

func (t *tcpConn) Close() error {
	err := t.conn.Close()
	if t.done.CompareAndSwap(false, true) {
		t.host.Done(t.latency)
	}
	return err
}
