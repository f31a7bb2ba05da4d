package translate

import (
	"net"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// Proxyless gRPC and mutual TLS, in Istio's proxyless shape (grpcgen).
//
// grpc-go has no SDS: its credentials come from certificate provider
// instances named in its bootstrap (file_watcher over files trellis writes
// and rotates, internal/identity/filecert). Clusters and server listeners
// name the instance "default" with certificate names "default" (the
// workload certificate) and "ROOTCA" (the trust bundle), in both the
// current fields (tls_certificate_provider_instance,
// ca_certificate_provider_instance) and the deprecated ones older clients
// read, as istiod sends them.
//
// Only a client that has an identity gets any of this: one whose node
// labels carry tlsMode istio, as a proxyless workload set up with
// certificates is labelled (its bootstrap then names the "default"
// provider). grpc-go NACKs a cluster naming a provider its bootstrap lacks,
// whatever credentials the channel uses, so a client without an identity
// gets plaintext clusters, and none where a DestinationRule demands
// ISTIO_MUTUAL (calls fail rather than go out in plaintext).
//
// grpc-go honours a cluster's single transport_socket and NACKs
// transport_socket_matches, so auto mTLS is decided per cluster: mutual
// TLS when every endpoint of the cluster takes it (tlsMode istio, and
// either a proxyless workload whose port is not DISABLE, or a sidecar
// whose port is STRICT: grpc-go offers ALPN h2 only, which a sidecar's
// PERMISSIVE chains do not terminate, as in Istio), plaintext
// otherwise. A DestinationRule's tls wins: DISABLE is plaintext,
// ISTIO_MUTUAL mutual TLS to every endpoint. SIMPLE and MUTUAL need
// certificate files the control plane cannot hand to grpc-go; such a
// cluster is not served (calls fail) rather than sent in the clear.
//
// An xDS-enabled grpc-go server asks for the listener
// grpc/server?xds.resource.listening_address=IP:PORT; Trellis serves one
// per port of the workload at the proxy's IP (and the wildcard addresses a
// server may listen on), with PeerAuthentication's mode: STRICT requires a
// client certificate, DISABLE is plaintext. grpc-go cannot tell TLS from
// plaintext on one port (its filter chains match only raw_buffer), so
// PERMISSIVE is, as in Istio, plaintext, except on a workload labelled
// tlsMode istio, whose clients use mutual TLS: there it is STRICT.

// GRPCServerListenerPrefix is the name grpc-go's xDS server asks for
// before its listening address (the bootstrap's
// server_listener_resource_name_template is this prefix and "%s").
const GRPCServerListenerPrefix = "grpc/server?xds.resource.listening_address="

// Certificate provider instance and certificate names of the proxyless
// workload identity (Istio's).
const (
	GRPCCertProviderInstance = "default"
	GRPCIdentityCertName     = "default"
	GRPCRootCertName         = "ROOTCA"
)

// addGRPCClusters builds a service port's clusters for a proxyless client
// and gives each its transport security.
func (t *translation) addGRPCClusters(svc *registry.Service, port registry.Port) {
	o := t.w.destinationRuleObject(t.proxy, svc.Hostname, svc.Namespace)
	cs := t.servedClusters(svc, port, o)
	var dr *networking.DestinationRule
	if o != nil {
		dr = o.Spec.(*networking.DestinationRule)
	}
	var dropped map[string]bool
	kept := cs.clusters[:0]
	for _, c := range cs.clusters {
		var ss *networking.Subset
		if parts := strings.Split(c.GetName(), "|"); len(parts) == 4 && parts[2] != "" {
			for _, s := range dr.GetSubsets() {
				if s.GetName() == parts[2] {
					ss = s
					break
				}
			}
		}
		policy := mergePolicy(dr.GetTrafficPolicy(), ss.GetTrafficPolicy(), port.Port)
		if !t.applyGRPCTLS(c, svc, port, ss.GetLabels(), policy.GetTls()) {
			if dropped == nil {
				dropped = map[string]bool{}
			}
			dropped[c.GetName()] = true
			continue
		}
		kept = append(kept, c)
	}
	t.res.Clusters = append(t.res.Clusters, kept...)
	for _, cla := range cs.endpoints {
		if !dropped[cla.GetClusterName()] {
			t.res.Endpoints = append(t.res.Endpoints, cla)
		}
	}
}

// applyGRPCTLS sets a proxyless client's transport security on c, the
// cluster of svc's port for the endpoints matching subset. It reports
// false for a cluster that must not be served.
func (t *translation) applyGRPCTLS(c *clusterv3.Cluster, svc *registry.Service, port registry.Port, subset map[string]string, tls *networking.ClientTLSSettings) bool {
	if c.GetType() != clusterv3.Cluster_EDS {
		return true
	}
	var endpoints []*registry.Instance
	for _, in := range svc.Instances[port.Port] {
		if labelsMatch(subset, in.Labels) {
			endpoints = append(endpoints, in)
		}
	}
	// DISABLE is the mode's zero value: a tls section absent is auto mTLS.
	switch mode := tls.GetMode(); {
	case tls == nil:
	case mode == networking.ClientTLSSettings_DISABLE:
		return true
	case mode == networking.ClientTLSSettings_ISTIO_MUTUAL:
		if !grpcHasIdentity(t.proxy) {
			t.log.Error("a DestinationRule asks for ISTIO_MUTUAL but this proxyless gRPC client has no mesh identity (its node labels lack security.istio.io/tlsMode: istio, and its bootstrap no \"default\" certificate provider); the cluster is not served, so calls to it fail instead of going out in plaintext",
				"cluster", c.GetName())
			return false
		}
		sans := tls.GetSubjectAltNames()
		if len(sans) == 0 {
			sans = t.grpcSANs(svc, endpoints)
		}
		c.TransportSocket = grpcTLSSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: grpcCommonTLS(sans)})
		return true
	default: // SIMPLE, MUTUAL
		t.log.Error("proxyless gRPC cannot originate TLS with a DestinationRule's certificate files (grpc-go takes certificates only from its bootstrap); the cluster is not served, so calls to it fail instead of going out in plaintext: use ISTIO_MUTUAL for mesh workloads, or call this destination through a sidecar",
			"cluster", c.GetName(), "mode", mode.String())
		return false
	}
	if ae := t.w.Mesh.GetEnableAutoMtls(); (ae != nil && !ae.GetValue()) || !grpcHasIdentity(t.proxy) {
		return true
	}
	meshed := 0
	for _, in := range endpoints {
		if t.grpcTakesMTLS(in) {
			meshed++
		}
	}
	switch {
	case meshed == 0:
		return true
	case meshed < len(endpoints):
		t.log.Info("cluster mixes endpoints that take a proxyless client's mTLS with endpoints that do not (no mesh identity, or a sidecar whose port is not STRICT); grpc-go has one transport per cluster, so it uses plaintext: make them alike, or split them with DestinationRule subsets",
			"cluster", c.GetName(), "mtls", meshed, "endpoints", len(endpoints))
		return true
	}
	c.TransportSocket = grpcTLSSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: grpcCommonTLS(t.grpcSANs(svc, endpoints))})
	return true
}

// grpcTakesMTLS says whether an endpoint accepts a proxyless client's
// mTLS, which offers ALPN h2 only. A proxyless server with the identity
// does unless PeerAuthentication is DISABLE (grpcInboundChain). A sidecar
// terminates it only on a STRICT port: its PERMISSIVE chains take Istio's
// ALPN alone, as istiod's do (istiod's grpcgen leaves auto mTLS off for
// that reason), so plaintext is what such a port takes from grpc-go.
func (t *translation) grpcTakesMTLS(in *registry.Instance) bool {
	if in.Labels[TLSModeLabel] != TLSModeIstio {
		return false
	}
	mode := t.w.PeerAuthenticationMode(in.Namespace, in.Labels, in.Port)
	if in.Proxyless {
		return mode != security.PeerAuthentication_MutualTLS_DISABLE
	}
	return mode == security.PeerAuthentication_MutualTLS_STRICT
}

// grpcHasIdentity tells a proxyless client that has the mesh identity
// (certificate providers) from one that has none.
func grpcHasIdentity(p *Proxy) bool { return p.Labels[TLSModeLabel] == TLSModeIstio }

// grpcScopeKey separates proxyless clients with and without an identity
// in World.ScopeKey: their clusters differ.
func grpcScopeKey(p *Proxy) string {
	if p.Generator == GeneratorGRPC && grpcHasIdentity(p) {
		return "|identity"
	}
	return ""
}

// grpcSANs are the SPIFFE IDs the endpoints may present: each one's
// service account in the mesh trust domain, and a ServiceEntry's
// subjectAltNames. Empty when none is known, which accepts any identity
// the mesh CA vouches for, as Istio does.
func (t *translation) grpcSANs(svc *registry.Service, endpoints []*registry.Instance) []string {
	seen := map[string]bool{}
	for _, in := range endpoints {
		if in.ServiceAccount != "" && in.Namespace != "" {
			seen["spiffe://"+t.w.domain+"/ns/"+in.Namespace+"/sa/"+in.ServiceAccount] = true
		}
	}
	for _, o := range t.w.Snap.OfKind(config.ServiceEntry) {
		se, ok := o.Spec.(*networking.ServiceEntry)
		if !ok || o.Namespace != svc.Namespace {
			continue
		}
		for _, h := range se.GetHosts() {
			if h == svc.Hostname {
				for _, s := range se.GetSubjectAltNames() {
					seen[s] = true
				}
				break
			}
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// grpcCommonTLS is the workload identity from the bootstrap's "default"
// certificate provider, checking the peer against sans (none: any mesh
// identity; servers must send none, grpc-go refuses SAN matchers there).
func grpcCommonTLS(sans []string) *tlsv3.CommonTlsContext {
	var matchers []*matcherv3.StringMatcher
	for _, s := range sans {
		matchers = append(matchers, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}})
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: GRPCCertProviderInstance, CertificateName: GRPCIdentityCertName},
		//lint:ignore SA1019 grpc-go before 1.66 reads only the deprecated fields; istiod sends both.
		TlsCertificateCertificateProviderInstance: &tlsv3.CommonTlsContext_CertificateProviderInstance{InstanceName: GRPCCertProviderInstance, CertificateName: GRPCIdentityCertName},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: GRPCCertProviderInstance, CertificateName: GRPCRootCertName},
				//lint:ignore SA1019 grpc-go matches SANs only from match_subject_alt_names.
				MatchSubjectAltNames: matchers,
			},
			//lint:ignore SA1019 grpc-go before 1.66 reads only the deprecated fields; istiod sends both.
			ValidationContextCertificateProviderInstance: &tlsv3.CommonTlsContext_CertificateProviderInstance{InstanceName: GRPCCertProviderInstance, CertificateName: GRPCRootCertName},
		}},
	}
}

func grpcTLSSocket(ctx proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// grpcInbound serves the listeners xDS-enabled grpc-go servers of this
// workload ask for: one per port the workload serves, named for the
// proxy's IP and for the wildcard addresses (a server listening on ":port"
// asks for [::]:port, one on "0.0.0.0:port" for that).
func (t *translation) grpcInbound() {
	if t.proxy.IP == "" {
		return
	}
	seen := map[uint32]bool{}
	var ports []uint32
	for _, tg := range t.w.inbound[t.proxy.IP] {
		if !seen[tg.port] {
			seen[tg.port] = true
			ports = append(ports, tg.port)
		}
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	hosts := []string{t.proxy.IP}
	for _, h := range []string{"0.0.0.0", "::"} {
		if h != t.proxy.IP {
			hosts = append(hosts, h)
		}
	}
	for _, port := range ports {
		chain := t.grpcInboundChain(port)
		for _, h := range hosts {
			t.res.Listeners = append(t.res.Listeners, &listenerv3.Listener{
				Name:         GRPCServerListenerPrefix + net.JoinHostPort(h, strconv.FormatUint(uint64(port), 10)),
				Address:      socketAddress(h, port),
				FilterChains: []*listenerv3.FilterChain{chain},
			})
		}
	}
}

// grpcInboundChain is the server side of one port: grpc-go's HCM with an
// inline route that serves every call (non_forwarding_action), behind
// mutual TLS when PeerAuthentication (or the workload's tlsMode, see
// above) says so.
func (t *translation) grpcInboundChain(port uint32) *listenerv3.FilterChain {
	mode := t.w.PeerAuthenticationMode(t.proxy.Namespace, t.proxy.Labels, port)
	if mode == security.PeerAuthentication_MutualTLS_PERMISSIVE && t.proxy.Labels[TLSModeLabel] == TLSModeIstio {
		mode = security.PeerAuthentication_MutualTLS_STRICT
	}
	name := "inbound-plaintext"
	if mode == security.PeerAuthentication_MutualTLS_STRICT {
		name = "inbound-mtls"
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound|" + strconv.FormatUint(uint64(port), 10),
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
			}}}},
		}},
		HttpFilters: append(t.grpcAuthzFilters(), routerFilter()), // AuthorizationPolicy (grpcauthz.go)
	}
	fc := &listenerv3.FilterChain{
		Name:    name,
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}}},
	}
	if mode == security.PeerAuthentication_MutualTLS_STRICT {
		fc.TransportSocket = grpcTLSSocket(&tlsv3.DownstreamTlsContext{
			CommonTlsContext:         grpcCommonTLS(nil),
			RequireClientCertificate: wrapperspb.Bool(true),
		})
	}
	return fc
}

// PeerAuthenticationMode is the mutual TLS mode PeerAuthentication gives
// a workload (its namespace and labels) on a port it serves (the
// container port), as Istio composes it: the workload's policy (selector)
// over its namespace's over the mesh's (root namespace); a port's
// portLevelMtls over the workload policy's own mode (only policies with a
// selector have one); UNSET inherits from the level above; nothing set is
// PERMISSIVE. Where several policies sit at one level, the first by name
// applies (Istio takes the oldest; the analyzer warns about the clash).
// The result is STRICT, PERMISSIVE or DISABLE, never UNSET.
func (w *World) PeerAuthenticationMode(namespace string, labels map[string]string, port uint32) security.PeerAuthentication_MutualTLS_Mode {
	var mesh, ns, wl *security.PeerAuthentication
	root := w.RootNamespace()
	pas := w.Snap.OfKind(config.PeerAuthentication)
	objs := make([]*config.Object, 0, len(pas))
	objs = append(objs, pas...)
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	for _, o := range objs {
		pa, ok := o.Spec.(*security.PeerAuthentication)
		if !ok {
			continue
		}
		sel := pa.GetSelector().GetMatchLabels()
		switch {
		case len(sel) > 0:
			if o.Namespace == namespace && wl == nil && registry.Selects(sel, labels) {
				wl = pa
			}
		case o.Namespace == namespace && namespace != root:
			if ns == nil {
				ns = pa
			}
		case o.Namespace == root:
			if mesh == nil {
				mesh = pa
			}
		}
	}
	mode := security.PeerAuthentication_MutualTLS_PERMISSIVE
	for _, pa := range []*security.PeerAuthentication{mesh, ns, wl} {
		if m := pa.GetMtls().GetMode(); pa != nil && m != security.PeerAuthentication_MutualTLS_UNSET {
			mode = m
		}
	}
	if pl, ok := wl.GetPortLevelMtls()[port]; ok && pl.GetMode() != security.PeerAuthentication_MutualTLS_UNSET {
		mode = pl.GetMode()
	}
	return mode
}
