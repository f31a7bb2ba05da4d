package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// An ORIGINAL_DST cluster (Istio's PassthroughCluster) sends each request
// to the destination its context names, and nowhere without one.
func TestOriginalDstSendsWhereTheRequestWasHeaded(t *testing.T) {
	a := startServer(t, "127.0.0.1", false, nil)
	b := startServer(t, "127.0.0.2", false, nil)
	xc := &xdsresource.Cluster{Name: "PassthroughCluster", Type: xdsresource.ClusterOriginalDst, LBPolicy: xdsresource.LBClusterProvided}
	c := New(xc, balance.New(xc), Options{})
	defer c.Close()

	for _, s := range []*server{a, b, a} {
		dst := netip.MustParseAddrPort(s.name)
		req, _ := http.NewRequest("GET", "http://example/", nil)
		resp, flags, err := c.RoundTrip(context.Background(), req, &Call{Dst: dst})
		if err != nil {
			t.Fatalf("to %s: %v (%v)", dst, err, flags)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Server"); got != s.name {
			t.Errorf("request for %s answered by %s", s.name, got)
		}
	}
	if a.opened.Load() != 1 {
		t.Errorf("%d connections to %s, want 1 reused", a.opened.Load(), a.name)
	}

	req, _ := http.NewRequest("GET", "http://example/", nil)
	if _, flags, err := c.RoundTrip(context.Background(), req, &Call{}); !errors.Is(err, ErrNoHealthyUpstream) || flags != NoHealthyUpstream {
		t.Errorf("without a destination: %v, %v; want UH", err, flags)
	}

	ln, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	conn, _, _, err := c.DialTCP(context.Background(), &Call{Dst: netip.MustParseAddrPort(ln.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(conn)
	conn.Close()
	if string(got) != "hi" {
		t.Errorf("TCP to the original destination read %q", got)
	}
}

// Options.Dial replaces the TCP dial for every connection (explicit mode
// tunnels through it), and gets the host the balancer picked.
func TestDialHookOpensEveryConnection(t *testing.T) {
	s := startServer(t, "127.0.0.1", false, nil)
	var dialled atomic.Int64
	var sawHost atomic.Pointer[balance.Host]
	xc := &xdsresource.Cluster{Name: "c"}
	bal := balance.New(xc)
	c := New(xc, bal, Options{Dial: func(ctx context.Context, h *balance.Host) (net.Conn, error) {
		dialled.Add(1)
		sawHost.Store(h)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", h.Addr())
	}})
	defer c.Close()
	c.Update(assignment(s))
	for range 3 {
		req, _ := http.NewRequest("GET", "http://c/", nil)
		resp, _, err := c.RoundTrip(context.Background(), req, &Call{})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if dialled.Load() != 1 {
		t.Errorf("hook dialled %d times, want 1 (keep-alive)", dialled.Load())
	}
	if h := sawHost.Load(); h == nil || h.Addr() != s.name {
		t.Errorf("hook got host %v, want %s", h, s.name)
	}

	failing := New(xc, bal, Options{Dial: func(context.Context, *balance.Host) (net.Conn, error) {
		return nil, errors.New("tunnel refused")
	}})
	defer failing.Close()
	req, _ := http.NewRequest("GET", "http://c/", nil)
	if _, flags, err := failing.RoundTrip(context.Background(), req, &Call{}); err == nil || flags != UpstreamConnectionFailure {
		t.Errorf("failing hook: %v, flags %v; want UF", err, flags)
	}
}

// A request that looked a cluster up just before a config update replaced
// it still succeeds: the retired cluster hands it to its successor.
func TestReplacedClusterHandsRequestsToSuccessor(t *testing.T) {
	a := startServer(t, "127.0.0.1", false, nil)
	b := startServer(t, "127.0.0.2", false, nil)
	xc := &xdsresource.Cluster{Name: "c"}
	old := New(xc, balance.New(xc), Options{})
	old.Update(assignment(a))
	next := New(xc, balance.New(xc), Options{})
	defer next.Close()
	next.Update(assignment(b))
	old.Replace(next)
	if err := old.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://c/", nil)
	resp, flags, err := old.RoundTrip(context.Background(), req, &Call{})
	if err != nil {
		t.Fatalf("request on the replaced cluster: %v (%v)", err, flags)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Server"); got != b.name {
		t.Errorf("answered by %s, want the successor's host %s", got, b.name)
	}
}
