package translate

import (
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// PeerAuthentication, translated as istiod does into virtualInbound: each
// port's filter chain is split by what a connection speaks.
//
//   - STRICT: one chain, transport_protocol tls with any ALPN,
//     terminating mTLS with the workload identity (DownstreamTlsContext,
//     client certificate required), as istiod's strict chains do: a
//     proxyless gRPC client's mTLS offers only h2. Nothing else matches,
//     so plaintext is refused.
//   - PERMISSIVE: a chain terminating TLS with Istio's ALPN
//     (istio-peer-exchange, istio), plus a raw_buffer chain for plaintext and a
//     tls chain without ALPN for the app's own TLS, both passed on as
//     they come.
//   - DISABLE: the port's one chain as before, which takes anything and
//     terminates nothing.
//
// The effective mode follows Istio: the workload's policy (selector) over
// the namespace's over the mesh's (root namespace); UNSET inherits and no
// policy at all is PERMISSIVE; portLevelMtls (only in a policy with a
// selector) overrides per workload port (World.PeerAuthenticationMode). Ports no service claims get a
// passthrough chain split the same way, so STRICT holds for them too.
// With no PeerAuthentication for the workload the chains stay as they
// were (plaintext, which is what PERMISSIVE admits; a sidecar's mTLS
// arrives on the tunnel port, which counts as mTLS).

// mtlsALPN are the ALPN values that mark Istio mutual TLS.
var mtlsALPN = []string{"istio-peer-exchange", "istio"}

// peerAuthnScope says whether any PeerAuthentication applies to the
// proxy's workload, and lists the ports its workload policy sets
// (portLevelMtls); World.PeerAuthenticationMode gives each port's mode.
func (t *translation) peerAuthnScope() (applies bool, portLevel []uint32) {
	root := t.w.RootNamespace()
	var wl *config.Object
	for _, o := range t.w.Snap.OfKind(config.PeerAuthentication) {
		pa, ok := o.Spec.(*security.PeerAuthentication)
		if !ok {
			continue
		}
		sel := pa.GetSelector().GetMatchLabels()
		switch {
		case len(sel) > 0:
			if o.Namespace == t.proxy.Namespace && registry.Selects(sel, t.proxy.Labels) {
				applies = true
				if wl == nil || o.Name < wl.Name {
					wl = o
				}
			}
		case o.Namespace == root, o.Namespace == t.proxy.Namespace:
			applies = true
		}
	}
	if wl != nil {
		for p := range wl.Spec.(*security.PeerAuthentication).GetPortLevelMtls() {
			portLevel = append(portLevel, p)
		}
		sort.Slice(portLevel, func(i, j int) bool { return portLevel[i] < portLevel[j] })
	}
	return applies, portLevel
}

// applyPeerAuthn splits virtualInbound's chains by the PeerAuthentication
// in effect (see above).
func (t *translation) applyPeerAuthn(l *listenerv3.Listener) {
	applies, portLevel := t.peerAuthnScope()
	if !applies {
		return
	}
	modeOf := func(port uint32) security.PeerAuthentication_MutualTLS_Mode {
		return t.w.PeerAuthenticationMode(t.proxy.Namespace, t.proxy.Labels, port)
	}
	covered := map[uint32]bool{}
	var out []*listenerv3.FilterChain
	for _, fc := range l.FilterChains {
		port := fc.GetFilterChainMatch().GetDestinationPort().GetValue()
		covered[port] = true
		out = append(out, peerAuthnChains(fc, modeOf(port))...)
	}
	// Unclaimed ports: the workload's mode, and a port-level one for a
	// port no service names.
	if m := modeOf(0); !covered[0] && m != security.PeerAuthentication_MutualTLS_DISABLE {
		out = append(out, peerAuthnChains(passthroughChain(0), m)...)
	}
	for _, p := range portLevel {
		if m := modeOf(p); !covered[p] && m != security.PeerAuthentication_MutualTLS_DISABLE {
			out = append(out, peerAuthnChains(passthroughChain(p), m)...)
		}
	}
	l.FilterChains = out
}

// passthroughChain passes a port's connections to the app as they come.
func passthroughChain(port uint32) *listenerv3.FilterChain {
	fc := &listenerv3.FilterChain{Name: inboundPassthroughCluster, Filters: []*listenerv3.Filter{tcpProxyFilter(inboundPassthroughCluster, inboundPassthroughCluster)}}
	if port != 0 {
		fc.FilterChainMatch = &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)}
	}
	return fc
}

// peerAuthnChains is fc as the mode has it.
func peerAuthnChains(fc *listenerv3.FilterChain, mode security.PeerAuthentication_MutualTLS_Mode) []*listenerv3.FilterChain {
	if mode == security.PeerAuthentication_MutualTLS_DISABLE {
		return []*listenerv3.FilterChain{fc}
	}
	variant := func(transport string, alpn []string, socket *corev3.TransportSocket) *listenerv3.FilterChain {
		c := proto.Clone(fc).(*listenerv3.FilterChain)
		if c.FilterChainMatch == nil {
			c.FilterChainMatch = &listenerv3.FilterChainMatch{}
		}
		c.FilterChainMatch.TransportProtocol = transport
		c.FilterChainMatch.ApplicationProtocols = alpn
		c.TransportSocket = socket
		return c
	}
	// STRICT terminates mTLS whatever the ALPN, as istiod's
	// inboundStrict*FilterChainMatchOptions do (proxyless gRPC clients
	// offer only h2); PERMISSIVE must tell the mesh's mTLS from the app's
	// own TLS, so only Istio's ALPN is terminated there.
	alpn := mtlsALPN
	if mode == security.PeerAuthentication_MutualTLS_STRICT {
		alpn = nil
	}
	out := []*listenerv3.FilterChain{variant("tls", alpn, &corev3.TransportSocket{Name: tlsSocketName,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(MeshDownstreamTLS())}})}
	if mode != security.PeerAuthentication_MutualTLS_STRICT {
		out = append(out, variant("raw_buffer", nil, nil), variant("tls", nil, nil))
	}
	return out
}

// MeshDownstreamTLS terminates Istio mutual TLS with the workload
// identity: SDS "default" presented, a client certificate required and
// verified against "ROOTCA".
func MeshDownstreamTLS() *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SecretDefault, SdsConfig: adsSource()}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: adsSource()},
			}},
			AlpnProtocols: []string{"h2", "http/1.1"},
		},
	}
}
