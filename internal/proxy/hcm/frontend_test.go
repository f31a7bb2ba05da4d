package hcm_test

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/router"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// backendAnswer is the body every backend answers with. h2spec needs at
// least 5 bytes of response data to run its flow-control cases.
const backendAnswer = "hello from the backend\n"

// frontEnd is a real proxy front end on loopback: a TCP listener handing
// its connections to an hcm.Server whose only route sends every request
// to a real backend, as a sidecar's outbound listener does.
type frontEnd struct {
	Addr    string // the front end's address
	Server  *hcm.Server
	Backend *feBackend

	ln      net.Listener
	cluster *upstream.Cluster
	wg      sync.WaitGroup
}

// feBackend is the real upstream: a net/http server (HTTP/1.1 and h2c)
// that reads the request body and answers 200 "ok", counting what
// reaches it.
type feBackend struct {
	Addr     string
	Requests atomic.Int64
	// Bodies are the request bodies received, in arrival order.
	mu       sync.Mutex
	bodies   []string
	headers  []http.Header
	trailers []http.Header

	hs *http.Server
	ln net.Listener
	wg sync.WaitGroup
}

func (b *feBackend) Bodies() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bodies...)
}

func startBackend(tb testing.TB) *feBackend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &feBackend{Addr: ln.Addr().String(), ln: ln}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	b.hs = &http.Server{
		Protocols: &protos,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.Requests.Add(1)
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			b.mu.Lock()
			b.bodies = append(b.bodies, string(body))
			b.headers = append(b.headers, r.Header.Clone())
			b.trailers = append(b.trailers, r.Trailer.Clone())
			b.mu.Unlock()
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, backendAnswer)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	b.wg.Go(func() { b.hs.Serve(ln) })
	return b
}

// Headers are the request headers received, in arrival order.
func (b *feBackend) Headers() []http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]http.Header(nil), b.headers...)
}

// Trailers are the request trailers received, in arrival order (nil for
// a request that declared none).
func (b *feBackend) Trailers() []http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]http.Header(nil), b.trailers...)
}

func (b *feBackend) Close() {
	b.hs.Close()
	b.wg.Wait()
}

// startFrontEnd starts a backend and a front end routing to it with the
// given route timeout; both stop in tb's cleanup.
func startFrontEnd(tb testing.TB, cfg hcm.Config, routeTimeout time.Duration) *frontEnd {
	tb.Helper()
	b := startBackend(tb)
	tb.Cleanup(b.Close)
	f := startFrontEndTo(tb, b.Addr, cfg, routeTimeout)
	f.Backend = b
	return f
}

// startFrontEndTo starts a front end routing to the backend at addr.
func startFrontEndTo(tb testing.TB, addr string, cfg hcm.Config, routeTimeout time.Duration) *frontEnd {
	tb.Helper()
	return startFrontEndRoute(tb, addr, cfg, &xdsresource.RouteAction{Timeout: routeTimeout})
}

// startFrontEndRoute starts a front end routing to the backend at addr
// with action (its clusters are set here).
func startFrontEndRoute(tb testing.TB, addr string, cfg hcm.Config, action *xdsresource.RouteAction) *frontEnd {
	tb.Helper()
	f := &frontEnd{}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	xc := &xdsresource.Cluster{Name: "backend"}
	f.cluster = upstream.New(xc, balance.New(xc), upstream.Options{})
	f.cluster.Update(&xdsresource.ClusterLoadAssignment{ClusterName: "backend", Localities: []xdsresource.LocalityEndpoints{{
		Weight: 1, Endpoints: []xdsresource.Endpoint{{Address: host, Port: uint32(p), Weight: 1, Healthy: true}},
	}}})
	tb.Cleanup(func() { f.cluster.Close() })

	action.Clusters, action.TotalWeight = []xdsresource.WeightedCluster{{Name: "backend", Weight: 1}}, 1
	table, err := router.Compile(&xdsresource.RouteConfig{Name: "rc", VirtualHosts: []xdsresource.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []xdsresource.Route{{Name: "to-backend", Action: action}},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Cluster = func(name string) *upstream.Cluster {
		if name == "backend" {
			return f.cluster
		}
		return nil
	}
	f.Server = hcm.New(cfg)
	tb.Cleanup(func() { f.Server.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f.ln = ln
	f.Addr = ln.Addr().String()
	routes := func() *router.Table { return table }
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.Server.Serve(f.conn(c, routes))
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

// dial connects to the front end as a client, with a deadline on the
// whole exchange; the connection closes with the test.
func (f *frontEnd) dial(tb testing.TB, deadline time.Duration) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(deadline))
	return c
}

// conn wraps a downstream connection as the sidecar's listeners do.
func (f *frontEnd) conn(c net.Conn, routes func() *router.Table) *hcm.Conn {
	src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	dst, _ := netip.ParseAddrPort(c.LocalAddr().String())
	return &hcm.Conn{Conn: c, Source: src, Dst: dst, Routes: routes}
}
