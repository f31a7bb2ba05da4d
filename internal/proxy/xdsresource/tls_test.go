package xdsresource_test

import (
	"log/slog"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// tlsClusters translates extra config for the sidecar proxy and decodes
// its clusters whose name contains host.
func tlsClusters(t *testing.T, host string, extra ...string) map[string]*xdsresource.Cluster {
	t.Helper()
	res := translate.ForProxy(world(t, extra...), sidecarProxy, slog.New(slog.DiscardHandler))
	out := map[string]*xdsresource.Cluster{}
	for _, c := range res.Clusters {
		if !strings.Contains(c.GetName(), host) {
			continue
		}
		_, dc, err := xdsresource.ClusterResource.Decode(marshal(t, c))
		if err != nil {
			t.Fatalf("cluster %s: %v", c.GetName(), err)
		}
		out[c.GetName()] = dc
	}
	if len(out) == 0 {
		t.Fatalf("no cluster for %s", host)
	}
	return out
}

// Auto mTLS: a service's cluster carries Istio's transport_socket_matches,
// tlsMode istio endpoints mTLS with the workload identity and the
// service accounts' SPIFFE IDs, the rest plaintext.
func TestTranslatedAutoMTLS(t *testing.T) {
	cs := tlsClusters(t, "payment.default", `
apiVersion: v1
kind: Service
metadata: {name: payment}
spec:
  selector: {app: payment}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: payment}
spec: {address: 127.10.9.2, serviceAccount: payment, labels: {app: payment, security.istio.io/tlsMode: istio}}
`)
	c := cs["outbound|9080||payment.default.svc.cluster.local"]
	want := []xdsresource.TLSMatch{
		{Name: "tlsMode-istio", TLSMode: "istio", TLS: &xdsresource.UpstreamTLS{Mesh: true,
			SANs: []string{"spiffe://cluster.local/ns/default/sa/payment"},
			SNI:  "outbound_.9080_._.payment.default.svc.cluster.local", ALPN: []string{"istio-peer-exchange", "istio"}}},
		{Name: "tlsMode-disabled"},
	}
	if diff := cmp.Diff(want, c.TLSMatches); diff != "" {
		t.Errorf("transport_socket_matches (-want +got):\n%s", diff)
	}
	if got := c.TLSFor("istio"); got == nil || !got.Mesh {
		t.Errorf("TLSFor(istio) = %+v, want mesh mTLS", got)
	}
	if got := c.TLSFor(""); got != nil {
		t.Errorf("TLSFor a plaintext endpoint = %+v, want nil", got)
	}
}

// wantClusterTLS is what the decoder must make of a cluster's transport
// socket and socket matches, read with the Envoy API's own types.
func wantClusterTLS(t *testing.T, c *clusterv3.Cluster) (*xdsresource.UpstreamTLS, []xdsresource.TLSMatch) {
	t.Helper()
	var matches []xdsresource.TLSMatch
	for _, m := range c.GetTransportSocketMatches() {
		matches = append(matches, xdsresource.TLSMatch{Name: m.GetName(), TLSMode: m.GetMatch().GetFields()["tlsMode"].GetStringValue(), TLS: wantUpstreamTLS(t, m.GetTransportSocket())})
	}
	return wantUpstreamTLS(t, c.GetTransportSocket()), matches
}

func wantUpstreamTLS(t *testing.T, ts *corev3.TransportSocket) *xdsresource.UpstreamTLS {
	t.Helper()
	if ts == nil || ts.GetTypedConfig().MessageIs(&rawbufferv3.RawBuffer{}) {
		return nil
	}
	var u tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&u); err != nil {
		t.Fatal(err)
	}
	out := &xdsresource.UpstreamTLS{SNI: u.GetSni(), ALPN: u.GetCommonTlsContext().GetAlpnProtocols()}
	common := u.GetCommonTlsContext()
	for _, s := range common.GetTlsCertificateSdsSecretConfigs() {
		if s.GetName() == "default" {
			out.Mesh = true
		} else if c, k, ok := strings.Cut(strings.TrimPrefix(s.GetName(), "file-cert:"), "~"); ok {
			out.CertFile, out.KeyFile = c, k
		}
	}
	cv := common.GetCombinedValidationContext()
	switch root := cv.GetValidationContextSdsSecretConfig().GetName(); {
	case root == "file-root:system":
		out.SystemRoots = true
	case strings.HasPrefix(root, "file-root:"):
		out.CAFile = strings.TrimPrefix(root, "file-root:")
	}
	for _, m := range cv.GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		out.SANs = append(out.SANs, m.GetMatcher().GetExact())
	}
	return out
}
