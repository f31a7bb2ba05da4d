package xdsresource_test

import (
	"log/slog"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

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

func upstreamSocket(t *testing.T, u *tlsv3.UpstreamTlsContext) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, u)}}
}

// Security settings the proxy would not apply are refused (NACK), with
// the path of the field, never ignored.
func TestTLSRefusals(t *testing.T) {
	sds := func(name string) []*tlsv3.SdsSecretConfig { return []*tlsv3.SdsSecretConfig{{Name: name}} }
	combined := func(root string, sans ...*tlsv3.SubjectAltNameMatcher) *tlsv3.CommonTlsContext_CombinedValidationContext {
		return &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: root}}}
	}
	for _, tc := range []struct {
		name string
		ctx  *tlsv3.UpstreamTlsContext
		want string
	}{
		{"inline key", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "PEM"}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "KEY"}}}}}},
			"transport_socket.typed_config.common_tls_context.tls_certificates[0].certificate_chain.specifier: inline certificates"},
		{"another SDS secret", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: sds("kubernetes://creds"), ValidationContextType: combined("ROOTCA")}},
			`tls_certificate_sds_secret_configs[0].name: SDS secret "kubernetes://creds"`},
		{"workload certificate without the mesh roots", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: sds("default")}},
			"needs the mesh roots"},
		{"regex SAN", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: sds("default"), ValidationContextType: combined("ROOTCA",
			&tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://"}}})}},
			"match_typed_subject_alt_names[0].matcher.match_pattern: only exact"},
		{"CRL", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			Crl: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/crl"}}}}}},
			"crl /crl without a trusted CA"},
		{"inline CRL", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			Crl: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "PEM"}}}}}},
			"validation_context.crl.specifier: inline"},
		{"CRL with the mesh roots", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: sds("default"),
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{Crl: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/crl"}}},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"}}}}},
			"a crl with the mesh roots: not supported"},
		{"renegotiation", &tlsv3.UpstreamTlsContext{AllowRenegotiation: true}, "allow_renegotiation: not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := xdsresource.DecodeCluster(marshal(t, &clusterv3.Cluster{Name: "c", TransportSocket: upstreamSocket(t, tc.ctx)}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}

	// A listener's TLS: inbound only, on chains that match TLS, with the
	// workload identity.
	down := func(common *tlsv3.CommonTlsContext) *corev3.TransportSocket {
		return &corev3.TransportSocket{Name: "tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			CommonTlsContext: common, RequireClientCertificate: wrapperspb.Bool(true)})}}
	}
	mesh := &tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: sds("default"), ValidationContextType: combined("ROOTCA")}
	chain := func(proto string, ts *corev3.TransportSocket) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9080), TransportProtocol: proto},
			TransportSocket: ts, Filters: []*listenerv3.Filter{tcpFilter(t, "c")}}
	}
	for _, tc := range []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"outbound", &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 15001), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains: []*listenerv3.FilterChain{chain("tls", down(mesh))}}, "filter_chains[0]: transport_socket and transport_protocol are supported on inbound listeners only"},
		{"TLS on a chain for any protocol", &listenerv3.Listener{Name: "virtualInbound", Address: addr("0.0.0.0", 15006), TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains: []*listenerv3.FilterChain{chain("", down(mesh))}}, "must match transport_protocol tls"},
		{"another protocol", &listenerv3.Listener{Name: "virtualInbound", Address: addr("0.0.0.0", 15006), TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains: []*listenerv3.FilterChain{chain("quic", nil)}}, `transport_protocol: "quic"`},
		{"files on a listener", &listenerv3.Listener{Name: "virtualInbound", Address: addr("0.0.0.0", 15006), TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains: []*listenerv3.FilterChain{chain("tls", down(&tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: sds("file-cert:/a~/b")}))}}, "only the workload identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := xdsresource.DecodeListener(marshal(t, tc.l))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	// Istio's PERMISSIVE pair decodes.
	l, err := xdsresource.DecodeListener(marshal(t, &listenerv3.Listener{Name: "virtualInbound", Address: addr("0.0.0.0", 15006), TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{chain("tls", down(mesh)), chain("raw_buffer", nil)}}))
	if err != nil {
		t.Fatal(err)
	}
	if fc := l.FilterChains[0]; fc.TransportProtocol != "tls" || fc.TLS == nil || !fc.TLS.RequireClientCert {
		t.Errorf("tls chain decoded as %+v", fc)
	}
	if fc := l.FilterChains[1]; fc.TransportProtocol != "raw_buffer" || fc.TLS != nil {
		t.Errorf("plaintext chain decoded as %+v", fc)
	}
}

// A ServiceEntry's subjectAltNames and its endpoints' service accounts
// are the identities its sidecar endpoints may present; MeshConfig
// enableAutoMtls: false leaves plaintext unless a DestinationRule asks.
func TestTranslatedServiceEntrySANsAndAutoMTLSOff(t *testing.T) {
	se := `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger}
spec:
  hosts: [ledger.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7000, name: tcp, protocol: TCP}]
  subjectAltNames: ["spiffe://cluster.local/ns/finance/sa/ledger-v1"]
  endpoints: [{address: 127.10.9.7, serviceAccount: ledger, labels: {security.istio.io/tlsMode: istio}}]
`
	c := tlsClusters(t, "ledger.internal", se)["outbound|7000||ledger.internal"]
	tls := c.TLSFor("istio")
	want := []string{"spiffe://cluster.local/ns/default/sa/ledger", "spiffe://cluster.local/ns/finance/sa/ledger-v1"}
	if tls == nil || !tls.Mesh || !cmp.Equal(tls.SANs, want) {
		t.Errorf("TLS for a sidecar endpoint = %+v, want mesh mTLS expecting %v", tls, want)
	}
	off := tlsClusters(t, "ledger.internal", se, `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    enableAutoMtls: false
`)["outbound|7000||ledger.internal"]
	if off.TLSFor("istio") != nil {
		t.Errorf("enableAutoMtls false: TLS %+v, want plaintext", off.TLSFor("istio"))
	}
}

// MUTUAL naming a Kubernetes secret (credentialName, which sidecars do
// not read) still originates TLS, without a client certificate, so a
// server that requires one refuses it: never a fallback to plaintext.
func TestTranslatedMutualWithoutFilesStaysTLS(t *testing.T) {
	cs := tlsClusters(t, "vault.example", `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vault}
spec:
  hosts: [vault.example]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8200, name: http, protocol: HTTP}]
  endpoints: [{address: 127.10.9.8}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: vault}
spec:
  host: vault.example
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: vault-client, sni: vault.example}
`)
	c := cs["outbound|8200||vault.example"]
	want := &xdsresource.UpstreamTLS{SystemRoots: true, SNI: "vault.example"}
	if diff := cmp.Diff(want, c.TLS); diff != "" {
		t.Errorf("cluster TLS (-want +got):\n%s", diff)
	}
}
