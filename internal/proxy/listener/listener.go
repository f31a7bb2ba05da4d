package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/origdst"
)

// DefaultMaxConnections bounds downstream connections per port: far above
// what a sidecar's app opens, but finite, so a flood runs into a counted
// limit rather than the process's file descriptors (Envoy sets no limit
// unless the overload manager is configured).
const DefaultMaxConnections = 100000

// Handler serves one accepted connection and returns when done with it;
// the listener closes it afterwards. dst is where the connection was
// headed.
type Handler func(c net.Conn, dst netip.AddrPort)

// Options configure a Listener.
type Options struct {
	// OriginalDst recovers each connection's destination before capture
	// rewrote it (transparent mode); otherwise dst is the local address.
	OriginalDst bool
	// MaxConnections bounds connections being served at once; more are
	// closed on accept and counted. 0 means DefaultMaxConnections.
	MaxConnections int
	// OverflowReply, when set, is written (best effort, without waiting)
	// to a connection refused for the limit before it is closed: an HTTP
	// port answers 503 rather than a bare close the client cannot explain.
	OverflowReply []byte
	Log           *slog.Logger
}

// Listener is one bound port.
type Listener struct {
	name string
	ln   net.Listener
	opts Options
	log  *slog.Logger

	active                    atomic.Int64
	total, overflow, dstFails atomic.Uint64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
}

// Listen binds addr ("ip:port") for the listener named name.
func Listen(name, addr string, opts Options) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w (is another proxy using this pod IP and port?)", name, err)
	}
	return New(name, ln, opts), nil
}

// New wraps an already bound net.Listener.
func New(name string, ln net.Listener, opts Options) *Listener {
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{name: name, ln: ln, opts: opts, log: log.With("listener", name), conns: map[net.Conn]struct{}{}}
}

// Name is the listener's name.
func (l *Listener) Name() string { return l.name }

// Addr is the bound address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Serve accepts until Close, running h for each connection. It returns
// nil after Close.
func (l *Listener) Serve(h Handler) error {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: the process is out of descriptors, and
			// spinning would not help; waiting for one to free up might.
			l.log.Warn("accept failed", "err", err)
			if !l.pause() {
				return nil
			}
			continue
		}
		l.total.Add(1)
		if l.active.Load() >= int64(l.opts.MaxConnections) {
			l.overflow.Add(1)
			if len(l.opts.OverflowReply) > 0 {
				c.SetWriteDeadline(time.Now().Add(overflowWriteTimeout))
				c.Write(l.opts.OverflowReply)
			}
			c.Close()
			continue
		}
		dst := addrPort(c.LocalAddr())
		if l.opts.OriginalDst {
			if tc, ok := c.(*net.TCPConn); ok {
				if od, err := origdst.Get(tc); err == nil {
					dst = od
				} else {
					l.dstFails.Add(1)
					l.log.Debug("no original destination", "err", err)
				}
			}
		}
		if !l.track(c) {
			c.Close()
			return nil
		}
		go func() {
			defer l.untrack(c)
			h(c, dst)
		}()
	}
}

// pause waits briefly after an accept error; false once closed.
func (l *Listener) pause() bool {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), acceptRetry)
	defer cancel()
	<-ctx.Done()
	return true
}

func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.active.Add(1)
	l.wg.Add(1)
	return true
}

func (l *Listener) untrack(c net.Conn) {
	c.Close()
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.active.Add(-1)
	l.wg.Done()
}

// Close stops accepting; connections being served go on.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.ln.Close()
}

// Wait waits for every handler to return; when ctx ends first it closes
// the remaining connections, waits for their handlers and returns ctx's
// error.
func (l *Listener) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	<-done
	return ctx.Err()
}

// Stats are the listener's counters, by Envoy's listener stat names.
type Stats struct {
	CxActive   int64  // downstream_cx_active
	CxTotal    uint64 // downstream_cx_total
	CxOverflow uint64 // downstream_cx_overflow
	// OriginalDstFailures counts captured connections whose destination
	// could not be read; they are handled as addressed to the listener.
	OriginalDstFailures uint64
}

// Stats returns the current counters.
func (l *Listener) Stats() Stats {
	return Stats{CxActive: l.active.Load(), CxTotal: l.total.Load(), CxOverflow: l.overflow.Load(), OriginalDstFailures: l.dstFails.Load()}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// overflowWriteTimeout bounds writing OverflowReply: the accept loop must
// not wait on a client that does not read.
const overflowWriteTimeout = 10 * time.Millisecond

// acceptRetry is how long Serve waits after an accept error other than a
// timeout, as net/http does (it backs off up to a second).
const acceptRetry = 50 * time.Millisecond
