// Package dnsproxy is the sidecar's DNS proxy (Istio's DNS proxying,
// ISTIO_META_DNS_CAPTURE): with DNS capture on, the pod's nftables rules
// send the app's DNS queries (UDP and TCP port 53) to it on 127.0.0.1:15053.
// It answers A and AAAA queries for the names the proxy's xDS config knows
// (Service hostnames and their short forms with their VIPs, ServiceEntry
// hosts with addresses) from a Table that the sidecar swaps on every config
// apply, and forwards every other query to the pod's real nameserver,
// relaying the answer. Its own forwards leave with the proxy's identity
// (gid 1337), which the capture rules let through, so they never loop.
package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	// DefaultTimeout bounds one exchange with the upstream nameserver.
	DefaultTimeout = 2 * time.Second
	// maxForwards bounds the UDP queries being forwarded at once (and so
	// goroutines); past it new ones are dropped and clients retry.
	maxForwards = 256
	// maxTCPConns bounds concurrent TCP connections from clients.
	maxTCPConns = 256
	// tcpIdle is how long a client's TCP connection may sit between queries.
	tcpIdle = 10 * time.Second
	// tcpWrite bounds writing one answer to a client.
	tcpWrite = 5 * time.Second
)

// Config configures a Server.
type Config struct {
	// Upstream is where queries the table cannot answer go: the pod's
	// nameserver as the proxy saw it at start (see Nameserver). The zero
	// value has none, and such queries get SERVFAIL.
	Upstream netip.AddrPort
	// Timeout bounds one exchange with the upstream (default
	// DefaultTimeout); a UDP answer with TC set gets one TCP retry with
	// its own Timeout.
	Timeout time.Duration
	Log     *slog.Logger
}

// Stats are the server's counters, named as Istio's agent names its DNS
// metrics (istio_agent_dns_*).
type Stats struct {
	// Requests is every query received (istio_agent_dns_requests_total).
	Requests uint64
	// Answered is the queries answered from the table.
	Answered uint64
	// Upstream is the queries forwarded (istio_agent_dns_upstream_requests_total).
	Upstream uint64
	// UpstreamFailures is the forwards that got no answer and were
	// answered SERVFAIL (istio_agent_dns_upstream_failures_total).
	UpstreamFailures uint64
	// UpstreamTCPRetries is the truncated UDP answers retried over TCP.
	UpstreamTCPRetries uint64
	// Dropped is the UDP queries dropped because too many were in flight.
	Dropped uint64
}

// Server is the DNS proxy. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	table    atomic.Pointer[Table]
	forwards chan struct{}

	requests, answered, upstream, failures, tcpRetries, dropped atomic.Uint64
}

// New returns a Server with an empty table.
func New(cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, forwards: make(chan struct{}, maxForwards)}
	s.table.Store(&Table{})
	return s
}

// SetTable replaces the names the server answers; queries in flight finish
// with the table they started with. A nil table knows no names.
func (s *Server) SetTable(t *Table) {
	if t == nil {
		t = &Table{}
	}
	s.table.Store(t)
}

// Table is the table the server answers from.
func (s *Server) Table() *Table { return s.table.Load() }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:           s.requests.Load(),
		Answered:           s.answered.Load(),
		Upstream:           s.upstream.Load(),
		UpstreamFailures:   s.failures.Load(),
		UpstreamTCPRetries: s.tcpRetries.Load(),
		Dropped:            s.dropped.Load(),
	}
}

// Serve answers queries on pcs (UDP) and ls (TCP, RFC 7766 framing) until
// ctx ends or a socket fails. Serve owns them all: it closes them, and every
// connection it accepted, and returns only once every goroutine it started
// (forwards included) has ended. It returns nil when ctx ended, or the error
// that stopped a socket.
func (s *Server) Serve(ctx context.Context, pcs []net.PacketConn, ls []net.Listener) error {
	if len(pcs)+len(ls) == 0 {
		return errors.New("dnsproxy: Serve needs a packet conn or a listener")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		conns = &connSet{m: map[net.Conn]struct{}{}}
		errc  = make(chan error, len(pcs)+len(ls))
	)
	for _, pc := range pcs {
		wg.Go(func() { errc <- s.serveUDP(ctx, pc, &wg) })
	}
	for _, l := range ls {
		wg.Go(func() { errc <- s.serveTCP(ctx, l, &wg, conns) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	for _, pc := range pcs {
		pc.Close()
	}
	for _, l := range ls {
		l.Close()
	}
	conns.closeAll()
	wg.Wait()
	return err
}

// serveUDP answers known names in the reading goroutine (a map lookup and a
// small write) and forwards the rest each in its own goroutine, at most
// maxForwards at once.
func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn, wg *sync.WaitGroup) error {
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
			return fmt.Errorf("dnsproxy: udp: %w", err)
		}
		resp, q, forward := s.resolve(buf[:n], true)
		if forward {
			select {
			case s.forwards <- struct{}{}:
			default:
				s.dropped.Add(1)
				continue
			}
			msg := slices.Clone(buf[:n])
			// wg counts this goroutine, so this Add cannot race Serve's Wait.
			wg.Go(func() {
				defer func() { <-s.forwards }()
				if resp := s.forward(ctx, msg, &q, true); resp != nil {
					s.write(ctx, pc, resp, addr)
				}
			})
			continue
		}
		if resp != nil {
			s.write(ctx, pc, resp, addr)
		}
	}
}

func (s *Server) write(ctx context.Context, pc net.PacketConn, resp []byte, addr net.Addr) {
	// A failed write is one lost answer; the client retries.
	if _, err := pc.WriteTo(resp, addr); err != nil && ctx.Err() == nil {
		s.log.Debug("dnsproxy: udp write", "to", addr, "err", err)
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
				s.log.Warn("dnsproxy: tcp accept", "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("dnsproxy: tcp: %w", err)
		}
		backoff = 5 * time.Millisecond
		if !conns.add(c) {
			c.Close()
			continue
		}
		wg.Go(func() {
			defer conns.remove(c)
			s.serveConn(ctx, c)
		})
	}
}

// serveConn answers length-prefixed queries on c in order until the client
// closes, idles or sends garbage.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		msg, err := readFramed(c)
		if err != nil {
			return
		}
		resp, q, forward := s.resolve(msg, false)
		if forward {
			resp = s.forward(ctx, msg, &q, false)
		}
		if resp == nil {
			return // not DNS, or the stream lost its framing
		}
		c.SetWriteDeadline(time.Now().Add(tcpWrite))
		if err := writeFramed(c, resp); err != nil {
			return
		}
	}
}

// resolve answers msg from the table, or says to forward it (forward true,
// with the parsed query), or to drop it (both nil: not even a header, or a
// response, which is never answered so that two servers cannot reflect
// messages at each other).
func (s *Server) resolve(msg []byte, udp bool) (resp []byte, q query, forward bool) {
	q, err := parseQuery(msg)
	if err != nil && !errors.Is(err, errFormat) {
		return nil, q, false
	}
	if q.header.Response {
		return nil, q, false
	}
	s.requests.Add(1)
	limit := 65535
	if udp {
		limit = q.udpLimit()
	}
	if err != nil {
		// Malformed: answered here rather than sent to the nameserver.
		q.q = dnsmessage.Question{}
		q.edns = false
		return reply(&q, dnsmessage.RCodeFormatError, false, nil, limit), q, false
	}
	if q.header.OpCode != 0 || q.q.Class != dnsmessage.ClassINET ||
		q.q.Type != dnsmessage.TypeA && q.q.Type != dnsmessage.TypeAAAA {
		return nil, q, true
	}
	addrs, ok := s.table.Load().Lookup(q.q.Name.String())
	if !ok {
		return nil, q, true
	}
	s.answered.Add(1)
	// A known name without an address of the asked family is NOERROR with
	// no answers (NODATA), as Istio's DNS proxy answers.
	return reply(&q, dnsmessage.RCodeSuccess, true, addrs, limit), q, false
}

// forward sends msg to the upstream and returns its answer, or a SERVFAIL
// when there is none. A query that came over UDP goes over UDP, and is
// retried over TCP when the answer is truncated; the TCP answer is relayed
// if it fits the client's UDP size, else the truncated one is, so the
// client retries over TCP itself.
func (s *Server) forward(ctx context.Context, msg []byte, q *query, udp bool) []byte {
	limit := 65535
	if udp {
		limit = q.udpLimit()
	}
	if !s.cfg.Upstream.IsValid() {
		s.failures.Add(1)
		return reply(q, dnsmessage.RCodeServerFailure, false, nil, limit)
	}
	s.upstream.Add(1)
	var (
		resp []byte
		err  error
	)
	if udp {
		resp, err = s.exchangeUDP(ctx, msg, q.header.ID)
		if _, _, tc, _ := header(resp); err == nil && tc {
			s.tcpRetries.Add(1)
			if full, err := s.exchangeTCP(ctx, msg, q.header.ID); err == nil && len(full) <= limit {
				resp = full
			}
		}
	} else {
		resp, err = s.exchangeTCP(ctx, msg, q.header.ID)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // shutting down
		}
		s.failures.Add(1)
		s.log.Debug("dnsproxy: upstream", "upstream", s.cfg.Upstream, "name", q.q.Name.String(), "err", err)
		return reply(q, dnsmessage.RCodeServerFailure, false, nil, limit)
	}
	return resp
}

// exchangeUDP sends msg from a socket of its own, so that only the
// upstream's answers reach it, and waits for the answer with msg's id.
func (s *Server) exchangeUDP(ctx context.Context, msg []byte, id uint16) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", s.cfg.Upstream.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		if rid, response, _, ok := header(buf[:n]); ok && response && rid == id {
			return slices.Clone(buf[:n]), nil
		}
	}
}

// exchangeTCP sends msg over a new TCP connection and reads one answer.
func (s *Server) exchangeTCP(ctx context.Context, msg []byte, id uint16) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.cfg.Upstream.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeFramed(c, msg); err != nil {
		return nil, err
	}
	for {
		resp, err := readFramed(c)
		if err != nil {
			return nil, err
		}
		if rid, response, _, ok := header(resp); ok && response && rid == id {
			return resp, nil
		}
	}
}

func readFramed(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeFramed(w io.Writer, msg []byte) error {
	if len(msg) > 65535 {
		return errors.New("dnsproxy: message over 65535 bytes")
	}
	out := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	copy(out[2:], msg)
	_, err := w.Write(out)
	return err
}

// retryable reports errors a socket recovers from: resource exhaustion, a
// connection aborted before Accept returned it, and on UDP an ICMP error
// some earlier answer provoked.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNREFUSED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// connSet tracks open client TCP connections so that Serve can close them.
type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	closed bool
}

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
