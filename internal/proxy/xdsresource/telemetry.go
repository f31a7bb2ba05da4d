package xdsresource

import (
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Telemetry config the proxy reads from its listeners: the HCM's tracing,
// the access_log of an HCM or TCP proxy, and Istio's stats filter
// (istio.stats), which carries the Telemetry API's metric overrides.

const (
	otelTracerType     = "envoy.config.trace.v3.OpenTelemetryConfig"
	fileAccessLogType  = "envoy.extensions.access_loggers.file.v3.FileAccessLog"
	typedStructType    = "xds.type.v3.TypedStruct"
	udpaTypedStruct    = "udpa.type.v1.TypedStruct"
	statsPluginType    = "stats.PluginConfig"
	statsPrefix        = "istio_"
	defaultPathTagSize = 256
)

// Tracing is an HCM's tracing block. Provider.Cluster is empty when the
// block names no tracer (Telemetry disableSpanReporting): trace headers
// are still propagated and sampled but no span is exported.
type Tracing struct {
	// SamplingPercent is random_sampling, 0..100; Envoy's 100 when unset
	// (istiod always sets it: the mesh's default is 1).
	SamplingPercent   float64
	Provider          TracingProvider
	ServiceName       string // OpenTelemetryConfig.service_name
	CustomTags        []CustomTag
	MaxPathTagLength  int // Envoy's 256 when unset
	SpawnUpstreamSpan bool
}

// TracingProvider says where spans go: an OTLP collector reached through
// the proxy's Cluster.
type TracingProvider struct {
	Cluster   string        // grpc_service.envoy_grpc.cluster_name or http_uri.cluster
	Authority string        // host[:port] for :authority / Host
	HTTPPath  string        // OTLP/HTTP path (e.g. /v1/traces); "" means OTLP/gRPC
	Timeout   time.Duration // 0: none set
}

// CustomTag adds a span attribute Tag: a Literal, a request Header or an
// Env variable (the last two with a Default when absent). Exactly one of
// Literal, Header and Env is the source; Literal may be "".
type CustomTag struct{ Tag, Literal, Header, Env, Default string }

// AccessLog is one file access log.
type AccessLog struct {
	Path string // file path; "/dev/stdout" the usual
	// JSON writes one JSON object per line with Istio's default JSON keys
	// (whatever keys a json_format names: the proxy's keys are fixed).
	JSON bool
	// Format is a TEXT format (Envoy command operators) when set, else
	// Istio's default text format.
	Format string
}

// Stats is the istio.stats filter's config (a TypedStruct of type
// stats.PluginConfig). A nil *Stats on a chain means Istio metrics are off
// for it.
type Stats struct {
	Disabled    []string            // metric names (istio_ prefix) turned off
	TagsRemoved map[string][]string // metric (istio_ prefix) -> labels removed
}

// decodeTracing reads an HttpConnectionManager.Tracing.
func decodeTracing(b []byte) (*Tracing, error) {
	t := &Tracing{SamplingPercent: 100, MaxPathTagLength: defaultPathTagSize}
	m := msg{b: b}
	tags := 0
	for m.next() {
		switch m.num {
		case 3:
			m.fail(errNotSupported, "client_sampling")
		case 4:
			if pb, ok := m.bytes(); ok {
				v, err := percentValue(pb)
				m.fail(err, "random_sampling")
				t.SamplingPercent = v
			}
		case 5:
			// overall_sampling caps what the others allow; Istio never
			// sets it, and 100 changes nothing.
			if pb, ok := m.bytes(); ok {
				v, err := percentValue(pb)
				m.fail(err, "overall_sampling")
				if err == nil && v != 100 {
					m.fail(errNotSupported, "overall_sampling")
				}
			}
		case 7:
			t.MaxPathTagLength = int(m.wrappedUint32("max_path_tag_length"))
		case 8:
			if cb, ok := m.bytes(); ok {
				ct, err := decodeCustomTag(cb)
				m.failIndex(err, "custom_tags", tags)
				t.CustomTags = append(t.CustomTags, ct)
				tags++
			}
		case 9:
			if pb, ok := m.bytes(); ok {
				m.fail(decodeTracingProvider(pb, t), "provider")
			}
		case 10:
			t.SpawnUpstreamSpan = m.wrappedBool("spawn_upstream_span")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if t.MaxPathTagLength == 0 {
		t.MaxPathTagLength = defaultPathTagSize
	}
	return t, nil
}

// customTagSources names a CustomTag's source fields by number.
var customTagSources = map[protowire.Number]string{2: "literal", 3: "environment", 4: "request_header"}

func decodeCustomTag(b []byte) (CustomTag, error) {
	var ct CustomTag
	m := msg{b: b}
	sources := 0
	for m.next() {
		switch m.num {
		case 1:
			ct.Tag = m.str("tag")
		case 2, 3, 4:
			// The tag's source is a oneof: the last one set counts.
			sb, ok := m.bytes()
			if !ok {
				break
			}
			field := customTagSources[m.num]
			name, def := nameDefault(&m, sb, field)
			ct = CustomTag{Tag: ct.Tag}
			switch m.num {
			case 2:
				ct.Literal = name
			case 3:
				ct.Env, ct.Default = name, def
			case 4:
				ct.Header, ct.Default = name, def
			}
			if m.num != 2 && name == "" {
				m.fail(within(errRequired, "name"), field)
			}
			sources++
		case 5:
			m.fail(errNotSupported, "metadata")
		case 6:
			m.fail(errNotSupported, "value")
		}
	}
	switch {
	case m.err != nil:
		return ct, m.err
	case ct.Tag == "":
		return ct, within(errRequired, "tag")
	case sources == 0:
		return ct, errorf("needs one of literal, environment or request_header")
	}
	return ct, nil
}

// nameDefault reads the (field 1, field 2) strings of a custom tag's
// Literal (value), Environment or Header (name, default_value).
func nameDefault(parent *msg, b []byte, seg string) (string, string) {
	var a, d string
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			a = m.str("name")
		case 2:
			d = m.str("default_value")
		}
	}
	parent.fail(m.err, seg)
	return a, d
}

// decodeTracingProvider reads a config.trace.v3.Tracing.Http: the
// OpenTelemetry tracer is the one the proxy has.
func decodeTracingProvider(b []byte, t *Tracing) error {
	m := msg{b: b}
	var name, typeName string
	var value []byte
	has := false
	for m.next() {
		switch m.num {
		case 1:
			name = m.str("name")
		case 3:
			if ab, ok := m.bytes(); ok {
				var err error
				typeName, value, err = anyValue(ab)
				m.fail(err, "typed_config")
				has = true
			}
		}
	}
	switch {
	case m.err != nil:
		return m.err
	case !has:
		return within(errRequired, "typed_config")
	case typeName != otelTracerType:
		return within(errorf("tracer %q (%s) is not supported by trellis-proxy: use envoy.tracers.opentelemetry", name, typeName), "typed_config")
	}
	if err := decodeOTelConfig(value, t); err != nil {
		return within(err, "typed_config")
	}
	return nil
}

func decodeOTelConfig(b []byte, t *Tracing) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			if gb, ok := m.bytes(); ok {
				t.Provider.HTTPPath = ""
				m.fail(decodeOTelGRPC(gb, &t.Provider), "grpc_service")
			}
		case 2:
			t.ServiceName = m.str("service_name")
		case 3:
			if hb, ok := m.bytes(); ok {
				m.fail(decodeOTelHTTP(hb, &t.Provider), "http_service")
			}
		case 4:
			m.fail(errNotSupported, "resource_detectors")
		case 5:
			m.fail(errNotSupported, "sampler")
		case 10:
			m.fail(errNotSupported, "exporter")
		}
	}
	if m.err != nil {
		return m.err
	}
	if t.Provider.Cluster == "" {
		return errorf("needs grpc_service or http_service with a cluster")
	}
	return nil
}

// decodeOTelGRPC reads a core.v3.GrpcService: envoy_grpc only, since the
// proxy dials its own clusters.
func decodeOTelGRPC(b []byte, p *TracingProvider) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			if eb, ok := m.bytes(); ok {
				c := msg{b: eb}
				for c.next() {
					switch c.num {
					case 1:
						p.Cluster = c.str("cluster_name")
					case 2:
						p.Authority = c.str("authority")
					}
				}
				m.fail(c.err, "envoy_grpc")
				if c.err == nil && p.Cluster == "" {
					m.fail(within(errRequired, "cluster_name"), "envoy_grpc")
				}
			}
		case 2:
			m.fail(errNotSupported, "google_grpc")
		case 3:
			p.Timeout = m.duration("timeout")
		}
	}
	if m.err == nil && p.Cluster == "" {
		return within(errRequired, "envoy_grpc")
	}
	return m.err
}

// decodeOTelHTTP reads a core.v3.HttpService: its http_uri's URI gives the
// authority and path, its cluster where to send.
func decodeOTelHTTP(b []byte, p *TracingProvider) error {
	m := msg{b: b}
	var uri string
	for m.next() {
		if m.num != 1 {
			continue
		}
		ub, ok := m.bytes()
		if !ok {
			continue
		}
		u := msg{b: ub}
		p.Cluster = ""
		for u.next() {
			switch u.num {
			case 1:
				uri = u.str("uri")
			case 2:
				p.Cluster = u.str("cluster")
			case 3:
				p.Timeout = u.duration("timeout")
			}
		}
		m.fail(u.err, "http_uri")
	}
	if m.err != nil {
		return m.err
	}
	if p.Cluster == "" {
		return within(within(errRequired, "cluster"), "http_uri")
	}
	rest, ok := strings.CutPrefix(uri, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(uri, "https://")
	}
	if !ok {
		return within(within(errorf("must be an http:// or https:// URL, got %q", uri), "uri"), "http_uri")
	}
	host, path, _ := strings.Cut(rest, "/")
	p.Authority, p.HTTPPath = host, "/"+path
	return nil
}

// decodeAccessLog reads a config.accesslog.v3.AccessLog: a file access
// log, unfiltered (Telemetry's filter.expression is CEL, which the proxy
// does not evaluate).
func decodeAccessLog(b []byte) (AccessLog, error) {
	var al AccessLog
	m := msg{b: b}
	var name, typeName string
	var value []byte
	has := false
	for m.next() {
		switch m.num {
		case 1:
			name = m.str("name")
		case 2:
			m.fail(errNotSupported, "filter")
		case 4:
			if ab, ok := m.bytes(); ok {
				var err error
				typeName, value, err = anyValue(ab)
				m.fail(err, "typed_config")
				has = true
			}
		}
	}
	switch {
	case m.err != nil:
		return al, m.err
	case !has:
		return al, within(errRequired, "typed_config")
	case typeName != fileAccessLogType:
		return al, within(errorf("access logger %q (%s) is not supported by trellis-proxy: use envoy.access_loggers.file", name, typeName), "typed_config")
	}
	if err := decodeFileAccessLog(value, &al); err != nil {
		return al, within(err, "typed_config")
	}
	return al, nil
}

func decodeFileAccessLog(b []byte, al *AccessLog) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			al.Path = m.str("path")
		case 2:
			al.Format, al.JSON = m.str("format"), false
		case 3, 4:
			al.Format, al.JSON = "", true
		case 5:
			if fb, ok := m.bytes(); ok {
				m.fail(decodeLogFormat(fb, al), "log_format")
			}
		}
	}
	if m.err == nil && al.Path == "" {
		return within(errRequired, "path")
	}
	return m.err
}

// decodeLogFormat reads a core.v3.SubstitutionFormatString.
func decodeLogFormat(b []byte, al *AccessLog) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			al.Format, al.JSON = m.str("text_format"), false
		case 2:
			al.Format, al.JSON = "", true
		case 5:
			if db, ok := m.bytes(); ok {
				al.JSON = false
				d := msg{b: db}
				for d.next() {
					switch d.num {
					case 1:
						d.fail(errNotSupported, "filename")
					case 2:
						b, _ := d.bytes()
						al.Format = string(b)
					case 3:
						al.Format = d.str("inline_string")
					}
				}
				m.fail(d.err, "text_format_source")
			}
		case 6:
			m.fail(errNotSupported, "formatters")
		}
	}
	return m.err
}

// decodeStatsFilter reads a TypedStruct; ok is false when it is not the
// stats plugin's, so the caller judges it as any other filter.
func decodeStatsFilter(typeName string, b []byte) (s *Stats, ok bool, err error) {
	if typeName != typedStructType && typeName != udpaTypedStruct {
		return nil, false, nil
	}
	m := msg{b: b}
	var url string
	var value []byte
	for m.next() {
		switch m.num {
		case 1:
			url = m.str("type_url")
		case 2:
			value, _ = m.bytes()
		}
	}
	if m.err != nil {
		return nil, true, m.err
	}
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		url = url[i+1:]
	}
	if url != statsPluginType {
		return nil, false, nil
	}
	v, err := decodeStruct(value, 0)
	if err != nil {
		return nil, true, within(err, "value")
	}
	if s, err = statsFromStruct(v); err != nil {
		return nil, true, within(err, "value")
	}
	return s, true, nil
}

// statsFromStruct reads the parts of Istio's stats.PluginConfig the proxy
// honours: metrics[].{name, drop, tags_to_remove}. Istio names metrics
// without their istio_ prefix (requests_total); an empty name means every
// metric.
func statsFromStruct(v map[string]any) (*Stats, error) {
	s := &Stats{}
	ms, _ := v["metrics"].([]any)
	if v["metrics"] != nil && ms == nil {
		return nil, within(errorf("must be a list"), "metrics")
	}
	for i, e := range ms {
		mo, ok := e.(map[string]any)
		if !ok {
			return nil, withinIndex(errorf("must be an object"), "metrics", i)
		}
		name, _ := mo["name"].(string)
		var names []string
		if name == "" {
			names = allIstioMetrics
		} else {
			names = []string{statsPrefix + strings.TrimPrefix(name, statsPrefix)}
		}
		if _, has := mo["dimensions"]; has {
			return nil, within(within(errorf("%w: tag values are CEL expressions", errNotSupported), "dimensions"), "metrics["+strconv.Itoa(i)+"]")
		}
		if drop, _ := mo["drop"].(bool); drop {
			s.Disabled = appendNew(s.Disabled, names...)
		}
		if tr, has := mo["tags_to_remove"]; has {
			list, ok := tr.([]any)
			if !ok {
				return nil, within(within(errorf("must be a list"), "tags_to_remove"), "metrics["+strconv.Itoa(i)+"]")
			}
			for _, t := range list {
				tag, ok := t.(string)
				if !ok || tag == "" {
					return nil, within(within(errorf("must be label names"), "tags_to_remove"), "metrics["+strconv.Itoa(i)+"]")
				}
				if s.TagsRemoved == nil {
					s.TagsRemoved = map[string][]string{}
				}
				for _, n := range names {
					s.TagsRemoved[n] = appendNew(s.TagsRemoved[n], tag)
				}
			}
		}
	}
	return s, nil
}

// allIstioMetrics are Istio's standard metrics, which an override without
// a metric name applies to.
var allIstioMetrics = []string{
	"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes",
	"istio_response_bytes", "istio_request_messages_total", "istio_response_messages_total",
	"istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
	"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
}

func appendNew(list []string, vs ...string) []string {
	for _, v := range vs {
		found := false
		for _, x := range list {
			if x == v {
				found = true
				break
			}
		}
		if !found {
			list = append(list, v)
		}
	}
	return list
}

// decodeStruct reads a google.protobuf.Struct into Go values: maps,
// slices, strings, float64 and bool (nil for null).
func decodeStruct(b []byte, depth int) (map[string]any, error) {
	out := map[string]any{}
	m := msg{b: b}
	for m.next() {
		if m.num != 1 {
			continue
		}
		entry, _ := m.bytes()
		key, value, err := mapEntry(entry)
		if err != nil {
			m.fail(err, "fields")
			break
		}
		v, err := decodeValue(value, depth+1)
		m.fail(err, "fields["+strconv.Quote(string(key))+"]")
		out[string(key)] = v
	}
	return out, m.err
}

const maxStructDepth = 32

func decodeValue(b []byte, depth int) (any, error) {
	if depth > maxStructDepth {
		return nil, errorf("nested too deeply")
	}
	var v any
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errorf("malformed protobuf: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			_, n = protowire.ConsumeVarint(b)
			v = nil
		case num == 2 && typ == protowire.Fixed64Type:
			var u uint64
			u, n = protowire.ConsumeFixed64(b)
			v = math.Float64frombits(u)
		case num == 3 && typ == protowire.BytesType:
			var s []byte
			s, n = protowire.ConsumeBytes(b)
			v = string(s)
		case num == 4 && typ == protowire.VarintType:
			var u uint64
			u, n = protowire.ConsumeVarint(b)
			v = u != 0
		case num == 5 && typ == protowire.BytesType:
			var s []byte
			s, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				st, err := decodeStruct(s, depth+1)
				if err != nil {
					return nil, err
				}
				v = st
			}
		case num == 6 && typ == protowire.BytesType:
			var s []byte
			s, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				l, err := decodeList(s, depth+1)
				if err != nil {
					return nil, err
				}
				v = l
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, errorf("malformed protobuf: %v", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return v, nil
}

func decodeList(b []byte, depth int) ([]any, error) {
	out := []any{}
	m := msg{b: b}
	for m.next() {
		if m.num != 1 {
			continue
		}
		vb, _ := m.bytes()
		v, err := decodeValue(vb, depth)
		m.failIndex(err, "values", len(out))
		out = append(out, v)
	}
	return out, m.err
}
