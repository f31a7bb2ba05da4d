package hcm

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/http1"
	"github.com/trellismesh/trellis/internal/proxy/netio"
)

// headerConn is what the net/http server reads from. It adds what the
// server lacks for a proxy facing untrusted clients: a 408 when a
// request's headers do not arrive within ReadHeaderTimeout (net/http just
// closes the connection, which a client cannot tell from a crash), and
// counting the 431s net/http writes itself.
type headerConn struct {
	*Conn
	stats *Stats
	// raw, when set, reads and writes the connection with raw system
	// calls (netio.RawIO); the fast path sets it, net/http's never.
	raw *netio.RawIO
	// fast marks the fast path's connection, whose bytes frames does not
	// follow: its heads are plain (no Transfer-Encoding), read by its own
	// parser, which gives fastNames; a connection handed to net/http gets
	// a new headerConn that follows them from the first byte not consumed.
	fast      bool
	fastNames http1.HeaderNames

	// pending counts bytes read since the last response was written: a
	// timeout with some is a request cut off mid-headers, one without is
	// an idle keep-alive connection expiring.
	pending atomic.Int64
	// aborting marks net/http's own way of interrupting a background
	// read (a deadline in the past), which is not a client's timeout.
	aborting atomic.Bool
	h2       atomic.Bool
	// h2lim, set on net/http's connections, has the HTTP/2 frames read
	// followed (h2w, see h2limits.go) to count the server's refusals.
	h2lim *h2Limits
	h2w   *h2Watch
	// timedOut is set once the 408 is written.
	timedOut atomic.Bool
	// sniffed counts the bytes of the HTTP/2 preface matched so far; -1
	// once the connection is known to be HTTP/1.
	sniffed atomic.Int32

	// frames follows the HTTP/1 messages' framing to find requests with
	// both Content-Length and Transfer-Encoding, which net/http accepts
	// (it drops the Content-Length, as RFC 9112 §6.3 allows) but a proxy
	// must not forward: the next hop may frame them by Content-Length and
	// read the rest of the body as another request (request smuggling).
	// Its NextRequest counts the requests handed to the handler.
	frames http1.Framing

	// For header case on HTTP/1 (see http1/headercase.go), owned by the
	// handler of the connection's current request (HTTP/1 requests are
	// handled one at a time): the request's non-canonical header names.
	requestNames http1.HeaderNames
	// spare are unused slots of the fast path's values array for the
	// current request, for the headers the proxy adds (fast path only).
	spare []string
}

var (
	h2Preface      = []byte("PRI * HTTP/2.0")
	status431      = []byte("HTTP/1.1 431 ")
	requestTimeout = []byte("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	longAgo        = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

var errHeaderTimeout net.Error = headerTimeoutError{}

// headerTimeoutError is a timeout, so that net/http takes it for a
// common read error and closes the connection quietly after our 408,
// rather than writing a 400 of its own after it.
type headerTimeoutError struct{}

func (headerTimeoutError) Error() string   { return "hcm: request headers not received in time" }
func (headerTimeoutError) Timeout() bool   { return true }
func (headerTimeoutError) Temporary() bool { return false }

func (c *headerConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.raw != nil {
		n, err = c.raw.Read(p)
	} else {
		n, err = c.Conn.Read(p)
	}
	from := 0 // where this read's HTTP/2 frames start
	if n > 0 {
		if m := int(c.sniffed.Load()); m >= 0 && m < len(h2Preface) {
			k := min(n, len(h2Preface)-m)
			if bytes.Equal(p[:k], h2Preface[m:m+k]) {
				m += k
				c.h2.Store(m == len(h2Preface))
				from = k
			} else {
				m = -1
			}
			c.sniffed.Store(int32(m))
		}
		if !c.h2.Load() && !c.fast && c.frames.Scan(p[:n]) {
			c.stats.RqHeaderTooLarge.Add(1)
		}
		c.pending.Add(int64(n))
	}
	if c.h2lim != nil && c.h2.Load() {
		c.watchH2(p[from:n], err)
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.aborting.Load() && !c.h2.Load() && c.pending.Load() > 0 {
		// net/http may read again after the first timeout: one 408.
		if c.timedOut.CompareAndSwap(false, true) {
			c.stats.RqHeaderTimeout.Add(1)
			c.Conn.Write(requestTimeout)
		}
		return n, errHeaderTimeout
	}
	return n, err
}

func (c *headerConn) Write(p []byte) (int, error) {
	c.pending.Store(0)
	// A 431 for refused trailers was counted when they were (scan).
	if !c.h2.Load() && bytes.HasPrefix(p, status431) && !c.trailersRefused() {
		c.stats.RqHeaderTooLarge.Add(1)
	}
	if c.raw != nil {
		return c.raw.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *headerConn) SetReadDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(longAgo))
	return c.Conn.SetReadDeadline(t)
}

// setBodyDeadline bounds the reads of a request body being forwarded by
// the request's deadline: a read past it fails, as after net/http's own
// interrupting deadline, without a 408.
func (c *headerConn) setBodyDeadline(t time.Time) {
	c.aborting.Store(true)
	c.Conn.SetReadDeadline(t)
}

func (c *headerConn) SetDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(longAgo))
	return c.Conn.SetDeadline(t)
}

// ambiguous counts the HTTP/1 request being handled (the handler calls
// it once per request, in order) and reports whether it or one before it
// on the connection had both Content-Length and Transfer-Encoding.
func (c *headerConn) ambiguous() bool { return c.frames.NextRequest() }

// desynced reports whether net/http is reading the request being handled
// from bytes that were not a request head as the client framed them (see
// http1.Framing.Desynced). The proxy serves requests full duplex, which
// turns off net/http's own guard, so such a connection cannot be trusted
// past that point and is closed without an answer.
func (c *headerConn) desynced() bool { return c.frames.Desynced() }

// bodyPending reports whether the body of the request being handled has
// not been read to its end.
func (c *headerConn) bodyPending() bool { return c.frames.BodyPending() }

// trailersRefused reports whether net/http refused the trailer section of
// the request being handled.
func (c *headerConn) trailersRefused() bool { return c.frames.TrailersRefused() }

// takeNames returns the non-canonical header names of the request being
// handled.
func (c *headerConn) takeNames() http1.HeaderNames { return c.frames.TakeNames() }
