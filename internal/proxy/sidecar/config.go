package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/authz"
	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/router"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsclient"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
)

// Names the control plane gives the sidecar's own listeners and catch-all
// clusters (Istio's).
const (
	virtualOutbound    = "virtualOutbound"
	virtualInbound     = "virtualInbound"
	passthroughCluster = "PassthroughCluster"
	blockAllHost       = "block_all"
	blackHoleCluster   = "BlackHoleCluster"
)

// routing is the listener and route side of the applied config, swapped
// whole on every LDS or RDS update; connections read it per request.
type routing struct {
	routes map[string]*router.Table // RDS, by name

	// outboundHTTP maps a port to its RDS name (Istio's 0.0.0.0_<port>).
	outboundHTTP map[uint32]string
	// TCP service ports' listeners: by VIP, by hostname, and by port for
	// services without a VIP. A connection takes the listener's filter
	// chain for its destination and TLS server name (tcp and tls routes).
	tcpByAddr map[netip.AddrPort]*xdsresource.Listener
	tcpByHost map[string]*xdsresource.Listener // "host:port"
	tcpByPort map[uint32]*xdsresource.Listener
	// inbound are virtualInbound's filter chains by destination port.
	inbound map[uint32]*chain
	// inboundTLS is what each port's chains accept (peerauthn.go).
	inboundTLS map[uint32]*portTLS
	// registryOnly is set when the mesh refuses unknown destinations
	// (outboundTrafficPolicy REGISTRY_ONLY): the fallback virtual host is
	// block_all.
	registryOnly bool
	// passthrough is the forward proxy's table for ports no service
	// uses: every host to PassthroughCluster, or 502 under REGISTRY_ONLY.
	passthrough *router.Table
	// outboundPaths is the outbound connection managers' path
	// normalization (pathnorm.go).
	outboundPaths xdsresource.PathNormalization

	// jwks and log are what inbound chains' jwt_authn filters are
	// compiled with (jwt.go).
	jwks *jwtauthn.Cache
	log  *slog.Logger

	// Telemetry (chaintelemetry.go): the tracers and loggers this
	// generation's chains use, taken over from the last one's (prevTel,
	// only while building), and the outbound listeners' telemetry.
	proxy       *Proxy
	tel         *telemetryRuntime
	prevTel     *telemetryRuntime
	outboundTel *hcm.Chain
	// The reporters' metric overrides, from the chains' istio.stats.
	sourceStats, destinationStats *xdsresource.Stats
}

// chain is one inbound filter chain, compiled.
type chain struct {
	name   string
	routes *router.Table                 // HTTP
	tcp    *xdsresource.TCPProxy         // TCP
	authz  *authz.Engine                 // its RBAC filters (authz.go); nil allows all
	jwt    *jwtauthn.Filter              // its jwt_authn filter (jwt.go); nil verifies nothing
	paths  xdsresource.PathNormalization // its connection manager's (pathnorm.go)
	tel    *hcm.Chain                    // its connection manager's telemetry (chaintelemetry.go)
}

// clusterSet is the cluster side: upstream state by name, plus the last
// endpoints of each so a replaced cluster starts with them.
type clusterSet struct {
	byName    map[string]*upstream.Cluster
	endpoints map[string]*xdsresource.ClusterLoadAssignment
}

// applied is what the proxy last accepted of one resource type, for the
// admin pages, readiness and the DNS table.
type applied[T any] struct {
	version   string
	resources map[string]T
	received  bool // an update of the type arrived (an empty set counts)
}

// subscriptions are the resource types the proxy subscribes to, in the
// order the control plane should send them (clusters before the listeners
// and routes that name them), each with the method that applies it.
func (p *Proxy) subscriptions() []xdsclient.Subscription {
	return []xdsclient.Subscription{
		xdsclient.Subscribe(xdsresource.ClusterResource, p.applyClusters),
		xdsclient.Subscribe(xdsresource.EndpointResource, p.applyEndpoints),
		xdsclient.Subscribe(xdsresource.ListenerResource, p.applyListeners),
		xdsclient.Subscribe(xdsresource.RouteResource, p.applyRoutes),
	}
}

// commit installs one update of a type with install, and records it in
// last. An error from install NACKs the update and leaves everything as
// it was. Updates of every type are applied one at a time.
func commit[T any](p *Proxy, u xdsclient.Update[T], last *applied[T], install func(xdsclient.Update[T]) error) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if err := install(u); err != nil {
		p.rejected.Add(1)
		return err
	}
	p.versionsMu.Lock()
	*last = applied[T]{version: u.Version, resources: u.Resources, received: true}
	p.versionsMu.Unlock()
	p.updates.Add(1)
	return nil
}

func (p *Proxy) applyClusters(u xdsclient.Update[*xdsresource.Cluster]) error {
	return commit(p, u, &p.cds, p.installClusters)
}

func (p *Proxy) applyEndpoints(u xdsclient.Update[*xdsresource.ClusterLoadAssignment]) error {
	return commit(p, u, &p.eds, p.installEndpoints)
}

func (p *Proxy) applyListeners(u xdsclient.Update[*xdsresource.Listener]) error {
	return commit(p, u, &p.lds, func(u xdsclient.Update[*xdsresource.Listener]) error {
		if err := p.rebuildRouting(u.Resources, nil); err != nil {
			return err
		}
		p.refreshDNS(u.Resources, p.rds.resources)
		return nil
	})
}

func (p *Proxy) applyRoutes(u xdsclient.Update[*xdsresource.RouteConfig]) error {
	return commit(p, u, &p.rds, func(u xdsclient.Update[*xdsresource.RouteConfig]) error {
		if err := p.rebuildRouting(p.lds.resources, &u); err != nil {
			return err
		}
		p.refreshDNS(p.lds.resources, u.Resources)
		return nil
	})
}

func (p *Proxy) installClusters(u xdsclient.Update[*xdsresource.Cluster]) error {
	old := p.clusters.Load()
	next := &clusterSet{byName: make(map[string]*upstream.Cluster, len(u.Resources)), endpoints: old.endpoints}
	changed := map[string]bool{}
	for _, n := range u.Updated {
		changed[n] = true
	}
	var retire []*upstream.Cluster
	for name, xc := range u.Resources {
		if cur := old.byName[name]; cur != nil && !changed[name] {
			next.byName[name] = cur
			continue
		}
		c := upstream.New(xc, newBalancer(xc), p.upstreamOptions(strings.HasPrefix(name, "inbound|"), xc))
		if xc.Type == xdsresource.ClusterEDS {
			if cla := old.endpoints[name]; cla != nil {
				c.Update(cla)
			}
		}
		next.byName[name] = c
		if cur := old.byName[name]; cur != nil {
			cur.Replace(c)
			retire = append(retire, cur)
		}
	}
	for name, c := range old.byName {
		if _, ok := next.byName[name]; !ok {
			if strings.HasPrefix(name, "inbound|") {
				// A request that looked the cluster up just before the
				// update still reaches the app, as it would on a port no
				// service claims.
				c.Replace(p.inboundPassthrough)
			}
			retire = append(retire, c)
		}
	}
	p.clusters.Store(next)
	// Requests already on a replaced cluster finish there; new ones go to
	// the new one.
	for _, c := range retire {
		p.retire(c)
	}
	return nil
}

// retire shuts a replaced or removed cluster down in the background,
// giving its requests in flight the drain time to finish.
func (p *Proxy) retire(c *upstream.Cluster) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.retireTimeout())
		defer cancel()
		c.Shutdown(ctx)
	}()
}

func (p *Proxy) installEndpoints(u xdsclient.Update[*xdsresource.ClusterLoadAssignment]) error {
	cs := p.clusters.Load()
	// The client never modifies an update's set, so it is kept as is.
	eps := u.Resources
	p.clusters.Store(&clusterSet{byName: cs.byName, endpoints: eps})
	for _, name := range u.Updated {
		if c := cs.byName[name]; c != nil {
			c.Update(eps[name])
		}
	}
	for _, name := range u.Removed {
		if c := cs.byName[name]; c != nil {
			c.Update(nil)
		}
	}
	return nil
}

// rebuildRouting recompiles the routing view after an LDS or RDS update
// (routes is the RDS update, nil for LDS). Unchanged route tables are
// reused, so an update costs only what changed.
func (p *Proxy) rebuildRouting(listeners map[string]*xdsresource.Listener, routes *xdsclient.Update[*xdsresource.RouteConfig]) error {
	old := p.routing.Load()
	tables := old.routes
	if routes != nil {
		tables = make(map[string]*router.Table, len(routes.Resources))
		changed := map[string]bool{}
		for _, n := range routes.Updated {
			changed[n] = true
		}
		for name, rc := range routes.Resources {
			if t := old.routes[name]; t != nil && !changed[name] {
				tables[name] = t
				continue
			}
			t, err := router.Compile(rc)
			if err != nil {
				return fmt.Errorf("route %s: %w", name, err)
			}
			tables[name] = t
		}
	}
	r := &routing{
		routes:       tables,
		outboundHTTP: map[uint32]string{},
		tcpByAddr:    map[netip.AddrPort]*xdsresource.Listener{},
		tcpByHost:    map[string]*xdsresource.Listener{},
		tcpByPort:    map[uint32]*xdsresource.Listener{},
		inbound:      map[uint32]*chain{},
		jwks:         p.jwks,
		log:          p.log,
		proxy:        p,
		tel:          newTelemetryRuntime(),
		prevTel:      old.tel,
	}
	for name, l := range listeners {
		if err := r.addListener(l); err != nil {
			r.tel.closeExcept(context.Background(), old.tel)
			return fmt.Errorf("listener %s: %w", name, err)
		}
	}
	for _, t := range tables {
		for _, vh := range t.Config().VirtualHosts {
			if vh.Name == blockAllHost {
				r.registryOnly = true
			}
		}
	}
	r.passthrough = passthroughTable(r.registryOnly)
	p.tel.reg.SetConfig(metrics.Source, statsConfig(r.sourceStats))
	p.tel.reg.SetConfig(metrics.Destination, statsConfig(r.destinationStats))
	r.prevTel = nil
	p.routing.Store(r)
	if old.tel != nil {
		// What the new generation did not take over: spans still queued
		// are exported and log lines flushed, off the update path.
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			old.tel.closeExcept(ctx, r.tel)
		}()
	}
	return nil
}

func (r *routing) addListener(l *xdsresource.Listener) error {
	switch {
	case l.Name == virtualInbound:
		for i := range l.FilterChains {
			fc := &l.FilterChains[i]
			// Inbound chains are found by port alone.
			if len(fc.PrefixRanges) > 0 {
				return fmt.Errorf("filter_chains[%d].filter_chain_match.prefix_ranges: not supported on %s", i, virtualInbound)
			}
			if len(fc.ServerNames) > 0 {
				return fmt.Errorf("filter_chains[%d].filter_chain_match.server_names: not supported on %s", i, virtualInbound)
			}
			c := &chain{name: fc.Name}
			if err := c.compileAuthz(fc); err != nil {
				return fmt.Errorf("filter_chains[%d]: %w", i, err)
			}
			c.jwt = r.compileJWT(fc)
			switch {
			case fc.HTTP != nil && fc.HTTP.RouteConfig != nil:
				t, err := router.Compile(fc.HTTP.RouteConfig)
				if err != nil {
					return fmt.Errorf("filter_chains[%d]: %w", i, err)
				}
				c.routes = t
			case fc.HTTP != nil:
				c.routes = r.routes[fc.HTTP.RDSName]
			case fc.TCP != nil:
				c.tcp = fc.TCP
			}
			if fc.HTTP != nil {
				c.paths = fc.HTTP.Paths
				c.tel = r.tel.chain(r.proxy, fc.HTTP, r.prevTel)
				if r.destinationStats == nil {
					r.destinationStats = fc.HTTP.Stats
				}
			}
			r.inbound[fc.DestinationPort] = c
			r.noteInboundTLS(fc)
		}
	case l.Name == virtualOutbound:
		// Its default chain names the policy for unknown destinations:
		// BlackHoleCluster under REGISTRY_ONLY.
		if len(l.FilterChains) > 0 && l.FilterChains[0].TCP != nil && l.FilterChains[0].TCP.Cluster == blackHoleCluster {
			r.registryOnly = true
		}
	case l.Direction == xdsresource.Outbound || !l.BindToPort:
		if len(l.FilterChains) == 0 {
			return nil
		}
		fc := &l.FilterChains[0]
		switch {
		case fc.HTTP != nil && fc.HTTP.RDSName != "":
			r.outboundHTTP[l.Port] = fc.HTTP.RDSName
			r.outboundPaths = fc.HTTP.Paths
			if r.outboundTel == nil {
				r.outboundTel = r.tel.chain(r.proxy, fc.HTTP, r.prevTel)
				r.sourceStats = fc.HTTP.Stats
			}
		case fc.TCP != nil:
			// Connections are handed whole to the chosen chain's TCP
			// proxy; there is no connection manager to hand them to.
			for i := range l.FilterChains {
				if l.FilterChains[i].TCP == nil {
					return fmt.Errorf("filter_chains[%d]: a TCP listener's chains must all be tcp_proxy", i)
				}
			}
			if a, err := netip.ParseAddr(l.Address); err == nil && !a.IsUnspecified() {
				r.tcpByAddr[netip.AddrPortFrom(a, uint16(l.Port))] = l
			} else {
				r.tcpByPort[l.Port] = l
			}
			if l.Host != "" {
				r.tcpByHost[l.Host+":"+strconv.FormatUint(uint64(l.Port), 10)] = l
			}
		}
	}
	return nil
}

// passthroughTable routes any host to PassthroughCluster, or refuses it
// under REGISTRY_ONLY, for forward-proxy requests to ports no service
// declares.
func passthroughTable(registryOnly bool) *router.Table {
	rt := xdsresource.Route{Name: "allow_any", Action: &xdsresource.RouteAction{
		Clusters: []xdsresource.WeightedCluster{{Name: passthroughCluster, Weight: 1}}, TotalWeight: 1}}
	name := "allow_any"
	if registryOnly {
		name = blockAllHost
		rt = xdsresource.Route{Name: blockAllHost, Direct: &xdsresource.DirectResponse{Status: 502}}
	}
	t, err := router.Compile(&xdsresource.RouteConfig{Name: "passthrough", VirtualHosts: []xdsresource.VirtualHost{{Name: name, Domains: []string{"*"}, Routes: []xdsresource.Route{rt}}}})
	if err != nil {
		panic("sidecar: passthrough table: " + err.Error())
	}
	return t
}

// tcpForHost finds the TCP service listener a CONNECT names, resolving a
// short name through the pod's DNS search path as Kubernetes would
// (<ns>.svc.cluster.local, svc.cluster.local, cluster.local).
func (r *routing) tcpForHost(host string, port uint16, namespace string) *xdsresource.Listener {
	ps := ":" + strconv.FormatUint(uint64(port), 10)
	if a, err := netip.ParseAddr(host); err == nil {
		if t := r.tcpByAddr[netip.AddrPortFrom(a.Unmap(), port)]; t != nil {
			return t
		}
		return nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, suffix := range []string{"", "." + namespace + ".svc.cluster.local", ".svc.cluster.local", ".cluster.local"} {
		if t := r.tcpByHost[host+suffix+ps]; t != nil {
			return t
		}
	}
	return nil
}

func (o *Options) retireTimeout() time.Duration {
	if o.DrainDuration > 0 {
		return o.DrainDuration
	}
	return DefaultDrainDuration
}

// newBalancer makes a cluster's balancer: peak EWMA, with Linkerd's decay
// and starting estimate, when the cluster asks for it.
func newBalancer(xc *xdsresource.Cluster) *balance.Balancer {
	if xc.PeakEWMA {
		return balance.New(xc, balance.WithPeakEWMA(balance.DefaultEWMADecay, balance.DefaultEWMARTT))
	}
	return balance.New(xc)
}
