package sidecar

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/trellismesh/trellis/internal/proxy/dnsproxy"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// DNSPort is where the sidecar's DNS proxy listens when DNS capture is on
// (Istio's 15053): the capture rules redirect the app's queries there.
const DNSPort = 15053

// DNSCaptureAddrs are the addresses the DNS proxy serves in transparent
// mode: the pod's loopback of both families, where REDIRECT delivers
// captured IPv4 and IPv6 queries.
func DNSCaptureAddrs() []string {
	return []string{
		net.JoinHostPort("127.0.0.1", strconv.Itoa(DNSPort)),
		net.JoinHostPort("::1", strconv.Itoa(DNSPort)),
	}
}

// resolvConf is where the DNS proxy finds its upstream when
// Options.DNSUpstream is unset: the pod's nameserver as the proxy sees it
// at start.
var resolvConf = "/etc/resolv.conf"

// serveDNS starts the DNS proxy on Options.DNS (UDP and TCP on each) when
// set. The returned stop ends it and waits for it. An IPv6 address that
// cannot be bound (a pod without IPv6) is skipped when another was bound.
func (p *Proxy) serveDNS() (stop func(), err error) {
	if len(p.opts.DNS) == 0 {
		return func() {}, nil
	}
	upstream := p.opts.DNSUpstream
	if !upstream.IsValid() {
		ns, err := dnsproxy.Nameserver(resolvConf)
		if err != nil {
			p.log.Warn("dns proxy: no upstream nameserver; names the mesh does not know get SERVFAIL", "err", err)
		}
		upstream = ns
	}
	var (
		pcs        []net.PacketConn
		ls         []net.Listener
		errs, ipv6 []error
	)
	for _, addr := range p.opts.DNS {
		err := func() error {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return fmt.Errorf("dns proxy on udp %s: %w", addr, err)
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				pc.Close()
				return fmt.Errorf("dns proxy on tcp %s: %w", addr, err)
			}
			pcs, ls = append(pcs, pc), append(ls, l)
			return nil
		}()
		if err == nil {
			continue
		}
		if ap, perr := netip.ParseAddrPort(addr); perr == nil && ap.Addr().Is6() {
			ipv6 = append(ipv6, err)
		} else {
			errs = append(errs, err)
		}
	}
	if len(pcs) == 0 {
		errs = append(errs, ipv6...)
	}
	if err := errors.Join(errs...); err != nil {
		for i := range pcs {
			pcs[i].Close()
			ls[i].Close()
		}
		return nil, err
	}
	if len(ipv6) > 0 {
		p.log.Warn("dns proxy: not on IPv6", "err", errors.Join(ipv6...))
	}
	srv := dnsproxy.New(dnsproxy.Config{Upstream: upstream, Log: p.log})
	p.dns = srv
	p.refreshDNSTable()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, pcs, ls); err != nil {
			p.log.Error("dns proxy stopped", "err", err)
		}
	}()
	p.log.Info("dns proxy serving", "addrs", p.opts.DNS, "upstream", upstream)
	return func() { cancel(); <-done }, nil
}

// refreshDNS gives the DNS proxy the names of the listeners and routes
// being applied (called under applyMu by a listener or route update).
func (p *Proxy) refreshDNS(ls map[string]*xdsresource.Listener, rs map[string]*xdsresource.RouteConfig) {
	if p.dns != nil {
		p.dns.SetTable(dnsproxy.NewTable(slices.Collect(maps.Values(ls)), slices.Collect(maps.Values(rs))))
	}
}

// refreshDNSTable gives the DNS proxy the names of the config applied so
// far.
func (p *Proxy) refreshDNSTable() {
	p.versionsMu.Lock()
	ls, rs := p.lds.resources, p.rds.resources
	p.versionsMu.Unlock()
	p.refreshDNS(ls, rs)
}

// dnsStats adds the DNS proxy's counters, named after Istio's agent
// metrics (istio_agent_dns_requests_total, ...).
func (p *Proxy) dnsStats(add func(string, uint64)) {
	if p.dns == nil {
		return
	}
	st := p.dns.Stats()
	add("dns.requests_total", st.Requests)
	add("dns.answered_total", st.Answered)
	add("dns.upstream_requests_total", st.Upstream)
	add("dns.upstream_failures_total", st.UpstreamFailures)
	add("dns.upstream_tcp_retries_total", st.UpstreamTCPRetries)
	add("dns.dropped_total", st.Dropped)
	add("dns.names", uint64(p.dns.Table().Len()))
}
