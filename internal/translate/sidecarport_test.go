package translate_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/translate"
)

// sidecarPortWorld has two services on ports 9080 and 9090 (ratings' 9090
// is TCP, on a VIP) and one Sidecar per client app.
const sidecarPortWorld = `
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  clusterIP: 10.96.0.40
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: tcp-admin, port: 9090}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: only-9080}
spec:
  workloadSelector: {labels: {app: only-9080}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.default.svc.cluster.local"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: port-and-catch-all}
spec:
  workloadSelector: {labels: {app: port-and-catch-all}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.default.svc.cluster.local"]
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: protocol}
spec:
  workloadSelector: {labels: {app: protocol}}
  egress:
  - port: {number: 9090, protocol: TCP, name: tcp}
    hosts: ["./reviews.default.svc.cluster.local"]
  - port: {number: 9080, protocol: TCP, name: tcp}
    hosts: ["./ratings.default.svc.cluster.local"]
`

// outbound summarises a proxy's outbound resources: listeners (without
// virtualOutbound/virtualInbound), each route configuration's virtual
// hosts (without the fallback), and outbound clusters.
func outbound(r *translate.Resources) []string {
	var out []string
	for _, l := range r.Listeners {
		if l.Name != translate.VirtualOutbound && l.Name != translate.VirtualInbound {
			out = append(out, "listener "+l.Name)
		}
	}
	for _, rc := range r.Routes {
		var hosts []string
		for _, vh := range rc.VirtualHosts {
			if vh.Name != "allow_any" && vh.Name != "block_all" {
				hosts = append(hosts, vh.Name)
			}
		}
		out = append(out, "route "+rc.Name+": "+strings.Join(hosts, " "))
	}
	for _, c := range r.Clusters {
		if strings.HasPrefix(c.Name, "outbound|") {
			out = append(out, "cluster "+c.Name)
		}
	}
	for i := range out {
		out[i] = strings.ReplaceAll(out[i], ".default.svc.cluster.local", "")
	}
	sort.Strings(out)
	return out
}

// A Sidecar egress listener with a port imports its hosts on that port
// only (listeners, routes and clusters), decides that port over the
// catch-all, and gives the port its protocol.
func TestSidecarEgressPort(t *testing.T) {
	w := world(t, t.TempDir(), sidecarPortWorld)
	for _, tc := range []struct {
		app  string
		want []string
	}{
		{"only-9080", []string{
			"cluster outbound|9080||reviews",
			"listener 0.0.0.0_9080",
			"route 9080: reviews:9080",
		}},
		// 9080 is the port listener's: ratings is not on it though the
		// catch-all lists ./*; 9090 comes from the catch-all.
		{"port-and-catch-all", []string{
			"cluster outbound|9080||reviews",
			"cluster outbound|9090||ratings",
			"cluster outbound|9090||reviews",
			"listener 0.0.0.0_9080",
			"listener 0.0.0.0_9090",
			"listener 10.96.0.40_9090",
			"route 9080: reviews:9080",
			"route 9090: reviews:9090",
		}},
		// TCP listeners for ports whose services declare HTTP.
		{"protocol", []string{
			"cluster outbound|9080||ratings",
			"cluster outbound|9090||reviews",
			"listener 10.96.0.40_9080",
			"listener reviews_9090",
		}},
	} {
		t.Run(tc.app, func(t *testing.T) {
			p := &translate.Proxy{ID: "sidecar~127.10.0.50~" + tc.app + "-0.default~default.svc.cluster.local", IP: "127.10.0.50",
				Pod: tc.app + "-0", Namespace: "default", Labels: map[string]string{"app": tc.app}, InterceptionMode: "NONE"}
			if d := cmp.Diff(tc.want, outbound(translate.ForProxy(w, p, nil))); d != "" {
				t.Errorf("outbound resources (-want +got):\n%s", d)
			}
		})
	}

	// Proxyless gRPC clients get api_listeners only for imported ports.
	p := &translate.Proxy{ID: "sidecar~127.10.0.51~g-0.default~default.svc.cluster.local", IP: "127.10.0.51", Pod: "g-0",
		Namespace: "default", Labels: map[string]string{"app": "only-9080"}, Generator: translate.GeneratorGRPC}
	r := translate.ForProxy(w, p, nil)
	var got []string
	for _, l := range r.Listeners {
		if strings.HasPrefix(l.Name, "reviews.default.svc.cluster.local") || strings.HasPrefix(l.Name, "ratings.default.svc.cluster.local") {
			got = append(got, l.Name)
		}
	}
	if d := cmp.Diff([]string{"reviews.default.svc.cluster.local:9080"}, got); d != "" {
		t.Errorf("grpc listeners (-want +got):\n%s", d)
	}
}
