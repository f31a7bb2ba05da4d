package translate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	security "istio.io/api/security/v1beta1"

	"github.com/trellismesh/trellis/internal/translate"
)

// grpcTLSWorld is greeter with two workloads: a proxyless server with an
// identity (tlsMode istio), b without, and a subset for each.
const grpcTLSWorld = `apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: default}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 7070}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: greeter-a
  namespace: default
  annotations: {inject.istio.io/templates: grpc-agent}
spec:
  address: 127.20.0.1
  labels: {app: greeter, version: a, security.istio.io/tlsMode: istio}
  serviceAccount: greeter-a
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-b, namespace: default}
spec:
  address: 127.20.0.2
  labels: {app: greeter, version: b}
  serviceAccount: greeter-b
`

func grpcTLSWorldWith(t *testing.T, extra ...string) *translate.World {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "greeter.yaml"), []byte(grpcTLSWorld), 0o644); err != nil {
		t.Fatal(err)
	}
	return world(t, dir, extra...)
}

func greeterDR(top, subsetA string) string {
	return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter
` + top + `
  subsets:
  - name: a
    labels: {version: a}
` + subsetA + `
  - name: b
    labels: {version: b}
`
}

// grpcClient has the mesh identity (tlsMode istio, certificate providers
// in its bootstrap); grpcClientNoID has none.
var (
	grpcClient     = &translate.Proxy{ID: "sidecar~127.20.0.9~client.default~default.svc.cluster.local", IP: "127.20.0.9", Pod: "client", Namespace: "default", Generator: translate.GeneratorGRPC, Labels: map[string]string{"app": "client", "security.istio.io/tlsMode": "istio"}}
	grpcClientNoID = &translate.Proxy{ID: "sidecar~127.20.0.8~plain.default~default.svc.cluster.local", IP: "127.20.0.8", Pod: "plain", Namespace: "default", Generator: translate.GeneratorGRPC, Labels: map[string]string{"app": "client"}}
)

// clusterTLS summarises a proxyless client's clusters of greeter: cluster
// subset → "plaintext" or "mtls" with the SANs checked; a cluster not
// served is absent, and so is its load assignment.
func clusterTLS(t *testing.T, w *translate.World, client *translate.Proxy) map[string]string {
	t.Helper()
	r := translate.ForProxy(w, client, nil)
	out := map[string]string{}
	for _, c := range r.Clusters {
		name := strings.Split(c.Name, "|")[2]
		if name == "" {
			name = "default"
		}
		if findCLA(r, c.Name) == nil {
			t.Errorf("cluster %s has no load assignment", c.Name)
		}
		out[name] = upstreamSummary(t, c)
	}
	for _, cla := range r.Endpoints {
		if findCluster(r, cla.ClusterName) == nil {
			t.Errorf("load assignment %s has no cluster", cla.ClusterName)
		}
	}
	return out
}

func upstreamSummary(t *testing.T, c *clusterv3.Cluster) string {
	t.Helper()
	if len(c.TransportSocketMatches) > 0 {
		t.Errorf("cluster %s has transport_socket_matches, which grpc-go NACKs", c.Name)
	}
	ts := c.GetTransportSocket()
	if ts == nil {
		return "plaintext"
	}
	if ts.Name != "envoy.transport_sockets.tls" {
		t.Errorf("cluster %s: transport socket %q, grpc-go wants envoy.transport_sockets.tls", c.Name, ts.Name)
	}
	var u tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&u); err != nil {
		t.Fatalf("cluster %s: %v", c.Name, err)
	}
	return "mtls " + commonSummary(t, u.GetCommonTlsContext())
}

// commonSummary checks the certificate provider shape (both field
// generations, as istiod sends) and returns the SANs matched.
func commonSummary(t *testing.T, ctx *tlsv3.CommonTlsContext) string {
	t.Helper()
	want := func(what string, got interface {
		GetInstanceName() string
		GetCertificateName() string
	}, cert string) {
		if got.GetInstanceName() != "default" || got.GetCertificateName() != cert {
			t.Errorf("%s: instance %q certificate %q, want default/%s", what, got.GetInstanceName(), got.GetCertificateName(), cert)
		}
	}
	want("tls_certificate_provider_instance", ctx.GetTlsCertificateProviderInstance(), "default")
	want("tls_certificate_certificate_provider_instance", ctx.GetTlsCertificateCertificateProviderInstance(), "default") //lint:ignore SA1019 older grpc-go reads it
	cv := ctx.GetCombinedValidationContext()
	want("ca_certificate_provider_instance", cv.GetDefaultValidationContext().GetCaCertificateProviderInstance(), "ROOTCA")
	want("validation_context_certificate_provider_instance", cv.GetValidationContextCertificateProviderInstance(), "ROOTCA") //lint:ignore SA1019 older grpc-go reads it
	var sans []string
	//lint:ignore SA1019 grpc-go reads SANs only from match_subject_alt_names
	for _, m := range cv.GetDefaultValidationContext().GetMatchSubjectAltNames() {
		sans = append(sans, m.GetExact())
	}
	return "[" + strings.Join(sans, " ") + "]"
}

// Auto mTLS for proxyless clients: a cluster whose endpoints all have an
// identity gets mutual TLS checking their SPIFFE IDs; one with any
// endpoint without falls back to plaintext (grpc-go has one transport per
// cluster); a DestinationRule's tls wins either way.
func TestGRPCClusterTLS(t *testing.T) {
	const idA = "spiffe://cluster.local/ns/default/sa/greeter-a"
	const idB = "spiffe://cluster.local/ns/default/sa/greeter-b"
	for _, tc := range []struct {
		name  string
		extra []string
		want  map[string]string
	}{
		{"auto", []string{greeterDR("", "")}, map[string]string{"default": "plaintext", "a": "mtls [" + idA + "]", "b": "plaintext"}},
		{"ISTIO_MUTUAL everywhere", []string{greeterDR("  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}", "")},
			map[string]string{"default": "mtls [" + idA + " " + idB + "]", "a": "mtls [" + idA + "]", "b": "mtls [" + idB + "]"}},
		{"ISTIO_MUTUAL with subjectAltNames", []string{greeterDR("  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/x/sa/y]}}", "")},
			map[string]string{"default": "mtls [spiffe://cluster.local/ns/x/sa/y]", "a": "mtls [spiffe://cluster.local/ns/x/sa/y]", "b": "mtls [spiffe://cluster.local/ns/x/sa/y]"}},
		{"DISABLE on the subset", []string{greeterDR("", "    trafficPolicy: {tls: {mode: DISABLE}}")},
			map[string]string{"default": "plaintext", "a": "plaintext", "b": "plaintext"}},
		{"DISABLE for the port", []string{greeterDR("  trafficPolicy: {portLevelSettings: [{port: {number: 7070}, tls: {mode: DISABLE}}]}", "")},
			map[string]string{"default": "plaintext", "a": "plaintext", "b": "plaintext"}},
		// grpc-go cannot take the DestinationRule's files: not served
		// rather than sent in the clear.
		{"SIMPLE is not served", []string{greeterDR("  trafficPolicy: {tls: {mode: SIMPLE}}", "")}, map[string]string{}},
		{"autoMtls off", []string{greeterDR("", ""), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    enableAutoMtls: false\n"},
			map[string]string{"default": "plaintext", "a": "plaintext", "b": "plaintext"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clusterTLS(t, grpcTLSWorldWith(t, tc.extra...), grpcClient)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("clusters (-want +got):\n%s", diff)
			}
		})
	}
}

// A proxyless client without an identity has no certificate provider in
// its bootstrap, and grpc-go NACKs a cluster naming one whatever its
// channel's credentials: it gets plaintext clusters under auto mTLS, and
// no cluster where a DestinationRule demands ISTIO_MUTUAL. Its scope is
// not shared with clients that have an identity.
func TestGRPCClusterTLSWithoutIdentity(t *testing.T) {
	got := clusterTLS(t, grpcTLSWorldWith(t, greeterDR("", "")), grpcClientNoID)
	if diff := cmp.Diff(map[string]string{"default": "plaintext", "a": "plaintext", "b": "plaintext"}, got); diff != "" {
		t.Errorf("auto mTLS (-want +got):\n%s", diff)
	}
	got = clusterTLS(t, grpcTLSWorldWith(t, greeterDR("", "    trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}")), grpcClientNoID)
	if diff := cmp.Diff(map[string]string{"default": "plaintext", "b": "plaintext"}, got); diff != "" {
		t.Errorf("ISTIO_MUTUAL on subset a (-want +got):\n%s", diff)
	}
	w := grpcTLSWorldWith(t)
	if w.ScopeKey(grpcClient) == w.ScopeKey(grpcClientNoID) {
		t.Errorf("clients with and without an identity share scope %q", w.ScopeKey(grpcClient))
	}
}

// serverListeners summarises the listeners an xDS-enabled grpc-go server
// at ip with labels gets: name → its chain ("mtls" requiring a client
// certificate, or "plaintext"), each chain checked for what grpc-go
// accepts on a server (no match, no SAN matchers, a non-forwarding route).
func serverListeners(t *testing.T, w *translate.World, ip string, labels map[string]string) map[string]string {
	t.Helper()
	p := &translate.Proxy{ID: "sidecar~" + ip + "~srv.default~default.svc.cluster.local", IP: ip, Pod: "srv", Namespace: "default", Labels: labels, Generator: translate.GeneratorGRPC}
	out := map[string]string{}
	for _, l := range translate.Local(w, p, nil).Listeners {
		if l.GetApiListener() != nil {
			t.Errorf("Local gave client listener %s", l.Name)
			continue
		}
		host := strings.TrimPrefix(l.Name, translate.GRPCServerListenerPrefix)
		if want := l.GetAddress().GetSocketAddress(); !strings.HasPrefix(host, want.GetAddress()) && "["+want.GetAddress()+"]:7070" != host {
			t.Errorf("listener %s has address %s: grpc-go wants the one it listens on", l.Name, want.GetAddress())
		}
		if len(l.FilterChains) != 1 {
			t.Fatalf("listener %s: %d filter chains, want 1", l.Name, len(l.FilterChains))
		}
		fc := l.FilterChains[0]
		if fc.GetFilterChainMatch() != nil {
			t.Errorf("listener %s: filter chain match %v; grpc-go drops chains matching on what it cannot", l.Name, fc.GetFilterChainMatch())
		}
		checkNonForwarding(t, l.Name, fc)
		ts := fc.GetTransportSocket()
		if ts == nil {
			out[l.Name] = "plaintext"
			continue
		}
		var d tlsv3.DownstreamTlsContext
		if err := ts.GetTypedConfig().UnmarshalTo(&d); err != nil {
			t.Fatal(err)
		}
		if !d.GetRequireClientCertificate().GetValue() {
			t.Errorf("listener %s: client certificate not required", l.Name)
		}
		out[l.Name] = "mtls " + commonSummary(t, d.GetCommonTlsContext())
	}
	return out
}

func checkNonForwarding(t *testing.T, name string, fc *listenerv3.FilterChain) {
	t.Helper()
	var h hcmv3.HttpConnectionManager
	if len(fc.Filters) != 1 || fc.Filters[0].GetTypedConfig().UnmarshalTo(&h) != nil {
		t.Fatalf("listener %s: want one HTTP connection manager, got %v", name, fc.Filters)
	}
	routes := h.GetRouteConfig().GetVirtualHosts()
	if len(routes) != 1 || len(routes[0].Routes) != 1 || routes[0].Routes[0].GetNonForwardingAction() == nil {
		t.Errorf("listener %s: want one route with non_forwarding_action (grpc-go refuses calls otherwise), got %v", name, routes)
	}
}

func serverNames(ip, chain string) map[string]string {
	return map[string]string{
		translate.GRPCServerListenerPrefix + ip + ":7070":   chain,
		translate.GRPCServerListenerPrefix + "0.0.0.0:7070": chain,
		translate.GRPCServerListenerPrefix + "[::]:7070":    chain,
	}
}

func peerAuthn(ns, name, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n" + spec
}

// xDS-enabled grpc-go servers get listeners with PeerAuthentication's
// mode. PERMISSIVE, which grpc-go cannot serve on one port, is plaintext
// except on a workload with an identity (tlsMode istio), whose clients
// use mTLS: there it is STRICT, as istiod's grpcgen does.
func TestGRPCServerListeners(t *testing.T) {
	labelsA := map[string]string{"app": "greeter", "version": "a", "security.istio.io/tlsMode": "istio"}
	labelsB := map[string]string{"app": "greeter", "version": "b"}
	const mtls = "mtls []"
	for _, tc := range []struct {
		name   string
		extra  []string
		ip     string
		labels map[string]string
		want   string
	}{
		{"nothing set, identity", nil, "127.20.0.1", labelsA, mtls},
		{"nothing set, no identity", nil, "127.20.0.2", labelsB, "plaintext"},
		{"namespace STRICT", []string{peerAuthn("default", "ns", "  mtls: {mode: STRICT}\n")}, "127.20.0.2", labelsB, mtls},
		{"mesh STRICT", []string{peerAuthn("istio-system", "mesh", "  mtls: {mode: STRICT}\n")}, "127.20.0.2", labelsB, mtls},
		{"mesh STRICT, namespace DISABLE", []string{peerAuthn("istio-system", "mesh", "  mtls: {mode: STRICT}\n"), peerAuthn("default", "ns", "  mtls: {mode: DISABLE}\n")}, "127.20.0.1", labelsA, "plaintext"},
		{"namespace STRICT, workload UNSET inherits", []string{peerAuthn("default", "ns", "  mtls: {mode: STRICT}\n"), peerAuthn("default", "wl", "  selector: {matchLabels: {version: b}}\n  mtls: {mode: UNSET}\n")}, "127.20.0.2", labelsB, mtls},
		{"workload DISABLE over namespace STRICT", []string{peerAuthn("default", "ns", "  mtls: {mode: STRICT}\n"), peerAuthn("default", "wl", "  selector: {matchLabels: {version: b}}\n  mtls: {mode: DISABLE}\n")}, "127.20.0.2", labelsB, "plaintext"},
		{"workload policy for another workload", []string{peerAuthn("default", "wl", "  selector: {matchLabels: {version: a}}\n  mtls: {mode: STRICT}\n")}, "127.20.0.2", labelsB, "plaintext"},
		{"portLevelMtls DISABLE", []string{peerAuthn("default", "wl", "  selector: {matchLabels: {app: greeter}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    7070: {mode: DISABLE}\n")}, "127.20.0.1", labelsA, "plaintext"},
		{"portLevelMtls STRICT", []string{peerAuthn("default", "wl", "  selector: {matchLabels: {app: greeter}}\n  mtls: {mode: DISABLE}\n  portLevelMtls:\n    7070: {mode: STRICT}\n")}, "127.20.0.2", labelsB, mtls},
		{"other namespace's STRICT", []string{peerAuthn("other", "ns", "  mtls: {mode: STRICT}\n")}, "127.20.0.2", labelsB, "plaintext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serverListeners(t, grpcTLSWorldWith(t, tc.extra...), tc.ip, tc.labels)
			if diff := cmp.Diff(serverNames(tc.ip, tc.want), got); diff != "" {
				t.Errorf("server listeners (-want +got):\n%s", diff)
			}
		})
	}
}

// A server at an address no workload has gets no listener (grpc-go then
// stays not serving), and proxyless clients' Local part stays empty of
// anything but server listeners.
func TestGRPCServerListenersOnlyForOwnPorts(t *testing.T) {
	w := grpcTLSWorldWith(t)
	if got := serverListeners(t, w, "127.20.0.99", nil); len(got) != 0 {
		t.Errorf("listeners for an address with no workload: %v", got)
	}
}

func TestPeerAuthenticationMode(t *testing.T) {
	w := grpcTLSWorldWith(t,
		peerAuthn("istio-system", "mesh", "  mtls: {mode: STRICT}\n"),
		peerAuthn("default", "ns", "  mtls: {mode: UNSET}\n"),
		peerAuthn("default", "wl", "  selector: {matchLabels: {app: greeter}}\n  portLevelMtls:\n    8080: {mode: PERMISSIVE}\n    9090: {mode: UNSET}\n"),
	)
	greeter := map[string]string{"app": "greeter"}
	for _, tc := range []struct {
		ns     string
		labels map[string]string
		port   uint32
		want   security.PeerAuthentication_MutualTLS_Mode
	}{
		{"default", greeter, 7070, security.PeerAuthentication_MutualTLS_STRICT},
		{"default", greeter, 8080, security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"default", greeter, 9090, security.PeerAuthentication_MutualTLS_STRICT},
		{"default", nil, 8080, security.PeerAuthentication_MutualTLS_STRICT},
		{"other", greeter, 8080, security.PeerAuthentication_MutualTLS_STRICT},
	} {
		if got := w.PeerAuthenticationMode(tc.ns, tc.labels, tc.port); got != tc.want {
			t.Errorf("%s %v port %d: %v, want %v", tc.ns, tc.labels, tc.port, got, tc.want)
		}
	}
	if got := grpcTLSWorldWith(t).PeerAuthenticationMode("default", nil, 1); got != security.PeerAuthentication_MutualTLS_PERMISSIVE {
		t.Errorf("no policy: %v, want PERMISSIVE", got)
	}
}
