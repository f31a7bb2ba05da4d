package sidecar

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsclient"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// BenchmarkApply is the sidecar's side of an xDS update (the client's is
// xdsclient's BenchmarkHandle): one of a thousand clusters' endpoints or
// definition changing, and one of a hundred route tables with the
// routing view rebuilt around it.
func BenchmarkApply(b *testing.B) {
	const n = 1000
	p := New(Options{PodIP: netip.MustParseAddr("127.0.0.1"), DrainDuration: time.Millisecond})
	clusters := map[string]*xdsresource.Cluster{}
	clas := map[string]*xdsresource.ClusterLoadAssignment{}
	var names []string
	for i := range n {
		name := fmt.Sprintf("outbound|9080||svc-%d.default.svc.cluster.local", i)
		names = append(names, name)
		clusters[name] = &xdsresource.Cluster{Name: name, Type: xdsresource.ClusterEDS, ConnectTimeout: time.Second}
		cla := &xdsresource.ClusterLoadAssignment{ClusterName: name, Localities: []xdsresource.LocalityEndpoints{{Weight: 1}}}
		for j := range 10 {
			cla.Localities[0].Endpoints = append(cla.Localities[0].Endpoints, xdsresource.Endpoint{Address: fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1), Port: 9080, Weight: 1, Healthy: true})
		}
		clas[name] = cla
	}
	routes := map[string]*xdsresource.RouteConfig{}
	listeners := map[string]*xdsresource.Listener{}
	var routeNames []string
	for i := range 100 {
		name := fmt.Sprint(9000 + i)
		routeNames = append(routeNames, name)
		rc := &xdsresource.RouteConfig{Name: name}
		for j := range 10 {
			host := names[i*10+j]
			rc.VirtualHosts = append(rc.VirtualHosts, xdsresource.VirtualHost{Name: host, Domains: []string{fmt.Sprintf("svc-%d", i*10+j), fmt.Sprintf("svc-%d.default.svc.cluster.local", i*10+j)},
				Routes: []xdsresource.Route{{Name: "default", Action: &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: host, Weight: 1}}, TotalWeight: 1}}}})
		}
		routes[name] = rc
		ln := "0.0.0.0_" + name
		listeners[ln] = &xdsresource.Listener{Name: ln, Address: "0.0.0.0", Port: uint32(9000 + i), Direction: xdsresource.Outbound,
			FilterChains: []xdsresource.FilterChain{{HTTP: &xdsresource.HTTPConnectionManager{RDSName: name}}}}
	}
	// What the client hands over, made once: its cost is the client's.
	upd := updates(clusters, clas, listeners, routes)
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(upd.clusters(p, names))
	must(upd.endpoints(p, names))
	must(upd.listeners(p, nil))
	must(upd.routes(p, routeNames))
	b.Cleanup(func() {
		for _, c := range p.clusters.Load().byName {
			c.Close()
		}
		p.bg.Wait()
	})

	b.Run("endpoints-1-of-1000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			must(upd.endpoints(p, names[:1]))
		}
	})
	b.Run("clusters-1-of-1000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			must(upd.clusters(p, names[:1]))
		}
		p.bg.Wait()
	})
	b.Run("routes-1-of-100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			must(upd.routes(p, routeNames[:1]))
		}
	})
}

type benchUpdates struct {
	c map[string]*xdsresource.Cluster
	e map[string]*xdsresource.ClusterLoadAssignment
	l map[string]*xdsresource.Listener
	r map[string]*xdsresource.RouteConfig
}

func updates(c map[string]*xdsresource.Cluster, e map[string]*xdsresource.ClusterLoadAssignment, l map[string]*xdsresource.Listener, r map[string]*xdsresource.RouteConfig) *benchUpdates {
	return &benchUpdates{c, e, l, r}
}

func (u *benchUpdates) clusters(p *Proxy, updated []string) error {
	return p.applyClusters(xdsclient.Update[*xdsresource.Cluster]{TypeURL: xdsresource.ClusterType, Version: "1", Resources: u.c, Updated: updated})
}

func (u *benchUpdates) endpoints(p *Proxy, updated []string) error {
	return p.applyEndpoints(xdsclient.Update[*xdsresource.ClusterLoadAssignment]{TypeURL: xdsresource.EndpointType, Version: "1", Resources: u.e, Updated: updated})
}

func (u *benchUpdates) listeners(p *Proxy, updated []string) error {
	return p.applyListeners(xdsclient.Update[*xdsresource.Listener]{TypeURL: xdsresource.ListenerType, Version: "1", Resources: u.l, Updated: updated})
}

func (u *benchUpdates) routes(p *Proxy, updated []string) error {
	return p.applyRoutes(xdsclient.Update[*xdsresource.RouteConfig]{TypeURL: xdsresource.RouteType, Version: "1", Resources: u.r, Updated: updated})
}
