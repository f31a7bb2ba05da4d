package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"
)

const (
	// DefaultTCPIdle is how long a TCP connection may sit between queries;
	// RFC 7766 section 6.2.3 recommends seconds, not minutes, for a busy
	// server.
	DefaultTCPIdle = 10 * time.Second
	// DefaultTCPWrite bounds writing one answer, so that a client that
	// stops reading cannot hold a goroutine forever.
	DefaultTCPWrite = 5 * time.Second
	// DefaultMaxTCPConns bounds concurrent TCP connections (and so
	// goroutines); past it new connections are closed at once and clients
	// fall back to retrying.
	DefaultMaxTCPConns = 256
	// DefaultMaxUDPSlow bounds the Slow calls for UDP queries in flight
	// (and so goroutines); past it new ones are dropped and clients retry.
	DefaultMaxUDPSlow = 256
)

// A Handler answers one message, which it must not retain: the server
// reuses its buffer. It returns the answer, or nil for none; over TCP nil
// closes the connection, since a message that gets no answer means the
// stream is not DNS or has lost its framing.
//
// A message it cannot answer at once (one that must be asked of another
// server, say) it hands back as slow instead, with resp nil. The server
// calls slow with a message of slow's own: over UDP in a goroutine of its
// own, so that one slow answer does not hold up the rest, at most
// Config.MaxUDPSlow at once; over TCP in the connection's goroutine, since
// answers on a connection go in order. slow's ctx ends when Serve stops.
type Handler func(ctx context.Context, msg []byte, udp bool) (resp []byte, slow Slow)

// Slow finishes answering a message that a Handler could not answer at
// once. It returns the answer, or nil for none.
type Slow func(ctx context.Context, msg []byte) []byte

// Config is what Serve serves, and how.
type Config struct {
	// Log gets what goes wrong on a socket; nil discards it.
	Log *slog.Logger
	// UDP and TCP are the sockets to serve; Serve owns and closes them.
	UDP []net.PacketConn
	TCP []net.Listener
	// Handle answers every message.
	Handle Handler
	// TCPIdle is how long a TCP connection may sit between queries
	// (default DefaultTCPIdle); TCPWrite bounds writing one answer to it
	// (default DefaultTCPWrite).
	TCPIdle, TCPWrite time.Duration
	// MaxTCPConns bounds concurrent TCP connections (default
	// DefaultMaxTCPConns).
	MaxTCPConns int
	// MaxUDPSlow bounds the Slow calls for UDP messages in flight (default
	// DefaultMaxUDPSlow); past it messages are dropped.
	MaxUDPSlow int
	// Dropped, when set, is called for each UDP message dropped because
	// MaxUDPSlow were in flight.
	Dropped func()
}

// Serve answers messages on cfg's sockets until ctx ends or a socket fails.
// Given at least one socket and a handler, Serve owns the sockets: it
// closes them, and every connection it accepted, before returning, and returns only once
// every goroutine it started (Slow calls included) has ended. It returns
// nil when ctx ended, or the error that stopped a socket.
func Serve(ctx context.Context, cfg Config) error {
	if len(cfg.UDP)+len(cfg.TCP) == 0 {
		return errors.New("dnsserver: nothing to serve: no packet conn or listener")
	}
	if cfg.Handle == nil {
		return errors.New("dnsserver: no handler")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.TCPIdle <= 0 {
		cfg.TCPIdle = DefaultTCPIdle
	}
	if cfg.TCPWrite <= 0 {
		cfg.TCPWrite = DefaultTCPWrite
	}
	if cfg.MaxTCPConns <= 0 {
		cfg.MaxTCPConns = DefaultMaxTCPConns
	}
	if cfg.MaxUDPSlow <= 0 {
		cfg.MaxUDPSlow = DefaultMaxUDPSlow
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &server{
		cfg:   &cfg,
		slow:  make(chan struct{}, cfg.MaxUDPSlow),
		conns: connSet{m: make(map[net.Conn]struct{}), max: cfg.MaxTCPConns},
	}
	errc := make(chan error, len(cfg.UDP)+len(cfg.TCP))
	for _, pc := range cfg.UDP {
		s.wg.Go(func() { errc <- s.serveUDP(ctx, pc) })
	}
	for _, l := range cfg.TCP {
		s.wg.Go(func() { errc <- s.serveTCP(ctx, l) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc: // a socket failed: stop the others too
	}
	cancel()
	for _, pc := range cfg.UDP {
		pc.Close()
	}
	for _, l := range cfg.TCP {
		l.Close()
	}
	s.conns.closeAll()
	s.wg.Wait()
	return err
}

// server is one Serve call's state.
type server struct {
	cfg   *Config
	wg    sync.WaitGroup
	slow  chan struct{} // a token for each UDP Slow call in flight
	conns connSet
}

// serveUDP answers each datagram in the reading goroutine unless the
// handler says it is slow: most answers are a map lookup and a small write,
// cheaper than handing them to another goroutine, and answering them here
// keeps the goroutine count fixed whatever the load.
func (s *server) serveUDP(ctx context.Context, pc net.PacketConn) error {
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retryable(err) {
				continue
			}
			return fmt.Errorf("dnsserver: udp: %w", err)
		}
		resp, slow := s.cfg.Handle(ctx, buf[:n], true)
		if slow == nil {
			if resp != nil {
				s.write(ctx, pc, resp, addr)
			}
			continue
		}
		select {
		case s.slow <- struct{}{}:
		default:
			if s.cfg.Dropped != nil {
				s.cfg.Dropped()
			}
			continue
		}
		msg := slices.Clone(buf[:n])
		// wg counts this goroutine, so this Add cannot race Serve's Wait.
		s.wg.Go(func() {
			defer func() { <-s.slow }()
			if resp := slow(ctx, msg); resp != nil {
				s.write(ctx, pc, resp, addr)
			}
		})
	}
}

func (s *server) write(ctx context.Context, pc net.PacketConn, resp []byte, addr net.Addr) {
	// A failed write is one lost answer; the client retries.
	if _, err := pc.WriteTo(resp, addr); err != nil && ctx.Err() == nil {
		s.cfg.Log.Debug("dnsserver: udp write", "to", addr, "err", err)
	}
}

func (s *server) serveTCP(ctx context.Context, l net.Listener) error {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retryable(err) {
				// Out of file descriptors or similar: wait for some to
				// free up, as net/http does, rather than spin or give up.
				s.cfg.Log.Warn("dnsserver: tcp accept", "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("dnsserver: tcp: %w", err)
		}
		backoff = 5 * time.Millisecond
		if !s.conns.add(c) {
			c.Close()
			continue
		}
		// wg counts this goroutine, so this Add cannot race Serve's Wait.
		s.wg.Go(func() {
			defer s.conns.remove(c)
			s.serveConn(ctx, c)
		})
	}
}

// serveConn answers length-prefixed messages on c in order (RFC 7766 allows
// answering out of order; in order is simpler, and most answers are
// immediate) until the client closes, idles or sends garbage.
func (s *server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	msg := make([]byte, 0, 512)
	for {
		c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdle))
		var err error
		if msg, err = readFramed(c, msg); err != nil {
			return
		}
		resp, slow := s.cfg.Handle(ctx, msg, false)
		if slow != nil {
			resp = slow(ctx, msg)
		}
		if resp == nil {
			return // not DNS, or the stream lost its framing
		}
		c.SetWriteDeadline(time.Now().Add(s.cfg.TCPWrite))
		if err := WriteFramed(c, resp); err != nil {
			return
		}
	}
}

// ReadFramed reads one message with its RFC 1035 section 4.2.2 two-byte
// length prefix, as DNS messages go over TCP.
func ReadFramed(r io.Reader) ([]byte, error) { return readFramed(r, nil) }

// readFramed is ReadFramed reading into buf's storage when it fits, so
// that a connection's loop does not allocate for every message.
func readFramed(r io.Reader, buf []byte) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := int(binary.BigEndian.Uint16(n[:]))
	msg := slices.Grow(buf[:0], size)[:size]
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// WriteFramed writes msg with its two-byte length prefix, in one Write so
// that it goes out in one segment.
func WriteFramed(w io.Writer, msg []byte) error {
	if len(msg) > 65535 {
		return errors.New("dnsserver: message over 65535 bytes")
	}
	out := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	copy(out[2:], msg)
	_, err := w.Write(out)
	return err
}

// retryable reports errors a socket recovers from: resource exhaustion
// (EMFILE, ENFILE, ENOBUFS, ENOMEM), a connection aborted before Accept
// returned it, and on UDP an ICMP error some earlier answer provoked.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNREFUSED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// connSet tracks open TCP connections so that Serve can close them when it
// stops; a connection blocked in Read would otherwise outlive Serve.
type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	max    int
	closed bool
}

// add tracks c, unless the set was closed or is full.
func (cs *connSet) add(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed || len(cs.m) >= cs.max {
		return false
	}
	cs.m[c] = struct{}{}
	return true
}

func (cs *connSet) remove(c net.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.m, c)
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
	for c := range cs.m {
		c.Close()
	}
}
