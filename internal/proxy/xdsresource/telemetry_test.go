package xdsresource_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filelogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// The oracle for telemetry (see wantListener): the same mapping as the
// decoder, written against go-control-plane's types.

func wantHCMTelemetry(t *testing.T, x *hcmv3.HttpConnectionManager, h *xdsresource.HTTPConnectionManager) {
	t.Helper()
	h.AccessLogs = wantAccessLogs(t, x.AccessLog)
	for _, f := range x.HttpFilters {
		if ts := new(xdstypev3.TypedStruct); f.GetTypedConfig().MessageIs(ts) {
			if err := f.GetTypedConfig().UnmarshalTo(ts); err != nil {
				t.Fatal(err)
			}
			h.Stats = wantStats(t, ts)
		}
	}
	tr := x.GetTracing()
	if tr == nil {
		return
	}
	out := &xdsresource.Tracing{SamplingPercent: 100, MaxPathTagLength: 256, SpawnUpstreamSpan: tr.GetSpawnUpstreamSpan().GetValue()}
	if tr.RandomSampling != nil {
		out.SamplingPercent = tr.RandomSampling.Value
	}
	if n := tr.GetMaxPathTagLength().GetValue(); n > 0 {
		out.MaxPathTagLength = int(n)
	}
	for _, ct := range tr.CustomTags {
		c := xdsresource.CustomTag{Tag: ct.Tag, Literal: ct.GetLiteral().GetValue(), Header: ct.GetRequestHeader().GetName(), Env: ct.GetEnvironment().GetName()}
		c.Default = ct.GetRequestHeader().GetDefaultValue() + ct.GetEnvironment().GetDefaultValue()
		out.CustomTags = append(out.CustomTags, c)
	}
	if tr.Provider != nil {
		cfg := &tracev3.OpenTelemetryConfig{}
		if err := tr.Provider.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			t.Fatal(err)
		}
		out.ServiceName = cfg.ServiceName
		if g := cfg.GetGrpcService(); g != nil {
			out.Provider = xdsresource.TracingProvider{Cluster: g.GetEnvoyGrpc().GetClusterName(), Authority: g.GetEnvoyGrpc().GetAuthority(), Timeout: g.GetTimeout().AsDuration()}
		}
		if hs := cfg.GetHttpService(); hs != nil {
			rest := strings.TrimPrefix(hs.GetHttpUri().GetUri(), "http://")
			host, path, _ := strings.Cut(rest, "/")
			out.Provider = xdsresource.TracingProvider{Cluster: hs.GetHttpUri().GetCluster(), Authority: host, HTTPPath: "/" + path, Timeout: hs.GetHttpUri().GetTimeout().AsDuration()}
		}
	}
	h.Tracing = out
}

func wantAccessLogs(t *testing.T, als []*accesslogv3.AccessLog) []xdsresource.AccessLog {
	t.Helper()
	var out []xdsresource.AccessLog
	for _, al := range als {
		fl := &filelogv3.FileAccessLog{}
		if err := al.GetTypedConfig().UnmarshalTo(fl); err != nil {
			t.Fatal(err)
		}
		out = append(out, xdsresource.AccessLog{Path: fl.Path, JSON: fl.GetLogFormat().GetJsonFormat() != nil,
			Format: fl.GetLogFormat().GetTextFormatSource().GetInlineString()})
	}
	return out
}

func wantStats(t *testing.T, ts *xdstypev3.TypedStruct) *xdsresource.Stats {
	t.Helper()
	if ts.TypeUrl != translate.StatsPluginType {
		t.Fatalf("TypedStruct type_url %q", ts.TypeUrl)
	}
	s := &xdsresource.Stats{}
	for _, m := range ts.GetValue().GetFields()["metrics"].GetListValue().GetValues() {
		f := m.GetStructValue().GetFields()
		name := "istio_" + f["name"].GetStringValue()
		if f["drop"].GetBoolValue() {
			s.Disabled = append(s.Disabled, name)
		}
		for _, tag := range f["tags_to_remove"].GetListValue().GetValues() {
			if s.TagsRemoved == nil {
				s.TagsRemoved = map[string][]string{}
			}
			s.TagsRemoved[name] = append(s.TagsRemoved[name], tag.GetStringValue())
		}
	}
	return s
}

const telemetryMesh = `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultProviders:
      tracing: [otel]
    extensionProviders:
    - name: otel
      opentelemetry: {service: otel-collector.istio-system.svc.cluster.local, port: 4317, maxTagLength: 99, grpc: {timeout: 2s}}
    - name: otel-http
      opentelemetry: {service: istio-system/otel-collector.istio-system.svc.cluster.local, port: 4318, http: {path: /v1/traces, timeout: 3s}}
    - name: json-log
      envoyFileAccessLog: {path: /dev/stdout, logFormat: {labels: {code: "%RESPONSE_CODE%"}}}
    - name: text-log
      envoyFileAccessLog: {path: /tmp/access.log, logFormat: {text: "%REQ(:METHOD)% %RESPONSE_CODE%\n"}}
`

const otelCollector = `
apiVersion: v1
kind: Service
metadata: {name: otel-collector, namespace: istio-system}
spec:
  clusterIP: 10.96.0.99
  selector: {app: otel}
  ports: [{name: grpc-otlp, port: 4317}, {name: http-otlp, port: 4318}]
`

const meshTelemetry = `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - randomSamplingPercentage: 10
    customTags:
      cluster: {literal: {value: east}}
      user: {header: {name: x-user, defaultValue: anon}}
`

const nsTelemetry = `
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {name: ns, namespace: default}
spec:
  accessLogging:
  - providers: [{name: json-log}]
`

const workloadTelemetry = `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  tracing:
  - providers: [{name: otel-http}]
    randomSamplingPercentage: 50
    customTags:
      pod: {environment: {name: POD_NAME, defaultValue: unknown}}
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
    - match: {metric: ALL_METRICS}
      tagOverrides: {response_flags: {operation: REMOVE}}
`

// decodedChains decodes every listener of res and returns its filter
// chains by listener name; a NACK fails the test.
func decodedChains(t *testing.T, res *translate.Resources) map[string][]xdsresource.FilterChain {
	t.Helper()
	out := map[string][]xdsresource.FilterChain{}
	for _, l := range res.Listeners {
		b, err := proto.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		dl, err := xdsresource.DecodeListener(b)
		if err != nil {
			t.Fatalf("listener %s: %v", l.Name, err)
		}
		out[l.Name] = dl.FilterChains
	}
	return out
}

// httpChain is the (first) HTTP chain of a listener.
func httpChain(t *testing.T, chains map[string][]xdsresource.FilterChain, listener string) *xdsresource.HTTPConnectionManager {
	t.Helper()
	for _, fc := range chains[listener] {
		if fc.HTTP != nil {
			return fc.HTTP
		}
	}
	t.Fatalf("listener %s has no HTTP chain", listener)
	return nil
}

func tcpChain(t *testing.T, chains map[string][]xdsresource.FilterChain, listener string) *xdsresource.TCPProxy {
	t.Helper()
	for _, fc := range chains[listener] {
		if fc.TCP != nil {
			return fc.TCP
		}
	}
	t.Fatalf("listener %s has no TCP chain", listener)
	return nil
}

// inboundHTTP is virtualInbound's chain for port 9080.
func inboundHTTP(t *testing.T, chains map[string][]xdsresource.FilterChain) *xdsresource.HTTPConnectionManager {
	t.Helper()
	for _, fc := range chains["virtualInbound"] {
		if fc.DestinationPort == 9080 && fc.HTTP != nil {
			return fc.HTTP
		}
	}
	t.Fatal("virtualInbound has no HTTP chain for 9080")
	return nil
}

// No Telemetry and no MeshConfig telemetry: Istio's metrics on both sides
// (an empty istio.stats config), no tracing, no access log.
func TestTelemetryDefaults(t *testing.T) {
	chains := decodedChains(t, translate.ForProxy(world(t), sidecarProxy, nil))
	for name, h := range map[string]*xdsresource.HTTPConnectionManager{"outbound": httpChain(t, chains, "0.0.0.0_9080"), "inbound": inboundHTTP(t, chains)} {
		if h.Tracing != nil || h.AccessLogs != nil {
			t.Errorf("%s: tracing %+v, access logs %+v; want none", name, h.Tracing, h.AccessLogs)
		}
		if d := cmp.Diff(&xdsresource.Stats{}, h.Stats); d != "" {
			t.Errorf("%s stats (-want +got):\n%s", name, d)
		}
	}
	if tp := tcpChain(t, chains, "10.96.0.20_5432"); tp.Stats == nil || tp.AccessLogs != nil {
		t.Errorf("tcp proxy: stats %+v, access logs %+v; want stats on, no access log", tp.Stats, tp.AccessLogs)
	}
}

// MeshConfig accessLogFile alone turns on the file access log in Istio's
// text format, or JSON with accessLogEncoding JSON.
func TestTelemetryAccessLogFile(t *testing.T) {
	w := world(t, `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: /dev/stdout
    accessLogEncoding: JSON
`)
	chains := decodedChains(t, translate.ForProxy(w, sidecarProxy, nil))
	want := []xdsresource.AccessLog{{Path: "/dev/stdout", JSON: true}}
	for name, got := range map[string][]xdsresource.AccessLog{
		"outbound": httpChain(t, chains, "0.0.0.0_9080").AccessLogs,
		"inbound":  inboundHTTP(t, chains).AccessLogs,
		"tcp":      tcpChain(t, chains, "10.96.0.20_5432").AccessLogs,
	} {
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s access logs (-want +got):\n%s", name, d)
		}
	}
}

// Mesh-wide, namespace and workload Telemetry: the workload level
// overrides the provider and sampling, custom tags merge, the namespace's
// access logging applies, metric overrides split by mode.
func TestTelemetryScopes(t *testing.T) {
	w := world(t, telemetryMesh, otelCollector, meshTelemetry, nsTelemetry, workloadTelemetry)
	res := translate.ForProxy(w, sidecarProxy, nil)
	chains := decodedChains(t, res)

	out := httpChain(t, chains, "0.0.0.0_9080")
	wantTracing := &xdsresource.Tracing{
		SamplingPercent: 50,
		Provider: xdsresource.TracingProvider{Cluster: "outbound|4318||otel-collector.istio-system.svc.cluster.local",
			Authority: "otel-collector.istio-system.svc.cluster.local:4318", HTTPPath: "/v1/traces", Timeout: 3 * time.Second},
		ServiceName: "reviews.default",
		CustomTags: []xdsresource.CustomTag{
			{Tag: "cluster", Literal: "east"},
			{Tag: "pod", Env: "POD_NAME", Default: "unknown"},
			{Tag: "user", Header: "x-user", Default: "anon"},
		},
		MaxPathTagLength: 256,
	}
	if d := cmp.Diff(wantTracing, out.Tracing); d != "" {
		t.Errorf("outbound tracing (-want +got):\n%s", d)
	}
	in := inboundHTTP(t, chains)
	if d := cmp.Diff(wantTracing, in.Tracing); d != "" {
		t.Errorf("inbound tracing (-want +got):\n%s", d)
	}
	wantLogs := []xdsresource.AccessLog{{Path: "/dev/stdout", JSON: true}}
	if d := cmp.Diff(wantLogs, out.AccessLogs); d != "" {
		t.Errorf("outbound access logs (-want +got):\n%s", d)
	}
	removed := map[string][]string{}
	for _, m := range []string{"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes",
		"istio_response_bytes", "istio_request_messages_total", "istio_response_messages_total",
		"istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
		"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"} {
		removed[m] = []string{"response_flags"}
	}
	if d := cmp.Diff(&xdsresource.Stats{Disabled: []string{"istio_requests_total"}, TagsRemoved: removed}, out.Stats); d != "" {
		t.Errorf("client stats (-want +got):\n%s", d)
	}
	// REQUEST_COUNT was disabled for the CLIENT only.
	if d := cmp.Diff(&xdsresource.Stats{TagsRemoved: removed}, in.Stats); d != "" {
		t.Errorf("server stats (-want +got):\n%s", d)
	}
	if tp := tcpChain(t, chains, "10.96.0.20_5432"); tp.Stats == nil || len(tp.Stats.Disabled) != 1 || tp.AccessLogs == nil {
		t.Errorf("tcp proxy: stats %+v, access logs %+v", tp.Stats, tp.AccessLogs)
	}
	found := false
	for _, c := range res.Clusters {
		found = found || c.Name == "outbound|4318||otel-collector.istio-system.svc.cluster.local"
	}
	if !found {
		t.Error("the collector's cluster is not in the proxy's CDS")
	}

	// ratings is not selected by the workload Telemetry: mesh-wide tracing
	// (the default provider, OTLP/gRPC, at 10%) and the namespace's log.
	ratings := &translate.Proxy{ID: "sidecar~127.10.0.21~ratings-0.default~default.svc.cluster.local", IP: "127.10.0.21",
		Pod: "ratings-0", Namespace: "default", Labels: map[string]string{"app": "ratings"}, InterceptionMode: "NONE"}
	rc := decodedChains(t, translate.ForProxy(w, ratings, nil))
	got := httpChain(t, rc, "0.0.0.0_9080")
	want := &xdsresource.Tracing{
		SamplingPercent: 10,
		Provider: xdsresource.TracingProvider{Cluster: "outbound|4317||otel-collector.istio-system.svc.cluster.local",
			Authority: "otel-collector.istio-system.svc.cluster.local", Timeout: 2 * time.Second},
		ServiceName:      "ratings.default",
		CustomTags:       []xdsresource.CustomTag{{Tag: "cluster", Literal: "east"}, {Tag: "user", Header: "x-user", Default: "anon"}},
		MaxPathTagLength: 99,
	}
	if d := cmp.Diff(want, got.Tracing); d != "" {
		t.Errorf("ratings tracing (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&xdsresource.Stats{}, got.Stats); d != "" {
		t.Errorf("ratings stats (-want +got):\n%s", d)
	}
	if w.ScopeKey(ratings) == w.ScopeKey(sidecarProxy) {
		t.Error("proxies with different Telemetry share a scope key")
	}
}

// Turning things off: disableSpanReporting keeps the tracing block without
// a provider, accessLogging disabled drops the log, a metrics provider list
// without Prometheus turns Istio's metrics off.
func TestTelemetryDisabled(t *testing.T) {
	w := world(t, telemetryMesh, otelCollector, nsTelemetry, `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-off, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  tracing: [{disableSpanReporting: true}]
  accessLogging: [{disabled: true}]
  metrics: [{providers: [{name: json-log}]}]
`)
	chains := decodedChains(t, translate.ForProxy(w, sidecarProxy, nil))
	h := httpChain(t, chains, "0.0.0.0_9080")
	if h.Tracing == nil || h.Tracing.Provider != (xdsresource.TracingProvider{}) || h.Tracing.SamplingPercent != 1 {
		t.Errorf("tracing = %+v, want sampling 1%% and no provider", h.Tracing)
	}
	if h.AccessLogs != nil || h.Stats != nil {
		t.Errorf("access logs %+v, stats %+v; want both off", h.AccessLogs, h.Stats)
	}
}

// A Sidecar that limits egress to the proxy's namespace still leaves the
// collector's cluster in CDS, as istiod adds it.
func TestTelemetryCollectorClusterOutsideEgress(t *testing.T) {
	w := world(t, telemetryMesh, otelCollector, `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./*"]}]
`)
	res := translate.ForProxy(w, sidecarProxy, nil)
	names := map[string]bool{}
	for _, c := range res.Clusters {
		names[c.Name] = true
	}
	if !names["outbound|4317||otel-collector.istio-system.svc.cluster.local"] {
		t.Errorf("collector cluster missing; clusters: %v", names)
	}
	decodedChains(t, res)
}

func hcmListener(t *testing.T, h *hcmv3.HttpConnectionManager) []byte {
	t.Helper()
	h.StatPrefix = "x"
	h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}}
	h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}})
	return listenerBytes(t, &listenerv3.Filter{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}})
}

func listenerBytes(t *testing.T, fs ...*listenerv3.Filter) []byte {
	t.Helper()
	l := &listenerv3.Listener{Name: "l", Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: fs}}}
	b, err := proto.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func statsAny(t *testing.T, v map[string]any) *xdstypev3.TypedStruct {
	t.Helper()
	st, err := structpb.NewStruct(v)
	if err != nil {
		t.Fatal(err)
	}
	return &xdstypev3.TypedStruct{TypeUrl: translate.StatsPluginType, Value: st}
}

// Malformed or unsupported telemetry config is refused with the path to
// the field, so the control plane sees what to fix.
func TestTelemetryDecodeErrors(t *testing.T) {
	fileLog := func(fl *filelogv3.FileAccessLog) *accesslogv3.AccessLog {
		return &accesslogv3.AccessLog{Name: "f", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(t, fl)}}
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"access log filter", hcmListener(t, &hcmv3.HttpConnectionManager{AccessLog: []*accesslogv3.AccessLog{{Name: "f",
			Filter:     &accesslogv3.AccessLogFilter{},
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(t, &filelogv3.FileAccessLog{Path: "/dev/stdout"})}}}}),
			"access_log[0].filter: not supported"},
		{"access log without path", hcmListener(t, &hcmv3.HttpConnectionManager{AccessLog: []*accesslogv3.AccessLog{fileLog(&filelogv3.FileAccessLog{})}}),
			"access_log[0].typed_config.path: required"},
		{"zipkin", hcmListener(t, &hcmv3.HttpConnectionManager{Tracing: &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: "z",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(t, &tracev3.ZipkinConfig{CollectorCluster: "c"})}}}}),
			"tracing.provider.typed_config: tracer \"z\""},
		{"sampling over 100", hcmListener(t, &hcmv3.HttpConnectionManager{Tracing: &hcmv3.HttpConnectionManager_Tracing{RandomSampling: &typev3.Percent{Value: 150}}}),
			"tracing.random_sampling.value: must be in [0, 100]"},
		{"otel without cluster", hcmListener(t, &hcmv3.HttpConnectionManager{Tracing: &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: "o",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(t, &tracev3.OpenTelemetryConfig{GrpcService: &corev3.GrpcService{
				TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{}}}})}}}}),
			"tracing.provider.typed_config.grpc_service.envoy_grpc.cluster_name: required"},
		{"custom tag without source", hcmListener(t, &hcmv3.HttpConnectionManager{Tracing: &hcmv3.HttpConnectionManager_Tracing{CustomTags: []*tracingv3.CustomTag{{Tag: "a"}}}}),
			"tracing.custom_tags[0]: needs one of"},
		{"environment custom tag without a name", hcmListener(t, &hcmv3.HttpConnectionManager{Tracing: &hcmv3.HttpConnectionManager_Tracing{CustomTags: []*tracingv3.CustomTag{{Tag: "a",
			Type: &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{DefaultValue: "d"}}}}}}),
			"tracing.custom_tags[0].environment.name: required"},
		{"header custom tag without a name", hcmListener(t, &hcmv3.HttpConnectionManager{Tracing: &hcmv3.HttpConnectionManager_Tracing{CustomTags: []*tracingv3.CustomTag{{Tag: "a",
			Type: &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{}}}}}}),
			"tracing.custom_tags[0].request_header.name: required"},
		{"stats dimensions (CEL)", hcmListener(t, &hcmv3.HttpConnectionManager{HttpFilters: []*hcmv3.HttpFilter{{Name: "istio.stats",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, statsAny(t, map[string]any{"metrics": []any{map[string]any{"name": "requests_total", "dimensions": map[string]any{"a": "b"}}}}))}}}}),
			"http_filters[0].typed_config.value.metrics[0].dimensions: not supported"},
		{"network stats ahead of an HCM", listenerBytes(t,
			&listenerv3.Filter{Name: "istio.stats", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, statsAny(t, map[string]any{}))}},
			&listenerv3.Filter{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &hcmv3.HttpConnectionManager{StatPrefix: "x",
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}}})}}),
			"filters[1]: filter \"hcm\": an istio.stats network filter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := xdsresource.DecodeListener(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// A TCP proxy with an istio.stats network filter ahead of it and a text
// access log decodes into both.
func TestTelemetryDecodeTCP(t *testing.T) {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: "t", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"},
		AccessLog: []*accesslogv3.AccessLog{{Name: "f", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(t, &filelogv3.FileAccessLog{Path: "/tmp/a",
			AccessLogFormat: &filelogv3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
				TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "%DURATION%\n"}}}}}})}}}}
	b := listenerBytes(t,
		&listenerv3.Filter{Name: "istio.stats", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, statsAny(t, map[string]any{
			"metrics": []any{map[string]any{"name": "tcp_sent_bytes_total", "drop": true}, map[string]any{"tags_to_remove": []any{"source_app"}}}}))}},
		&listenerv3.Filter{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, tp)}})
	l, err := xdsresource.DecodeListener(b)
	if err != nil {
		t.Fatal(err)
	}
	got := l.FilterChains[0].TCP
	if d := cmp.Diff([]xdsresource.AccessLog{{Path: "/tmp/a", Format: "%DURATION%\n"}}, got.AccessLogs); d != "" {
		t.Errorf("access logs (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"istio_tcp_sent_bytes_total"}, got.Stats.Disabled); d != "" {
		t.Errorf("disabled (-want +got):\n%s", d)
	}
	if len(got.Stats.TagsRemoved) != 10 || got.Stats.TagsRemoved["istio_requests_total"][0] != "source_app" {
		t.Errorf("an override without a metric name removes the tag from every metric; got %v", got.Stats.TagsRemoved)
	}
}

// istioStats is what every chain carries by default: Istio's metrics on,
// nothing overridden.
var istioStats = &xdsresource.Stats{}

// A Telemetry naming a provider MeshConfig does not define: istiod logs
// and ignores it; the translator warns once and reports no spans.
func TestTelemetryUnknownProvider(t *testing.T) {
	w := world(t, otelCollector, `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh, namespace: istio-system}
spec:
  tracing: [{providers: [{name: nope}], randomSamplingPercentage: 5}]
  metrics: [{providers: [{name: missing}]}]
`)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	chains := decodedChains(t, translate.ForProxy(w, sidecarProxy, log))
	h := httpChain(t, chains, "0.0.0.0_9080")
	if h.Tracing == nil || h.Tracing.Provider.Cluster != "" || h.Tracing.SamplingPercent != 5 {
		t.Errorf("tracing = %+v, want 5%% sampling without a provider", h.Tracing)
	}
	if h.Stats != nil {
		t.Errorf("stats = %+v, want metrics off (no Prometheus provider)", h.Stats)
	}
	for _, want := range []string{"provider=nope", "provider=missing"} {
		if n := strings.Count(buf.String(), want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, buf.String())
		}
	}
}
