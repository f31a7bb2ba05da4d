package sniff

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/netio"
)

// DefaultTimeout is used when Detect is given a timeout ≤ 0. It is Istio's
// historic protocolDetectionTimeout: long enough for a client-first
// protocol's first segment to arrive on a loaded node, short enough that a
// server-first protocol's handshake is delayed by no more than this once
// per connection.
const DefaultTimeout = 100 * time.Millisecond

// Protocol is what Detect concluded.
type Protocol uint8

const (
	// TCP is everything not recognised, and clients that stayed silent:
	// the connection is proxied as opaque bytes.
	TCP Protocol = iota
	// HTTP1 is an HTTP/1.x request line with a known method.
	HTTP1
	// HTTP2 is the prior-knowledge (h2c) connection preface.
	HTTP2
	// TLS is a TLS ClientHello; the application protocol inside is
	// whatever ALPN names.
	TLS
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case HTTP1:
		return "http/1.1"
	case HTTP2:
		return "h2c"
	case TLS:
		return "tls"
	}
	return "unknown"
}

// Result describes the first bytes of a connection.
type Result struct {
	Protocol Protocol
	// Method is the HTTP/1 request method (HTTP1 only). It is one of the
	// package's constant strings, so comparing it costs nothing.
	Method string
	// SNI is the ClientHello's server_name, lowercased and without a
	// trailing dot (TLS only; empty when absent, malformed, or the
	// ClientHello did not arrive completely within the timeout).
	SNI string
	// ALPN is the ClientHello's protocol list in client order (TLS only).
	ALPN []string
	// TimedOut says the decision was forced by the timeout rather than
	// made from the bytes: a silent (server-first) client, or one that
	// stopped mid-way through an ambiguous prefix.
	TimedOut bool
}

const (
	// smallPeek holds any HTTP decision (the longest thing to match is
	// the 24-byte h2 preface) and the ClientHellos browsers and Go send
	// today, post-quantum key shares included (~1.2–1.9 KiB).
	smallPeek = 4 << 10
	// MaxPeek bounds what Detect buffers from one client: a ClientHello
	// larger than this (a handshake message may be up to 16 MiB on paper)
	// is reported as TLS without SNI/ALPN instead of growing further.
	MaxPeek = 64 << 10
)

// Detect reads the first bytes of conn, for at most timeout, and says what
// protocol they are. It returns as soon as the bytes decide it — the first
// byte alone rules out HTTP and TLS for most binary protocols — and after
// timeout otherwise. The returned conn replays every byte Detect read
// before reading more from conn; when nothing was read it is conn itself.
// The returned conn implements CloseWrite when conn does, and offers
// NetConn to reach conn (for SO_ORIGINAL_DST and the like).
//
// Detect owns conn's read deadline while it runs and clears it before
// returning. A client that closes without sending anything is TCP with no
// error: it may be a half-close waiting for the server's answer. Any other
// read error is returned, with conn, for the caller to close.
func Detect(conn net.Conn, timeout time.Duration) (Result, net.Conn, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Result{}, conn, err
	}
	bp := getBuf(smallPeek)
	buf := (*bp)[:0]
	var (
		res      Result
		decided  bool
		timedOut bool
		rerr     error
	)
	for !decided {
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			var want int
			res, decided, want = classify(buf)
			if !decided && want > cap(buf) {
				if want > MaxPeek {
					// Only a ClientHello asks for more than smallPeek.
					res, decided = Result{Protocol: TLS}, true
					break
				}
				nbp := getBuf(MaxPeek)
				buf = append((*nbp)[:0], buf...)
				putBuf(bp)
				bp = nbp
			}
		}
		if decided {
			break
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				timedOut = true
			} else if !errors.Is(err, io.EOF) {
				rerr = err
			}
			res = undecided(buf)
			break
		}
		if len(buf) == cap(buf) {
			// Cannot happen for HTTP (decided within 24 bytes) and a
			// ClientHello grows the buffer above; kept so a classifier
			// bug cannot spin on a full buffer.
			res = undecided(buf)
			break
		}
	}
	res.TimedOut = timedOut
	// The error is ignored: it only says the conn is closed (net.Pipe also
	// reports a peer that went away), which the caller's next Read or
	// Write reports in its place, after the bytes already peeked.
	_ = conn.SetReadDeadline(time.Time{})
	if rerr != nil || len(buf) == 0 {
		putBuf(bp)
		if rerr != nil {
			return Result{}, conn, rerr
		}
		return res, conn, nil
	}
	return res, netio.ReplayPooled(conn, buf, bp, poolOf(bp)), nil
}

// Peek buffers are pooled because every sniffed connection needs one only
// briefly: the proxy's first read drains it, and it goes back at once.
var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallPeek); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, MaxPeek); return &b }}
)

func getBuf(size int) *[]byte {
	if size > smallPeek {
		return largePool.Get().(*[]byte)
	}
	return smallPool.Get().(*[]byte)
}

func poolOf(bp *[]byte) *sync.Pool {
	if cap(*bp) > smallPeek {
		return &largePool
	}
	return &smallPool
}

func putBuf(bp *[]byte) { poolOf(bp).Put(bp) }
