package dnsproxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/trellismesh/trellis/internal/dnsserver"
)

// DefaultTimeout bounds one exchange with the upstream nameserver.
const DefaultTimeout = 2 * time.Second

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
	cfg   Config
	log   *slog.Logger
	table atomic.Pointer[Table]

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
	s := &Server{cfg: cfg, log: log}
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
	return dnsserver.Serve(ctx, dnsserver.Config{
		Log:    s.log,
		UDP:    pcs,
		TCP:    ls,
		Handle: s.handle,
		// Forwards over UDP past dnsserver's bound are dropped; clients
		// retry.
		Dropped: func() { s.dropped.Add(1) },
	})
}

// handle answers known names at once (a map lookup) and makes the rest
// slow, so that dnsserver forwards each over UDP in its own goroutine.
func (s *Server) handle(_ context.Context, msg []byte, udp bool) ([]byte, dnsserver.Slow) {
	resp, q, forward := s.resolve(msg, udp)
	if !forward {
		return resp, nil
	}
	return nil, func(ctx context.Context, msg []byte) []byte {
		return s.forward(ctx, msg, &q, udp)
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
	c, done, err := s.dialUpstream(ctx, "udp")
	if err != nil {
		return nil, err
	}
	defer done()
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

// dialUpstream connects to the upstream nameserver; the connection's
// deadline is the exchange's timeout, cut short if ctx ends. done releases
// it all.
func (s *Server) dialUpstream(ctx context.Context, network string) (net.Conn, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	var d net.Dialer
	c, err := d.DialContext(ctx, network, s.cfg.Upstream.String())
	if err != nil {
		cancel()
		return nil, nil, err
	}
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	return c, func() { stop(); c.Close(); cancel() }, nil
}

// exchangeTCP sends msg over a new TCP connection and reads one answer.
func (s *Server) exchangeTCP(ctx context.Context, msg []byte, id uint16) ([]byte, error) {
	c, done, err := s.dialUpstream(ctx, "tcp")
	if err != nil {
		return nil, err
	}
	defer done()
	if err := dnsserver.WriteFramed(c, msg); err != nil {
		return nil, err
	}
	for {
		resp, err := dnsserver.ReadFramed(c)
		if err != nil {
			return nil, err
		}
		if rid, response, _, ok := header(resp); ok && response && rid == id {
			return resp, nil
		}
	}
}
