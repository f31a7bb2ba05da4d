package translate

import (
	"slices"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// Upstream TLS, as istiod builds it for sidecars:
//
//   - auto mTLS (MeshConfig enableAutoMtls, on by default) with no
//     DestinationRule tls: transport_socket_matches, tlsMode istio
//     endpoints (those with a sidecar) get mutual TLS with the workload
//     identity, the others plaintext;
//   - DestinationRule tls ISTIO_MUTUAL: mutual TLS with the workload
//     identity to every endpoint; DISABLE: plaintext even to sidecars;
//     SIMPLE and MUTUAL: TLS origination with files the proxy reads
//     (caCertificates, clientCertificate, privateKey).
//
// The workload identity is SDS "default" (certificate) and "ROOTCA" (trust
// bundle), the server's expected identities the SPIFFE IDs of the
// service's service accounts (or a ServiceEntry's subjectAltNames, or the
// DestinationRule's). Proxyless gRPC clients get none of this here: their
// credentials come from their bootstrap's certificate providers.

// SDS secret names of the workload identity (Istio's).
const (
	SecretDefault = "default"
	SecretRootCA  = "ROOTCA"
	// fileRootSystem names the system trust store as a validation
	// secret: TLS origination verifies against it when a DestinationRule
	// names no caCertificates (Istio's VERIFY_CERTIFICATE_AT_CLIENT).
	fileRootSystem = "file-root:system"

	tlsSocketName       = "envoy.transport_sockets.tls"
	rawBufferSocketName = "envoy.transport_sockets.raw_buffer"
)

// applyTLS sets the cluster's transport socket(s) for the effective tls
// settings of its port (port-level settings already merged in).
func (t *translation) applyTLS(c *clusterv3.Cluster, svc *registry.Service, port registry.Port, tls *networking.ClientTLSSettings) {
	if t.proxy.Generator == GeneratorGRPC {
		return
	}
	sni := istioSNI(c.GetName())
	// DISABLE is the mode's zero value: a tls section absent is auto mTLS.
	switch mode := tls.GetMode(); {
	case tls == nil:
	case mode == networking.ClientTLSSettings_DISABLE:
		return
	case mode == networking.ClientTLSSettings_ISTIO_MUTUAL:
		sans := tls.GetSubjectAltNames()
		if len(sans) == 0 {
			sans = t.serviceSANs(svc, port)
		}
		if s := tls.GetSni(); s != "" {
			sni = s
		}
		c.TransportSocket = tlsSocket(MeshUpstreamTLS(sans, sni))
		return
	default: // SIMPLE, MUTUAL
		c.TransportSocket = tlsSocket(originationTLS(tls))
		return
	}
	// No tls setting: auto mTLS.
	if ae := t.w.Mesh.GetEnableAutoMtls(); ae != nil && !ae.GetValue() {
		return
	}
	c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{
			Name:            "tlsMode-istio",
			Match:           &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue(TLSModeIstio)}},
			TransportSocket: tlsSocket(MeshUpstreamTLS(t.serviceSANs(svc, port), sni)),
		},
		{
			Name:            "tlsMode-disabled",
			Match:           &structpb.Struct{},
			TransportSocket: &corev3.TransportSocket{Name: rawBufferSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbufferv3.RawBuffer{})}},
		},
	}
}

// istioSNI is the SNI istiod gives a cluster: its name with "|" as "_."
// (outbound_.9080_.v1_.reviews.default.svc.cluster.local).
func istioSNI(cluster string) string { return strings.ReplaceAll(cluster, "|", "_.") }

// serviceSANs are the SPIFFE IDs the service's endpoints on port may
// present: each service account's, in the mesh trust domain, and for a
// ServiceEntry its subjectAltNames too. Empty when nothing is known, which
// accepts any mesh identity (as Istio does).
func (t *translation) serviceSANs(svc *registry.Service, port registry.Port) []string {
	seen := map[string]bool{}
	for _, in := range svc.Instances[port.Port] {
		if in.ServiceAccount == "" || in.Namespace == "" {
			continue
		}
		seen["spiffe://"+t.w.domain+"/ns/"+in.Namespace+"/sa/"+in.ServiceAccount] = true
	}
	for _, o := range t.w.Snap.OfKind(config.ServiceEntry) {
		se, ok := o.Spec.(*networking.ServiceEntry)
		if !ok || o.Namespace != svc.Namespace || !slices.Contains(se.GetHosts(), svc.Hostname) {
			continue
		}
		for _, s := range se.GetSubjectAltNames() {
			seen[s] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// MeshUpstreamTLS is Istio's mutual TLS with the workload identity to a
// server expected to present one of sans (any mesh identity when empty).
func MeshUpstreamTLS(sans []string, sni string) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SecretDefault, SdsConfig: adsSource()}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(sans)},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: adsSource()},
			}},
			AlpnProtocols: []string{"istio-peer-exchange", "istio"},
		},
	}
}

// originationTLS is a DestinationRule's SIMPLE or MUTUAL TLS: files the
// proxy reads, named by Istio's SDS names.
func originationTLS(tls *networking.ClientTLSSettings) *tlsv3.UpstreamTlsContext {
	common := &tlsv3.CommonTlsContext{}
	// MUTUAL without the files (a credentialName, which sidecars do not
	// read) presents no certificate: the server refuses the handshake,
	// rather than the cluster falling back to plaintext.
	if tls.GetMode() == networking.ClientTLSSettings_MUTUAL && tls.GetClientCertificate() != "" && tls.GetPrivateKey() != "" {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{
			Name: "file-cert:" + tls.GetClientCertificate() + "~" + tls.GetPrivateKey(), SdsConfig: adsSource()}}
	}
	if !tls.GetInsecureSkipVerify().GetValue() {
		root := fileRootSystem
		if ca := tls.GetCaCertificates(); ca != "" {
			root = "file-root:" + ca
		}
		def := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(tls.GetSubjectAltNames())}
		if crl := tls.GetCaCrl(); crl != "" {
			// As istiod sets it: a file the proxy reads.
			def.Crl = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: crl}}
		}
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         def,
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: root, SdsConfig: adsSource()},
		}}
	}
	return &tlsv3.UpstreamTlsContext{Sni: tls.GetSni(), CommonTlsContext: common}
}

// sanMatchers are exact subject alt name matchers: URI for SPIFFE IDs,
// DNS for the rest, as istiod types them.
func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		typ := tlsv3.SubjectAltNameMatcher_DNS
		if strings.HasPrefix(s, "spiffe://") {
			typ = tlsv3.SubjectAltNameMatcher_URI
		}
		out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: typ, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}})
	}
	return out
}

func tlsSocket(ctx *tlsv3.UpstreamTlsContext) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}
