package meshdns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/dnsserver"
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

// Serve answers queries on pc (UDP) and l (TCP, RFC 7766 framing) until
// ctx ends; either may be nil, not both. Serve owns both: it closes them, and
// every connection it accepted, before returning, and returns only once
// every goroutine it started has ended. It returns nil when ctx ended, or
// the error that stopped a socket.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	cfg := dnsserver.Config{
		Log: s.log,
		// Every answer is immediate: a lookup in the zone.
		Handle: func(_ context.Context, msg []byte, udp bool) ([]byte, dnsserver.Slow) {
			return s.respond(msg, udp), nil
		},
	}
	if pc != nil {
		cfg.UDP = []net.PacketConn{pc}
	}
	if l != nil {
		cfg.TCP = []net.Listener{l}
	}
	return dnsserver.Serve(ctx, cfg)
}
