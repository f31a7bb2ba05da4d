package meshdns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// tcpIdle is how long a TCP connection may sit between queries; RFC 7766
	// section 6.2.3 recommends seconds, not minutes, for a busy server.
	tcpIdle = 10 * time.Second
	// tcpWrite bounds writing one answer, so a client that stops reading
	// cannot hold a goroutine forever.
	tcpWrite = 5 * time.Second
	// maxTCPConns bounds concurrent TCP connections (and so goroutines); past
	// it new connections are closed at once and clients fall back to retry.
	maxTCPConns = 256
)

// Server answers DNS queries for one cluster domain from the Services last
// given to SetServices. Its methods are safe for concurrent use.
type Server struct {
	origin string // "cluster.local.", lower case
	log    *slog.Logger
	serial atomic.Uint32
	zone   atomic.Pointer[zone]
	setMu  sync.Mutex // orders SetServices calls so serials only grow
}

// New returns a Server for domain ("cluster.local" when empty) that serves no
// Services yet. log may be nil.
func New(domain string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	origin := lowerASCII(strings.TrimSuffix(domain, "."))
	if origin == "" {
		origin = "cluster.local"
	}
	s := &Server{origin: origin + ".", log: log}
	// Start serials at the clock, as CoreDNS does, so a restarted server's
	// zone does not look older than the one a resolver cached.
	s.serial.Store(uint32(time.Now().Unix()))
	s.SetServices(nil)
	return s
}

// SetServices replaces the served Services with svcs. Queries in flight
// finish on the old set; each query sees one whole set, never a mix. svcs is
// not retained.
func (s *Server) SetServices(svcs []Service) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.zone.Store(buildZone(s.origin, s.serial.Add(1), svcs, s.log))
}

// ResolvConf returns the /etc/resolv.conf that kubelet writes for a pod in
// namespace with ClusterFirst DNS: the mesh's nameserver, the search list
// that makes `reviews` and `reviews.ns` resolve, and ndots:5 so that names
// with fewer than five dots try the search list first.
func ResolvConf(domain, namespace string, nameserver netip.Addr) string {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		domain = "cluster.local"
	}
	return fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
		nameserver, namespace, domain, domain, domain)
}

// Serve answers queries on pc (UDP) and l (TCP, RFC 7766 framing) until ctx
// ends; either may be nil, not both. Serve owns both: it closes them, and
// every connection it accepted, before returning, and returns only once
// every goroutine it started has ended. It returns nil when ctx ended, or
// the error that stopped a socket.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	if pc == nil && l == nil {
		return errors.New("meshdns: Serve needs a packet conn or a listener")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		conns = &connSet{m: make(map[net.Conn]struct{})}
		errc  = make(chan error, 2)
	)
	if pc != nil {
		wg.Go(func() { errc <- s.serveUDP(ctx, pc) })
	}
	if l != nil {
		wg.Go(func() { errc <- s.serveTCP(ctx, l, &wg, conns) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc: // a socket failed: stop the other one too
	}
	cancel()
	if pc != nil {
		pc.Close()
	}
	if l != nil {
		l.Close()
	}
	conns.closeAll()
	wg.Wait()
	return err
}

// serveUDP answers each datagram in the reading goroutine: an answer is a
// map lookup and a small write, cheaper than handing it to another
// goroutine, and it keeps the goroutine count fixed whatever the load.
func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn) error {
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
			return fmt.Errorf("meshdns: udp: %w", err)
		}
		if resp := s.respond(buf[:n], true); resp != nil {
			// A failed write is one lost answer; the client retries.
			if _, err := pc.WriteTo(resp, addr); err != nil && ctx.Err() == nil {
				s.log.Debug("meshdns: udp write", "to", addr, "err", err)
			}
		}
	}
}

func (s *Server) serveTCP(ctx context.Context, l net.Listener, wg *sync.WaitGroup, conns *connSet) error {
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
				s.log.Warn("meshdns: tcp accept", "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("meshdns: tcp: %w", err)
		}
		backoff = 5 * time.Millisecond
		if !conns.add(c) {
			c.Close()
			continue
		}
		// wg's count includes this goroutine, so Add here cannot race
		// Serve's Wait.
		wg.Go(func() {
			defer conns.remove(c)
			s.serveConn(c)
		})
	}
}

// serveConn answers length-prefixed queries on c in order (RFC 7766 allows
// answering out of order; in order is simpler and every answer is
// immediate) until the client closes, idles or sends garbage.
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	var (
		lenBuf [2]byte
		msg    = make([]byte, 0, 512)
	)
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		msg = msg[:0]
		if cap(msg) < n {
			msg = make([]byte, 0, n)
		}
		msg = msg[:n]
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp := s.respond(msg, false)
		if resp == nil {
			// Not even a header: the stream is not DNS, or lost its framing.
			return
		}
		out := make([]byte, 2+len(resp))
		binary.BigEndian.PutUint16(out, uint16(len(resp)))
		copy(out[2:], resp)
		c.SetWriteDeadline(time.Now().Add(tcpWrite))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
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
	closed bool
}

// add tracks c, unless the set was closed or is full.
func (cs *connSet) add(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed || len(cs.m) >= maxTCPConns {
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
