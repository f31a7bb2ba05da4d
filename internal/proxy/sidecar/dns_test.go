package sidecar_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

func dnsConfig(seAddress string) string {
	return `apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  clusterIP: 10.96.0.16
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: 10.96.0.30
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  addresses: [` + seAddress + `]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.80}]
`
}

// fakeNameserver answers every A query with 192.0.2.53 over UDP until the
// test ends.
func fakeNameserver(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil || len(q.Questions) != 1 {
				continue
			}
			r := dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true}, Questions: q.Questions}
			if q.Questions[0].Type == dnsmessage.TypeA {
				r.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
					Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 53}},
				}}
			}
			out, _ := r.Pack()
			pc.WriteTo(out, from)
		}
	})
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// A sidecar with DNS capture answers the names of its config with their
// VIPs, forwards the rest to its nameserver, follows config changes and
// counts what it served.
func TestDNSProxy(t *testing.T) {
	leak.Check(t)
	const base = "127.77.41"
	m := meshtest.New(t, dnsConfig("240.240.0.1"))
	upstream := fakeNameserver(t)
	dnsAddr := net.JoinHostPort(base+".1", strconv.Itoa(sidecar.DNSPort))
	p := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}, func(o *sidecar.Options) {
		o.DNS = []string{dnsAddr, "[::1]:0"}
		o.DNSUpstream = upstream
	})
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		if strings.HasPrefix(network, "tcp") {
			return d.DialContext(ctx, "tcp", dnsAddr)
		}
		return d.DialContext(ctx, "udp", dnsAddr)
	}}
	lookup := func(name string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := r.LookupNetIP(ctx, "ip4", name)
		if err != nil {
			return err.Error()
		}
		var s []string
		for _, a := range addrs {
			s = append(s, a.String())
		}
		slices.Sort(s)
		return strings.Join(s, ",")
	}
	for name, want := range map[string]string{
		"reviews.default.svc.cluster.local.": "10.96.0.16",
		"reviews.":                           "10.96.0.16",
		"db.default.svc.cluster.local.":      "10.96.0.30",
		"api.example.com.":                   "240.240.0.1",
		"example.com.":                       "192.0.2.53", // forwarded
	} {
		if got := lookup(name); got != want {
			t.Errorf("lookup %s = %s, want %s", name, got, want)
		}
	}
	if got := statsLine(t, p, "dns.answered_total"); got != "4" {
		t.Errorf("dns.answered_total = %q, want 4", got)
	}
	if got := statsLine(t, p, "dns.upstream_requests_total"); got != "1" {
		t.Errorf("dns.upstream_requests_total = %q, want 1", got)
	}
	m.Write("mesh.yaml", dnsConfig("240.240.0.2"))
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := lookup("api.example.com."); got != "240.240.0.2" {
			return "after the edit api.example.com is " + got
		}
		return ""
	})
}
