package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/trellismesh/trellis/api/split"
	"github.com/trellismesh/trellis/internal/config/field"
	"github.com/trellismesh/trellis/internal/config/validate"
	"github.com/trellismesh/trellis/internal/config/validate/kubeapi"
)

// Group names.
const (
	GroupNetworking = "networking.istio.io"
	GroupSecurity   = "security.istio.io"
	GroupTelemetry  = "telemetry.istio.io"
	GroupGateway    = "gateway.networking.k8s.io"
)

// The kinds Trellis reads.
var (
	Namespace      = GroupKind{"", "Namespace"}
	Service        = GroupKind{"", "Service"}
	ServiceAccount = GroupKind{"", "ServiceAccount"}
	ConfigMap      = GroupKind{"", "ConfigMap"}
	Pod            = GroupKind{"", "Pod"}
	Deployment     = GroupKind{"apps", "Deployment"}
	EndpointSlice  = GroupKind{"discovery.k8s.io", "EndpointSlice"}

	VirtualService  = GroupKind{GroupNetworking, "VirtualService"}
	DestinationRule = GroupKind{GroupNetworking, "DestinationRule"}
	ServiceEntry    = GroupKind{GroupNetworking, "ServiceEntry"}
	WorkloadEntry   = GroupKind{GroupNetworking, "WorkloadEntry"}
	Sidecar         = GroupKind{GroupNetworking, "Sidecar"}
	Gateway         = GroupKind{GroupNetworking, "Gateway"}

	PeerAuthentication    = GroupKind{GroupSecurity, "PeerAuthentication"}
	AuthorizationPolicy   = GroupKind{GroupSecurity, "AuthorizationPolicy"}
	RequestAuthentication = GroupKind{GroupSecurity, "RequestAuthentication"}

	Telemetry = GroupKind{GroupTelemetry, "Telemetry"}

	TrafficSplit = GroupKind{split.Group, "TrafficSplit"}

	HTTPRoute      = GroupKind{GroupGateway, "HTTPRoute"}
	GRPCRoute      = GroupKind{GroupGateway, "GRPCRoute"}
	GatewayAPIGate = GroupKind{GroupGateway, "Gateway"}
)

// kindInfo says how to read one kind.
type kindInfo struct {
	gk         GroupKind
	versions   []string
	namespaced bool
	// spec, for Istio kinds, is the spec message; documents are
	// {apiVersion, kind, metadata, spec, status}.
	spec proto.Message
	// goType, for other kinds, is the whole object's Go type.
	goType func(version string) reflect.Type
	// decode builds the typed value (only called once strict checks pass).
	decode func(version string, doc []byte, spec []byte) (any, error)
	// validate checks one object in isolation.
	validate func(m validate.Meta, v any) field.List
}

// unsupported kinds are recognised, warned about and skipped.
var unsupported = map[GroupKind]string{
	{GroupNetworking, "EnvoyFilter"}:      "Trellis proxies are not Envoy; EnvoyFilter patches cannot apply",
	{GroupNetworking, "WorkloadGroup"}:    "WorkloadGroup auto-registration is not supported; list WorkloadEntries instead",
	{GroupNetworking, "ProxyConfig"}:      "ProxyConfig is not supported; use MeshConfig.defaultConfig",
	{"extensions.istio.io", "WasmPlugin"}: "Trellis proxies do not run Wasm",
	{GroupGateway, "GatewayClass"}:        "GatewayClass is not needed by Trellis",
	{GroupGateway, "ReferenceGrant"}:      "ReferenceGrant is not enforced yet; cross-namespace references are allowed",
}

var (
	istioNetVersions = []string{"v1alpha3", "v1beta1", "v1"}
	istioSecVersions = []string{"v1beta1", "v1"}
)

var kinds = map[GroupKind]*kindInfo{}

func register(k *kindInfo) { kinds[k.gk] = k }

func init() {
	istio := func(gk GroupKind, versions []string, msg proto.Message, v func(validate.Meta, any) field.List) {
		register(&kindInfo{gk: gk, versions: versions, namespaced: true, spec: msg, validate: v,
			decode: func(_ string, _ []byte, spec []byte) (any, error) {
				m := msg.ProtoReflect().New().Interface()
				if len(spec) == 0 {
					return m, nil
				}
				u, ok := m.(json.Unmarshaler)
				if !ok {
					return nil, fmt.Errorf("internal: %T has no UnmarshalJSON", m)
				}
				return m, u.UnmarshalJSON(spec)
			}})
	}
	istio(VirtualService, istioNetVersions, &networking.VirtualService{}, typed(validate.VirtualService))
	istio(DestinationRule, istioNetVersions, &networking.DestinationRule{}, typed(validate.DestinationRule))
	istio(ServiceEntry, istioNetVersions, &networking.ServiceEntry{}, typed(validate.ServiceEntry))
	istio(WorkloadEntry, istioNetVersions, &networking.WorkloadEntry{}, typed(validate.WorkloadEntry))
	istio(Sidecar, istioNetVersions, &networking.Sidecar{}, typed(validate.Sidecar))
	istio(Gateway, istioNetVersions, &networking.Gateway{}, typed(validate.Gateway))
	istio(PeerAuthentication, istioSecVersions, &security.PeerAuthentication{}, typed(validate.PeerAuthentication))
	istio(AuthorizationPolicy, istioSecVersions, &security.AuthorizationPolicy{}, typed(validate.AuthorizationPolicy))
	istio(RequestAuthentication, istioSecVersions, &security.RequestAuthentication{}, typed(validate.RequestAuthentication))
	istio(Telemetry, []string{"v1alpha1", "v1"}, &telemetry.Telemetry{}, typed(validate.Telemetry))

	kube := func(gk GroupKind, versions []string, namespaced bool, t reflect.Type, v func(validate.Meta, any) field.List) {
		register(&kindInfo{gk: gk, versions: versions, namespaced: namespaced, validate: v,
			goType: func(string) reflect.Type { return t },
			decode: func(_ string, doc []byte, _ []byte) (any, error) {
				p := reflect.New(t)
				if err := json.Unmarshal(doc, p.Interface()); err != nil {
					return nil, err
				}
				return p.Interface(), nil
			}})
	}
	kube(Namespace, []string{"v1"}, false, reflect.TypeFor[corev1.Namespace](), typed(kubeapi.Namespace))
	kube(Service, []string{"v1"}, true, reflect.TypeFor[corev1.Service](), typed(kubeapi.Service))
	kube(ServiceAccount, []string{"v1"}, true, reflect.TypeFor[corev1.ServiceAccount](), typed(kubeapi.ServiceAccount))
	kube(ConfigMap, []string{"v1"}, true, reflect.TypeFor[corev1.ConfigMap](), typed(validateConfigMap))
	kube(Pod, []string{"v1"}, true, reflect.TypeFor[corev1.Pod](), typed(kubeapi.Pod))
	kube(Deployment, []string{"v1"}, true, reflect.TypeFor[appsv1.Deployment](), typed(kubeapi.Deployment))
	kube(EndpointSlice, []string{"v1"}, true, reflect.TypeFor[discoveryv1.EndpointSlice](), typed(kubeapi.EndpointSlice))
	// Gateway API v1beta1 types are aliases of v1, so both versions decode alike.
	kube(HTTPRoute, []string{"v1", "v1beta1"}, true, reflect.TypeFor[gatewayv1.HTTPRoute](), typed(kubeapi.HTTPRoute))
	kube(GRPCRoute, []string{"v1"}, true, reflect.TypeFor[gatewayv1.GRPCRoute](), typed(kubeapi.GRPCRoute))
	kube(GatewayAPIGate, []string{"v1", "v1beta1"}, true, reflect.TypeFor[gatewayv1.Gateway](), typed(kubeapi.GatewayAPIGateway))

	register(&kindInfo{gk: TrafficSplit, versions: split.Versions, namespaced: true,
		goType:   func(v string) reflect.Type { t, _ := split.WireType(v); return t },
		decode:   func(v string, doc []byte, _ []byte) (any, error) { return split.Decode(v, doc) },
		validate: typed(kubeapi.TrafficSplit)})
}

// typed adapts a kind-specific check to the table's untyped signature.
func typed[T any](f func(validate.Meta, *T) field.List) func(validate.Meta, any) field.List {
	return func(m validate.Meta, v any) field.List { return f(m, v.(*T)) }
}

// lookupKind finds a kind from apiVersion and kind as written.
func lookupKind(apiVersion, kind string) (info *kindInfo, version string, err error) {
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok {
		group, version = "", apiVersion
	}
	gk := GroupKind{group, kind}
	if why, ok := unsupported[gk]; ok {
		return nil, version, &unsupportedError{gk: gk, why: why}
	}
	info, ok = kinds[gk]
	if !ok {
		return nil, version, fmt.Errorf("unknown kind %q in apiVersion %q: Trellis reads Kubernetes core, Istio, SMI TrafficSplit and Gateway API kinds (see docs/config.md)", kind, apiVersion)
	}
	for _, v := range info.versions {
		if v == version {
			return info, version, nil
		}
	}
	served := make([]string, len(info.versions))
	for i, v := range info.versions {
		served[i] = apiVersionOf(group, v)
	}
	return nil, version, fmt.Errorf("apiVersion %q is not served for %s: use %s", apiVersion, kind, orList(served))
}

// apiVersionOf spells an apiVersion as users write it: core kinds have no
// group prefix ("v1", not "/v1").
func apiVersionOf(group, version string) string {
	if group == "" {
		return version
	}
	return group + "/" + version
}

// orList joins choices as prose: "a", "a or b", "a, b or c".
func orList(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

type unsupportedError struct {
	gk  GroupKind
	why string
}

func (e *unsupportedError) Error() string {
	return fmt.Sprintf("%s is not supported and is ignored: %s", e.gk.Kind, e.why)
}

// metaType is what every document's metadata is checked against.
var metaType = reflect.TypeFor[metav1.ObjectMeta]()
