package hcm

import (
	"bytes"
	"errors"
	"os"
	"sync/atomic"
	"time"
)

// headerConn is what the net/http server reads from. It adds what the
// server lacks for a proxy facing untrusted clients: a 408 when a
// request's headers do not arrive within ReadHeaderTimeout (net/http just
// closes the connection, which a client cannot tell from a crash), and
// counting the 431s net/http writes itself.
type headerConn struct {
	*Conn
	stats *Stats

	// pending counts bytes read since the last response was written: a
	// timeout with some is a request cut off mid-headers, one without is
	// an idle keep-alive connection expiring.
	pending atomic.Int64
	// aborting marks net/http's own way of interrupting a background
	// read (a deadline in the past), which is not a client's timeout.
	aborting atomic.Bool
	h2       atomic.Bool
	started  atomic.Bool
}

var (
	h2Preface        = []byte("PRI * HTTP/2.0")
	status431        = []byte("HTTP/1.1 431 ")
	requestTimeout   = []byte("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	longAgo          = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	errHeaderTimeout = errors.New("hcm: request headers not received in time")
)

func (c *headerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if c.started.CompareAndSwap(false, true) && bytes.HasPrefix(p[:n], h2Preface[:min(n, len(h2Preface))]) {
			c.h2.Store(true)
		}
		c.pending.Add(int64(n))
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.aborting.Load() && !c.h2.Load() && c.pending.Load() > 0 {
		c.stats.RqHeaderTimeout.Add(1)
		c.Conn.Write(requestTimeout)
		return n, errHeaderTimeout
	}
	return n, err
}

func (c *headerConn) Write(p []byte) (int, error) {
	c.pending.Store(0)
	if !c.h2.Load() && bytes.HasPrefix(p, status431) {
		c.stats.RqHeaderTooLarge.Add(1)
	}
	return c.Conn.Write(p)
}

func (c *headerConn) SetReadDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(longAgo))
	return c.Conn.SetReadDeadline(t)
}

func (c *headerConn) SetDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(longAgo))
	return c.Conn.SetDeadline(t)
}
