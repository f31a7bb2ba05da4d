package translate_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/translate"
)

// Proxyless gRPC and sidecars in one mesh (helper H9): greeter-s runs a
// sidecar, greeter-p proxyless gRPC (Istio's grpc-agent annotation), both
// with the mesh identity.
const proxylessWorld = `apiVersion: v1
kind: Service
metadata: {name: sidecarred, namespace: default}
spec:
  selector: {app: sidecarred}
  ports: [{name: grpc, port: 7070}]
---
apiVersion: v1
kind: Service
metadata: {name: proxyless, namespace: default}
spec:
  selector: {app: proxyless}
  ports: [{name: grpc, port: 7070}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-s, namespace: default}
spec:
  address: 127.20.0.1
  labels: {app: sidecarred, security.istio.io/tlsMode: istio}
  serviceAccount: greeter-s
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: greeter-p
  namespace: default
  annotations: {inject.istio.io/templates: grpc-agent}
spec:
  address: 127.20.0.2
  labels: {app: proxyless, security.istio.io/tlsMode: istio}
  serviceAccount: greeter-p
`

func proxylessWorldWith(t *testing.T, extra ...string) *translate.World {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "greeter.yaml"), []byte(proxylessWorld), 0o644); err != nil {
		t.Fatal(err)
	}
	return world(t, dir, extra...)
}

func appPeerAuthn(app, mode string) string {
	return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ` + app + `, namespace: default}
spec:
  selector: {matchLabels: {app: ` + app + `}}
  mtls: {mode: ` + mode + `}
`
}

// A proxyless client's auto mTLS goes to endpoints that take grpc-go's
// mTLS (ALPN h2): a sidecar only on a STRICT port (its PERMISSIVE chains
// terminate Istio's ALPN alone, so plaintext is what it takes from
// grpc-go there, as in Istio), a proxyless server unless DISABLE.
func TestProxylessClientMTLSFollowsTheServersPort(t *testing.T) {
	const idS = "spiffe://cluster.local/ns/default/sa/greeter-s"
	const idP = "spiffe://cluster.local/ns/default/sa/greeter-p"
	for _, tc := range []struct {
		name  string
		extra []string
		want  map[string]string
	}{
		{"no policy", nil, map[string]string{"sidecarred": "plaintext", "proxyless": "mtls [" + idP + "]"}},
		{"STRICT", []string{appPeerAuthn("sidecarred", "STRICT"), appPeerAuthn("proxyless", "STRICT")},
			map[string]string{"sidecarred": "mtls [" + idS + "]", "proxyless": "mtls [" + idP + "]"}},
		{"PERMISSIVE", []string{appPeerAuthn("sidecarred", "PERMISSIVE"), appPeerAuthn("proxyless", "PERMISSIVE")},
			map[string]string{"sidecarred": "plaintext", "proxyless": "mtls [" + idP + "]"}},
		{"DISABLE", []string{appPeerAuthn("sidecarred", "DISABLE"), appPeerAuthn("proxyless", "DISABLE")},
			map[string]string{"sidecarred": "plaintext", "proxyless": "plaintext"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := translate.ForProxy(proxylessWorldWith(t, tc.extra...), grpcClient, nil)
			got := map[string]string{}
			for _, svc := range []string{"sidecarred", "proxyless"} {
				c := findCluster(r, "outbound|7070||"+svc+".default.svc.cluster.local")
				if c == nil {
					t.Fatalf("no cluster for %s", svc)
				}
				got[svc] = upstreamSummary(t, c)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("clusters (-want +got):\n%s", d)
			}
		})
	}
}

// Sidecars learn which endpoints are proxyless (trellis metadata
// proxyless), so they reach those with direct mTLS instead of a tunnel.
func TestProxylessEndpointMetadata(t *testing.T) {
	client := &translate.Proxy{ID: "sidecar~127.20.0.9~client.default~default.svc.cluster.local", IP: "127.20.0.9", Pod: "client", Namespace: "default", Labels: map[string]string{"app": "client"}}
	r := translate.ForProxy(proxylessWorldWith(t), client, nil)
	for svc, want := range map[string]string{"sidecarred": "", "proxyless": "true"} {
		cla := findCLA(r, "outbound|7070||"+svc+".default.svc.cluster.local")
		if cla == nil {
			t.Fatalf("no endpoints for %s", svc)
		}
		md := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetMetadata().GetFilterMetadata()[translate.MetadataNamespace]
		if got := md.GetFields()["proxyless"].GetStringValue(); got != want {
			t.Errorf("%s: proxyless %q, want %q", svc, got, want)
		}
		if got := md.GetFields()["tlsMode"].GetStringValue(); got != "istio" {
			t.Errorf("%s: tlsMode %q, want istio", svc, got)
		}
	}
}

// STRICT terminates mTLS whatever the ALPN (a grpc-go client offers only
// h2), as istiod's strict chains do; PERMISSIVE keeps Istio's ALPN on its
// mTLS chain, so the app's own TLS passes.
func TestStrictChainTakesAnyALPN(t *testing.T) {
	server := &translate.Proxy{ID: "sidecar~127.20.0.1~greeter-s.default~default.svc.cluster.local", IP: "127.20.0.1", Pod: "greeter-s", Namespace: "default",
		Labels: map[string]string{"app": "sidecarred", translate.TLSModeLabel: translate.TLSModeIstio}}
	for mode, want := range map[string][]string{"STRICT": nil, "PERMISSIVE": {"istio-peer-exchange", "istio"}} {
		r := translate.ForProxy(proxylessWorldWith(t, appPeerAuthn("sidecarred", mode)), server, nil)
		var found bool
		for _, l := range r.Listeners {
			if l.GetName() != translate.VirtualInbound {
				continue
			}
			for _, fc := range l.GetFilterChains() {
				if fc.GetTransportSocket() == nil || fc.GetFilterChainMatch().GetDestinationPort().GetValue() != 7070 {
					continue
				}
				found = true
				if d := cmp.Diff(want, fc.GetFilterChainMatch().GetApplicationProtocols()); d != "" {
					t.Errorf("%s: mTLS chain's ALPN (-want +got):\n%s", mode, d)
				}
			}
		}
		if !found {
			t.Errorf("%s: no mTLS chain for port 7070", mode)
		}
	}
}
