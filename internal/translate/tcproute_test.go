package translate_test

import (
	"fmt"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/translate"
)

// secureService is a TLS service beside the seed mesh's db (TCP, VIP
// 10.96.0.20), with a DestinationRule giving both subsets.
const secureService = `
apiVersion: v1
kind: Service
metadata: {name: secure}
spec:
  clusterIP: 10.96.0.30
  selector: {app: secure}
  ports: [{name: https, port: 443}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: secure}
spec:
  host: secure
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db
  subsets: [{name: primary, labels: {role: primary}}, {name: replica, labels: {role: replica}}]
`

// chains renders a listener's filter chains as "name [match] -> clusters"
// lines, for readable comparisons.
func chains(t *testing.T, r *translate.Resources, listener string) []string {
	t.Helper()
	var l *listenerv3.Listener
	for _, x := range r.Listeners {
		if x.Name == listener {
			l = x
		}
	}
	if l == nil {
		t.Fatalf("no listener %s", listener)
	}
	var out []string
	for _, fc := range l.FilterChains {
		var m []string
		for _, p := range fc.GetFilterChainMatch().GetPrefixRanges() {
			m = append(m, fmt.Sprintf("%s/%d", p.AddressPrefix, p.GetPrefixLen().GetValue()))
		}
		m = append(m, fc.GetFilterChainMatch().GetServerNames()...)
		fs := fc.Filters
		if len(fs) == 2 && fs[0].Name == translate.StatsFilterName { // Istio's metrics, on by default
			fs = fs[1:]
		}
		if len(fs) != 1 {
			t.Fatalf("chain %s has %d filters", fc.Name, len(fc.Filters))
		}
		var tp tcpproxyv3.TcpProxy
		if err := fs[0].GetTypedConfig().UnmarshalTo(&tp); err != nil {
			t.Fatal(err)
		}
		dest := short(tp.GetCluster())
		for _, c := range tp.GetWeightedClusters().GetClusters() {
			dest += fmt.Sprintf(" %s:%d", short(c.Name), c.Weight)
		}
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s [%s] -> %s", short(fc.Name), strings.Join(m, " "), strings.TrimSpace(dest))))
	}
	return out
}

// short drops the cluster domain from a cluster name.
func short(cluster string) string {
	return strings.ReplaceAll(cluster, ".default.svc.cluster.local", "")
}

func TestTCPRoutes(t *testing.T) {
	proxy := func(labels map[string]string, ns string) *translate.Proxy {
		return &translate.Proxy{ID: "p", IP: "127.10.0.50", Pod: "p", Namespace: ns, Labels: labels, InterceptionMode: "NONE"}
	}
	reviews := proxy(map[string]string{"app": "reviews", "version": "v1"}, "default")
	for _, tc := range []struct {
		name  string
		vs    string
		proxy *translate.Proxy
		want  []string
	}{
		{"no VirtualService", "", reviews, []string{"outbound|5432||db [] -> outbound|5432||db"}},
		{"route without match", `
  tcp:
  - route: [{destination: {host: db, subset: primary}}]
  - route: [{destination: {host: db, subset: replica}}]`, reviews,
			[]string{"db.default.tcp[0] [] -> outbound|5432|primary|db"}},
		{"weighted, zero weight dropped", `
  tcp:
  - route:
    - {destination: {host: db, subset: primary}, weight: 70}
    - {destination: {host: db, subset: replica}, weight: 30}
    - {destination: {host: db}, weight: 0}`, reviews,
			[]string{"db.default.tcp[0] [] -> outbound|5432|primary|db:70 outbound|5432|replica|db:30"}},
		{"sourceLabels match", `
  tcp:
  - match: [{sourceLabels: {app: reviews}}]
    route: [{destination: {host: db, subset: replica}}]`, reviews,
			[]string{"db.default.tcp[0] [] -> outbound|5432|replica|db"}},
		{"sourceLabels of another caller: the service", `
  tcp:
  - match: [{sourceLabels: {app: ratings}}]
    route: [{destination: {host: db, subset: replica}}]`, reviews,
			[]string{"outbound|5432||db [] -> outbound|5432||db"}},
		{"port, namespace and gateway that do not concern this proxy", `
  tcp:
  - match: [{port: 5433}]
    route: [{destination: {host: db, subset: replica}}]
  - match: [{sourceNamespace: other}]
    route: [{destination: {host: db, subset: replica}}]
  - match: [{gateways: [ingress]}]
    route: [{destination: {host: db, subset: replica}}]
  - match: [{port: 5432, sourceNamespace: default, gateways: [ingress, mesh]}]
    route: [{destination: {host: db, subset: primary}}]`, reviews,
			[]string{"db.default.tcp[3] [] -> outbound|5432|primary|db"}},
		{"sourceNamespace of this proxy", `
  tcp:
  - match: [{sourceNamespace: other}]
    route: [{destination: {host: db, subset: replica}}]`, proxy(nil, "other"),
			[]string{"db.default.tcp[0] [] -> outbound|5432|replica|db"}},
		{"subnets, first route keeps what it matched", `
  tcp:
  - match: [{destinationSubnets: [10.96.0.0/16]}, {destinationSubnets: [10.1.2.3]}, {sourceLabels: {app: ratings}}]
    route: [{destination: {host: db, subset: primary}}]
  - match: [{destinationSubnets: [10.96.0.0/16, 10.97.0.0/16]}]
    route: [{destination: {host: db, subset: replica}}]
  - match: [{destinationSubnets: [10.96.0.0/16]}]
    route: [{destination: {host: db, subset: replica}}]`, reviews,
			[]string{
				"db.default.tcp[0] [10.96.0.0/16 10.1.2.3/32] -> outbound|5432|primary|db",
				"db.default.tcp[1] [10.97.0.0/16] -> outbound|5432|replica|db",
				"outbound|5432||db [] -> outbound|5432||db",
			}},
		{"destination port of another service", `
  tcp:
  - route: [{destination: {host: secure, port: {number: 443}}}]`, reviews,
			[]string{"db.default.tcp[0] [] -> outbound|443||secure"}},
		{"tls routes do not apply to a TCP port", `
  tls:
  - match: [{sniHosts: [db]}]
    route: [{destination: {host: db, subset: replica}}]`, reviews,
			[]string{"outbound|5432||db [] -> outbound|5432||db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := []string{secureService}
			if tc.vs != "" {
				extra = append(extra, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]"+tc.vs+"\n")
			}
			res := translate.ForProxy(world(t, "testdata/mesh", extra...), tc.proxy, nil)
			if d := cmp.Diff(tc.want, chains(t, res, "10.96.0.20_5432")); d != "" {
				t.Errorf("chains (-want +got):\n%s", d)
			}
		})
	}
}

func TestTLSRoutes(t *testing.T) {
	proxy := &translate.Proxy{ID: "p", IP: "127.10.0.50", Pod: "p", Namespace: "default", Labels: map[string]string{"app": "reviews"}, InterceptionMode: "NONE"}
	for _, tc := range []struct {
		name, vs string
		want     []string
	}{
		{"no VirtualService", "", []string{"outbound|443||secure [] -> outbound|443||secure"}},
		{"by server name, and no other chain", `
  tls:
  - match: [{sniHosts: [v1.secure.example]}]
    route: [{destination: {host: secure, subset: v1}}]
  - match: [{sniHosts: ["*.secure.example"]}]
    route:
    - {destination: {host: secure, subset: v1}, weight: 10}
    - {destination: {host: secure, subset: v2}, weight: 90}`,
			[]string{
				"secure.default.tls[0].match[0] [v1.secure.example] -> outbound|443|v1|secure",
				"secure.default.tls[1].match[0] [*.secure.example] -> outbound|443|v1|secure:10 outbound|443|v2|secure:90",
			}},
		{"first route keeps a server name", `
  tls:
  - match: [{sniHosts: [a.secure.example, b.secure.example]}]
    route: [{destination: {host: secure, subset: v1}}]
  - match: [{sniHosts: [b.secure.example, c.secure.example]}, {sniHosts: [a.secure.example]}]
    route: [{destination: {host: secure, subset: v2}}]
  - match: [{sniHosts: ["*.secure.example"]}]
    route: [{destination: {host: secure}}]`,
			[]string{
				"secure.default.tls[0].match[0] [a.secure.example b.secure.example] -> outbound|443|v1|secure",
				"secure.default.tls[1].match[0] [c.secure.example] -> outbound|443|v2|secure",
				"secure.default.tls[2].match[0] [*.secure.example] -> outbound|443||secure",
			}},
		{"server names with subnets", `
  tls:
  - match: [{sniHosts: [a.secure.example], destinationSubnets: [10.96.0.0/16]}]
    route: [{destination: {host: secure, subset: v1}}]
  - match: [{sniHosts: [a.secure.example, b.secure.example], destinationSubnets: [10.96.0.0/16, 10.97.0.0/16]}]
    route: [{destination: {host: secure, subset: v2}}]`,
			[]string{
				"secure.default.tls[0].match[0] [10.96.0.0/16 a.secure.example] -> outbound|443|v1|secure",
				"secure.default.tls[1].match[0] [10.97.0.0/16 a.secure.example b.secure.example] -> outbound|443|v2|secure",
				"secure.default.tls[1].match[0]/10.96.0.0/16 [10.96.0.0/16 b.secure.example] -> outbound|443|v2|secure",
			}},
		{"matches for other callers: the service", `
  tls:
  - match: [{sniHosts: [a.secure.example], sourceLabels: {app: ratings}}, {sniHosts: [a.secure.example], port: 8443}]
    route: [{destination: {host: secure, subset: v1}}]`,
			[]string{"outbound|443||secure [] -> outbound|443||secure"}},
		{"tcp routes do not apply to a TLS port", `
  tcp:
  - route: [{destination: {host: secure, subset: v1}}]`,
			[]string{"outbound|443||secure [] -> outbound|443||secure"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := []string{secureService}
			if tc.vs != "" {
				extra = append(extra, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: secure}\nspec:\n  hosts: [secure, \"*.secure.example\"]"+tc.vs+"\n")
			}
			res := translate.ForProxy(world(t, "testdata/mesh", extra...), proxy, nil)
			if d := cmp.Diff(tc.want, chains(t, res, "10.96.0.30_443")); d != "" {
				t.Errorf("chains (-want +got):\n%s", d)
			}
		})
	}
}

// A tcp route's sourceLabels make proxies with different labels translate
// apart: the control plane shares a translation by scope key.
func TestTCPSourceLabelsScope(t *testing.T) {
	w := world(t, "testdata/mesh", secureService, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{sourceLabels: {app: reviews}}]
    route: [{destination: {host: db, subset: replica}}]
`)
	a := &translate.Proxy{ID: "a", Namespace: "default", Labels: map[string]string{"app": "reviews"}, InterceptionMode: "NONE"}
	b := &translate.Proxy{ID: "b", Namespace: "default", Labels: map[string]string{"app": "ratings"}, InterceptionMode: "NONE"}
	if w.ScopeKey(a) == w.ScopeKey(b) {
		t.Errorf("proxies with different labels share scope %q", w.ScopeKey(a))
	}
	for p, want := range map[*translate.Proxy]string{a: "outbound|5432|replica|db", b: "outbound|5432||db"} {
		got := chains(t, translate.Shared(w, p, nil), "10.96.0.20_5432")
		if len(got) != 1 || !strings.HasSuffix(got[0], "-> "+want) {
			t.Errorf("proxy %s: chains %q, want one to %s", p.ID, got, want)
		}
	}
}
