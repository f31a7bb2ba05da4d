package translate

// Telemetry: Istio's Telemetry resource and MeshConfig's telemetry fields,
// resolved per proxy as istiod resolves them (pilot/pkg/model/telemetry.go)
// and written into every HTTP connection manager and TCP proxy the proxy
// serves: HCM tracing (envoy.tracers.opentelemetry), file access logs, and
// Istio's stats filter (istio.stats) carrying the metric overrides.
//
// Resolution: the root namespace's Telemetry without a selector is the
// mesh-wide one, then the proxy's namespace's without a selector, then the
// one in its namespace whose selector matches its labels; at each level the
// first by name, as the project resolves Sidecars (Istio takes the oldest,
// which a config snapshot does not know). Later levels override earlier
// ones field by field: a non-empty providers list replaces the one before,
// a set sampling percentage or disabled flag replaces the one before,
// custom tags merge by tag name, metric overrides apply in order. A
// Telemetry with targetRef(s) selects gateways or waypoints, never a
// sidecar, so it is skipped here as istiod does for sidecars.

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filelogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// Built-in provider names istiod's default MeshConfig defines: the
// Prometheus metrics provider and the file access log to /dev/stdout.
const (
	ProviderPrometheus = "prometheus"
	ProviderEnvoy      = "envoy"
	// StatsFilterName is the istio.stats filter's name, HTTP and network.
	StatsFilterName = "istio.stats"
	// StatsPluginType is the TypedStruct type_url of its config.
	StatsPluginType = "type.googleapis.com/stats.PluginConfig"
	// DefaultSamplingPercent is istiod's PILOT_TRACE_SAMPLING default.
	DefaultSamplingPercent = 1.0
	otelTracerName         = "envoy.tracers.opentelemetry"
	fileAccessLogName      = "envoy.access_loggers.file"
)

// direction of a chain: the client side reports as "source", the server
// side as "destination".
type direction int

const (
	client direction = iota
	server
)

// telemetryConfig is what one side of one proxy gets.
type telemetryConfig struct {
	tracing    *hcmv3.HttpConnectionManager_Tracing // nil: none
	accessLogs []*accesslogv3.AccessLog
	stats      *structpb.Struct // istio.stats config; nil: metrics off
	collector  *collector       // the tracing provider's cluster, to keep in CDS
}

type collector struct {
	svc  *registry.Service
	port registry.Port
}

// telemetryFor finds the Telemetry objects that apply to p, mesh first.
func (w *World) telemetryFor(p *Proxy) []*config.Object {
	var root, ns, sel *config.Object
	first := func(cur, o *config.Object) *config.Object {
		if cur == nil || o.Name < cur.Name {
			return o
		}
		return cur
	}
	rootNS := w.RootNamespace()
	for _, o := range w.Snap.OfKind(config.Telemetry) {
		t, ok := o.Spec.(*telemetry.Telemetry)
		if !ok || t.GetTargetRef() != nil || len(t.GetTargetRefs()) > 0 {
			continue
		}
		hasSelector := len(t.GetSelector().GetMatchLabels()) > 0
		switch {
		case o.Namespace == p.Namespace && hasSelector:
			if registry.Selects(t.GetSelector().GetMatchLabels(), p.Labels) {
				sel = first(sel, o)
			}
		case o.Namespace == p.Namespace && o.Namespace != rootNS:
			ns = first(ns, o)
		case o.Namespace == rootNS && !hasSelector:
			root = first(root, o)
		}
	}
	var out []*config.Object
	for _, o := range []*config.Object{root, ns, sel} {
		if o != nil {
			out = append(out, o)
		}
	}
	return out
}

// telemetryScopeKey separates proxies whose Shared resources differ by
// telemetry: by the workload Telemetry that selects them and, when spans
// are reported, by the service name spans carry.
func (w *World) telemetryScopeKey(p *Proxy) string {
	objs := w.telemetryFor(p)
	key := ""
	for _, o := range objs {
		key += "|tel=" + o.Namespace + "/" + o.Name
	}
	if w.telemetry(p, objs, client, nil).tracing != nil {
		key += "|svc=" + tracingServiceName(p)
	}
	return key
}

// tracingServiceName is the service name istiod gives a sidecar's spans:
// its canonical service and namespace.
func tracingServiceName(p *Proxy) string {
	return CanonicalService(p.Labels, workloadName(p)) + "." + p.Namespace
}

// workloadName is the proxy's workload as far as the node tells: the pod
// name, less a ReplicaSet's hash suffixes when the labels carry one.
func workloadName(p *Proxy) string {
	name := p.Pod
	if h := p.Labels["pod-template-hash"]; h != "" {
		if i := strings.Index(name, "-"+h+"-"); i > 0 {
			return name[:i]
		}
	}
	return name
}

// telemetry resolves what one side of proxy p gets.
func (w *World) telemetry(p *Proxy, objs []*config.Object, dir direction, log *slog.Logger) telemetryConfig {
	var tc telemetryConfig
	var specs []*telemetry.Telemetry
	for _, o := range objs {
		specs = append(specs, o.Spec.(*telemetry.Telemetry))
	}
	tc.tracing, tc.collector = w.tracing(p, specs, dir, log)
	tc.accessLogs = w.accessLogs(specs, dir, log)
	tc.stats = w.statsConfig(specs, dir, log)
	return tc
}

func modeApplies(mode telemetry.WorkloadMode, dir direction) bool {
	switch mode {
	case telemetry.WorkloadMode_CLIENT:
		return dir == client
	case telemetry.WorkloadMode_SERVER:
		return dir == server
	}
	return true
}

func providerNames(refs []*telemetry.ProviderRef) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.GetName())
	}
	return out
}

// extensionProvider finds a provider by name, with istiod's built-ins.
func extensionProvider(mesh *meshv1alpha1.MeshConfig, name string) *meshv1alpha1.MeshConfig_ExtensionProvider {
	for _, p := range mesh.GetExtensionProviders() {
		if p.GetName() == name {
			return p
		}
	}
	switch name {
	case ProviderPrometheus:
		return &meshv1alpha1.MeshConfig_ExtensionProvider{Name: name, Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_Prometheus{Prometheus: &meshv1alpha1.MeshConfig_ExtensionProvider_PrometheusMetricsProvider{}}}
	case ProviderEnvoy:
		return &meshv1alpha1.MeshConfig_ExtensionProvider{Name: name, Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyFileAccessLog{EnvoyFileAccessLog: &meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider{Path: "/dev/stdout"}}}
	}
	return nil
}

// tracing merges the Telemetry tracing entries for one side. No tracing
// provider anywhere (Telemetry or defaultProviders.tracing) means no
// tracing block, as istiod leaves the HCM without one.
func (w *World) tracing(p *Proxy, specs []*telemetry.Telemetry, dir direction, log *slog.Logger) (*hcmv3.HttpConnectionManager_Tracing, *collector) {
	mesh := w.Mesh
	providers := mesh.GetDefaultProviders().GetTracing()
	sampling := DefaultSamplingPercent
	if s := mesh.GetDefaultConfig().GetTracing().GetSampling(); s > 0 {
		sampling = s
	}
	disabled := false
	tags := map[string]*telemetry.Tracing_CustomTag{}
	for k, v := range mesh.GetDefaultConfig().GetTracing().GetCustomTags() {
		if ct := meshCustomTag(v); ct != nil {
			tags[k] = ct
		}
	}
	for _, s := range specs {
		for _, tr := range s.GetTracing() {
			if tr == nil || !modeApplies(tr.GetMatch().GetMode(), dir) {
				continue
			}
			if names := providerNames(tr.GetProviders()); len(names) > 0 {
				providers = names
			}
			if v := tr.GetRandomSamplingPercentage(); v != nil {
				sampling = v.GetValue()
			}
			if v := tr.GetDisableSpanReporting(); v != nil {
				disabled = v.GetValue()
			}
			for k, v := range tr.GetCustomTags() {
				tags[k] = v
			}
		}
	}
	if len(providers) == 0 {
		return nil, nil
	}
	out := &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling: &typev3.Percent{Value: min(max(sampling, 0), 100)},
	}
	for _, k := range sortedKeys(tags) {
		if ct := envoyCustomTag(k, tags[k]); ct != nil {
			out.CustomTags = append(out.CustomTags, ct)
		}
	}
	if n := mesh.GetDefaultConfig().GetTracing().GetMaxPathTagLength(); n > 0 {
		out.MaxPathTagLength = wrapperspb.UInt32(n)
	}
	if disabled {
		return out, nil
	}
	// istiod configures one tracer per HCM: the first provider.
	ep := extensionProvider(mesh, providers[0])
	otel := ep.GetOpentelemetry()
	if otel == nil {
		w.warnOnce(log, "telemetry-provider|"+providers[0], "tracing provider is not an opentelemetry extensionProvider in MeshConfig; spans are not reported", "provider", providers[0])
		return out, nil
	}
	svc, port, ok := w.collectorService(otel.GetService(), otel.GetPort(), p.Namespace)
	if !ok {
		w.warnOnce(log, "telemetry-collector|"+providers[0], "tracing provider's service is not a service in the mesh; spans are not reported", "provider", providers[0], "service", otel.GetService())
		return out, nil
	}
	if n := otel.GetMaxTagLength(); n > 0 {
		out.MaxPathTagLength = wrapperspb.UInt32(n)
	}
	cluster := ClusterName("outbound", port.Port, "", svc.Hostname)
	cfg := &tracev3.OpenTelemetryConfig{ServiceName: tracingServiceName(p)}
	if h := otel.GetHttp(); h != nil {
		path := cmp.Or(h.GetPath(), "/v1/traces")
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		hs := &corev3.HttpService{HttpUri: &corev3.HttpUri{
			Uri:              fmt.Sprintf("http://%s:%d%s", svc.Hostname, port.Port, path),
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster},
			Timeout:          cmp.Or(h.GetTimeout(), durationpb.New(0)),
		}}
		for _, hd := range h.GetHeaders() {
			hs.RequestHeadersToAdd = append(hs.RequestHeadersToAdd, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: hd.GetName(), Value: hd.GetValue()}})
		}
		cfg.HttpService = hs
	} else {
		gs := &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster, Authority: svc.Hostname}},
			Timeout:         otel.GetGrpc().GetTimeout(),
		}
		for _, hd := range otel.GetGrpc().GetInitialMetadata() {
			gs.InitialMetadata = append(gs.InitialMetadata, &corev3.HeaderValue{Key: hd.GetName(), Value: hd.GetValue()})
		}
		cfg.GrpcService = gs
	}
	out.Provider = &tracev3.Tracing_Http{Name: otelTracerName, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(cfg)}}
	return out, &collector{svc: svc, port: port}
}

// collectorService finds a provider's service ("host" or "ns/host", as
// Istio writes it) and port in the registry.
func (w *World) collectorService(service string, port uint32, ns string) (*registry.Service, registry.Port, bool) {
	host := service
	if n, h, ok := strings.Cut(service, "/"); ok {
		ns, host = n, h
	}
	svc := w.Reg.Lookup(host, ns)
	if svc == nil {
		return nil, registry.Port{}, false
	}
	for _, p := range svc.Ports {
		if p.Port == port {
			return svc, p, true
		}
	}
	return nil, registry.Port{}, false
}

func meshCustomTag(v *meshv1alpha1.Tracing_CustomTag) *telemetry.Tracing_CustomTag {
	switch {
	case v.GetLiteral() != nil:
		return &telemetry.Tracing_CustomTag{Type: &telemetry.Tracing_CustomTag_Literal{Literal: &telemetry.Tracing_Literal{Value: v.GetLiteral().GetValue()}}}
	case v.GetHeader() != nil:
		return &telemetry.Tracing_CustomTag{Type: &telemetry.Tracing_CustomTag_Header{Header: &telemetry.Tracing_RequestHeader{Name: v.GetHeader().GetName(), DefaultValue: v.GetHeader().GetDefaultValue()}}}
	case v.GetEnvironment() != nil:
		return &telemetry.Tracing_CustomTag{Type: &telemetry.Tracing_CustomTag_Environment{Environment: &telemetry.Tracing_Environment{Name: v.GetEnvironment().GetName(), DefaultValue: v.GetEnvironment().GetDefaultValue()}}}
	}
	return nil
}

// envoyCustomTag writes a Telemetry custom tag; a formatter tag (Envoy
// command operators) is not in force and left out.
func envoyCustomTag(name string, v *telemetry.Tracing_CustomTag) *tracingv3.CustomTag {
	ct := &tracingv3.CustomTag{Tag: name}
	switch {
	case v.GetLiteral() != nil:
		ct.Type = &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: v.GetLiteral().GetValue()}}
	case v.GetHeader() != nil:
		ct.Type = &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{Name: v.GetHeader().GetName(), DefaultValue: v.GetHeader().GetDefaultValue()}}
	case v.GetEnvironment() != nil:
		ct.Type = &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{Name: v.GetEnvironment().GetName(), DefaultValue: v.GetEnvironment().GetDefaultValue()}}
	default:
		return nil
	}
	return ct
}

// accessLogs merges the Telemetry access logging entries for one side.
// Without any, MeshConfig decides: defaultProviders.accessLogging, else
// accessLogFile (with accessLogEncoding and accessLogFormat) when set.
func (w *World) accessLogs(specs []*telemetry.Telemetry, dir direction, log *slog.Logger) []*accesslogv3.AccessLog {
	mesh := w.Mesh
	providers := mesh.GetDefaultProviders().GetAccessLogging()
	configured := false
	disabled := false
	for _, s := range specs {
		for _, al := range s.GetAccessLogging() {
			if al == nil || !modeApplies(al.GetMatch().GetMode(), dir) {
				continue
			}
			configured = true
			if names := providerNames(al.GetProviders()); len(names) > 0 {
				providers = names
			}
			if v := al.GetDisabled(); v != nil {
				disabled = v.GetValue()
			}
		}
	}
	if disabled {
		return nil
	}
	if len(providers) == 0 {
		if mesh.GetAccessLogFile() == "" {
			if !configured {
				return nil
			}
			// A Telemetry turns access logging on with no provider
			// named anywhere: istiod falls back to its envoy provider.
			providers = []string{ProviderEnvoy}
		} else {
			return []*accesslogv3.AccessLog{fileAccessLog(mesh.GetAccessLogFile(), mesh.GetAccessLogEncoding() == meshv1alpha1.MeshConfig_JSON, mesh.GetAccessLogFormat(), nil)}
		}
	}
	var out []*accesslogv3.AccessLog
	for _, name := range providers {
		fl := extensionProvider(mesh, name).GetEnvoyFileAccessLog()
		if fl == nil {
			w.warnOnce(log, "telemetry-accesslog|"+name, "access logging provider is not an envoyFileAccessLog extensionProvider in MeshConfig; ignored", "provider", name)
			continue
		}
		lf := fl.GetLogFormat()
		out = append(out, fileAccessLog(cmp.Or(fl.GetPath(), "/dev/stdout"), lf.GetLabels() != nil, lf.GetText(), lf.GetLabels()))
	}
	return out
}

func fileAccessLog(path string, json bool, text string, labels *structpb.Struct) *accesslogv3.AccessLog {
	fl := &filelogv3.FileAccessLog{Path: path}
	switch {
	case json:
		if labels == nil {
			labels = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		}
		fl.AccessLogFormat = &filelogv3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: labels}}}
	case text != "":
		fl.AccessLogFormat = &filelogv3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: text}}}}}
	}
	return &accesslogv3.AccessLog{Name: fileAccessLogName, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(fl)}}
}

// istioMetricNames maps Telemetry's metric enum to the names Istio's
// stats plugin config uses (without the istio_ prefix).
var istioMetricNames = map[telemetry.MetricSelector_IstioMetric]string{
	telemetry.MetricSelector_REQUEST_COUNT:          "requests_total",
	telemetry.MetricSelector_REQUEST_DURATION:       "request_duration_milliseconds",
	telemetry.MetricSelector_REQUEST_SIZE:           "request_bytes",
	telemetry.MetricSelector_RESPONSE_SIZE:          "response_bytes",
	telemetry.MetricSelector_TCP_OPENED_CONNECTIONS: "tcp_connections_opened_total",
	telemetry.MetricSelector_TCP_CLOSED_CONNECTIONS: "tcp_connections_closed_total",
	telemetry.MetricSelector_TCP_SENT_BYTES:         "tcp_sent_bytes_total",
	telemetry.MetricSelector_TCP_RECEIVED_BYTES:     "tcp_received_bytes_total",
	telemetry.MetricSelector_GRPC_REQUEST_MESSAGES:  "request_messages_total",
	telemetry.MetricSelector_GRPC_RESPONSE_MESSAGES: "response_messages_total",
}

// statsConfig merges the Telemetry metrics entries for one side into
// istio.stats' PluginConfig, or nil when no Prometheus provider is in
// effect (Istio's metrics off). Overrides apply in order, mesh first; a
// later disabled flag for a metric replaces an earlier one, removed tags
// add up. UPSERT (a CEL expression) is not in force and not written.
func (w *World) statsConfig(specs []*telemetry.Telemetry, dir direction, log *slog.Logger) *structpb.Struct {
	mesh := w.Mesh
	providers := mesh.GetDefaultProviders().GetMetrics()
	if len(providers) == 0 {
		providers = []string{ProviderPrometheus}
	}
	type metricState struct {
		drop    bool
		removed []string
	}
	state := map[string]*metricState{}
	var order []string
	get := func(name string) *metricState {
		if s, ok := state[name]; ok {
			return s
		}
		s := &metricState{}
		state[name] = s
		order = append(order, name)
		return s
	}
	for _, s := range specs {
		for _, m := range s.GetMetrics() {
			if m == nil {
				continue
			}
			if names := providerNames(m.GetProviders()); len(names) > 0 {
				providers = names
			}
			for _, o := range m.GetOverrides() {
				if o == nil || !modeApplies(o.GetMatch().GetMode(), dir) {
					continue
				}
				var names []string
				switch {
				case o.GetMatch().GetCustomMetric() != "":
					names = []string{strings.TrimPrefix(o.GetMatch().GetCustomMetric(), "istio_")}
				case o.GetMatch().GetMetric() == telemetry.MetricSelector_ALL_METRICS:
					names = slices.Sorted(mapValues(istioMetricNames))
				default:
					names = []string{istioMetricNames[o.GetMatch().GetMetric()]}
				}
				for _, n := range names {
					st := get(n)
					if v := o.GetDisabled(); v != nil {
						st.drop = v.GetValue()
					}
					for _, tag := range sortedKeys(o.GetTagOverrides()) {
						if o.GetTagOverrides()[tag].GetOperation() == telemetry.MetricsOverrides_TagOverride_REMOVE && !slices.Contains(st.removed, tag) {
							st.removed = append(st.removed, tag)
						}
					}
				}
			}
		}
	}
	prom := false
	for _, name := range providers {
		switch ep := extensionProvider(mesh, name); {
		case ep == nil:
			w.warnOnce(log, "telemetry-metrics|"+name, "metrics provider is not defined in MeshConfig extensionProviders; ignored", "provider", name)
		case ep.GetPrometheus() != nil:
			prom = true
		}
	}
	if !prom {
		return nil
	}
	var metrics []any
	sort.Strings(order)
	for _, n := range order {
		st := state[n]
		if !st.drop && len(st.removed) == 0 {
			continue
		}
		e := map[string]any{"name": n}
		if st.drop {
			e["drop"] = true
		}
		if len(st.removed) > 0 {
			var tags []any
			for _, t := range st.removed {
				tags = append(tags, t)
			}
			e["tags_to_remove"] = tags
		}
		metrics = append(metrics, e)
	}
	// The reporter (source or destination) follows from the listener's
	// direction, as Istio's plugin derives it; the config has no field for
	// a sidecar's.
	fields := map[string]any{}
	if len(metrics) > 0 {
		fields["metrics"] = metrics
	}
	st, err := structpb.NewStruct(fields)
	if err != nil {
		panic(fmt.Sprintf("translate: stats config: %v", err))
	}
	return st
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

func statsTypedStruct(st *structpb.Struct) *xdstypev3.TypedStruct {
	return &xdstypev3.TypedStruct{TypeUrl: StatsPluginType, Value: st}
}

// applyTelemetry writes the proxy's telemetry into every HTTP connection
// manager and TCP proxy among the translated listeners: the server side's
// on inbound listeners, the client side's on the rest.
//
// shared is set for the Shared translation, which also keeps the tracing
// collector's cluster (Local's clusters are the inbound ones).
func (t *translation) applyTelemetry(shared bool) {
	if t.proxy.Generator == GeneratorGRPC {
		return // proxyless gRPC has no Istio telemetry filters
	}
	objs := t.w.telemetryFor(t.proxy)
	sides := map[direction]telemetryConfig{}
	side := func(d direction) telemetryConfig {
		tc, ok := sides[d]
		if !ok {
			tc = t.w.telemetry(t.proxy, objs, d, t.log)
			sides[d] = tc
		}
		return tc
	}
	for i, l := range t.res.Listeners {
		d := client
		if l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND {
			d = server
		}
		tc := side(d)
		var changed *listenerv3.Listener
		for ci, fc := range l.GetFilterChains() {
			for fi, f := range fc.GetFilters() {
				a := f.GetTypedConfig()
				if a == nil {
					continue
				}
				var nf []*listenerv3.Filter
				switch a.GetTypeUrl() {
				case "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
					hcm := &hcmv3.HttpConnectionManager{}
					if a.UnmarshalTo(hcm) != nil {
						continue
					}
					withHCMTelemetry(hcm, tc)
					nf = []*listenerv3.Filter{{Name: f.GetName(), ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}}}
				case "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":
					tp := &tcpproxyv3.TcpProxy{}
					if a.UnmarshalTo(tp) != nil {
						continue
					}
					tp.AccessLog = append(tp.AccessLog, tc.accessLogs...)
					nf = []*listenerv3.Filter{{Name: f.GetName(), ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}}
					if tc.stats != nil {
						nf = append([]*listenerv3.Filter{{Name: StatsFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(statsTypedStruct(tc.stats))}}}, nf...)
					}
				default:
					continue
				}
				if changed == nil {
					changed = proto.Clone(l).(*listenerv3.Listener)
				}
				cfc := changed.FilterChains[ci]
				// The filter's index shifts by the stats filters added
				// ahead of it in this chain.
				idx := fi + len(cfc.Filters) - len(fc.GetFilters())
				cfc.Filters = append(append(slices.Clone(cfc.Filters[:idx]), nf...), cfc.Filters[idx+1:]...)
			}
		}
		if changed != nil {
			t.res.Listeners[i] = changed
		}
	}
	if shared {
		t.keepCollector(side(client).collector)
		t.keepCollector(side(server).collector)
	}
}

func withHCMTelemetry(hcm *hcmv3.HttpConnectionManager, tc telemetryConfig) {
	if tc.tracing != nil {
		hcm.Tracing = proto.Clone(tc.tracing).(*hcmv3.HttpConnectionManager_Tracing)
	}
	hcm.AccessLog = append(hcm.AccessLog, tc.accessLogs...)
	if tc.stats != nil && len(hcm.HttpFilters) > 0 {
		// Istio's stats filter sits right ahead of the router.
		last := len(hcm.HttpFilters) - 1
		sf := &hcmv3.HttpFilter{Name: StatsFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(statsTypedStruct(tc.stats))}}
		hcm.HttpFilters = append(append(slices.Clone(hcm.HttpFilters[:last]), sf), hcm.HttpFilters[last])
	}
}

// keepCollector puts the tracing collector's cluster in the proxy's CDS
// when its Sidecar egress left it out, as istiod adds it: spans must reach
// the collector whatever the app may call.
func (t *translation) keepCollector(c *collector) {
	if c == nil {
		return
	}
	name := ClusterName("outbound", c.port.Port, "", c.svc.Hostname)
	for _, cl := range t.res.Clusters {
		if cl.GetName() == name {
			return
		}
	}
	t.addClusters(c.svc, c.port)
}

// warnOnce logs a telemetry config problem once per World: every proxy's
// translation meets it. A nil log (scope keys) reports nothing.
func (w *World) warnOnce(log *slog.Logger, key, msg string, args ...any) {
	if log == nil {
		return
	}
	if _, seen := w.reported.LoadOrStore(key, true); !seen {
		log.Warn(msg, args...)
	}
}

// sortedKeys returns a map's keys in order, so output does not depend on
// map iteration.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}
