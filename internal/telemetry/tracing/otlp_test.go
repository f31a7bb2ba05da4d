package tracing

import (
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// The hand encoding decodes, through the generated OTLP types, to exactly
// the message it stands for: every field the proxy writes set, every
// AnyValue kind, and no unknown fields left over (proto.Equal compares
// them too).
func TestEncodeTracesRoundTrip(t *testing.T) {
	full := &spanData{
		traceID:       [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		spanID:        [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		parentID:      [8]byte{1, 2, 3, 4, 5, 6, 7, 8},
		hasParent:     true,
		traceState:    "congo=t61rcWkgMzE",
		name:          "reviews.default.svc.cluster.local:9080/*",
		kind:          Client,
		start:         1_700_000_000_123_456_789,
		end:           1_700_000_000_223_456_789,
		flags:         1,
		attrs:         []attr{str("http.method", "GET"), str("empty", ""), {key: "retry", kind: valueBool, b: true}, {key: "n", kind: valueInt, i: -42}, {key: "ratio", kind: valueDouble, f: 0.25}},
		statusCode:    statusError,
		statusMessage: "upstream reset",
	}
	bare := &spanData{traceID: [16]byte{15: 1}, spanID: [8]byte{7: 2}, kind: Server}
	res := []attr{str("service.name", "productpage.default"), {key: "pid", kind: valueInt, i: 7}}
	got := &tracepb.TracesData{}
	if err := proto.Unmarshal(encodeTraces(res, scope{name: "trellis-proxy", version: "1.2.3"}, []*spanData{full, bare}), got); err != nil {
		t.Fatalf("the collector cannot decode our request: %v", err)
	}

	sv := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	want := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			sv("service.name", "productpage.default"),
			{Key: "pid", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}},
		}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "trellis-proxy", Version: "1.2.3"},
			Spans: []*tracepb.Span{{
				TraceId:           full.traceID[:],
				SpanId:            full.spanID[:],
				TraceState:        "congo=t61rcWkgMzE",
				ParentSpanId:      full.parentID[:],
				Name:              "reviews.default.svc.cluster.local:9080/*",
				Kind:              tracepb.Span_SPAN_KIND_CLIENT,
				StartTimeUnixNano: 1_700_000_000_123_456_789,
				EndTimeUnixNano:   1_700_000_000_223_456_789,
				Attributes: []*commonpb.KeyValue{
					sv("http.method", "GET"),
					sv("empty", ""),
					{Key: "retry", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}},
					{Key: "n", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -42}}},
					{Key: "ratio", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}},
				},
				Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "upstream reset"},
				Flags:  1,
			}, {
				TraceId: bare.traceID[:],
				SpanId:  bare.spanID[:],
				Kind:    tracepb.Span_SPAN_KIND_SERVER,
			}},
		}},
	}}}
	if !proto.Equal(got, want) {
		t.Errorf("decoded\n%s\nwant\n%s", prototext.Format(got), prototext.Format(want))
	}
	// Byte for byte what protobuf's own encoder writes for the message,
	// so no collector's decoder sees anything unusual.
	ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if enc := encodeTraces(res, scope{name: "trellis-proxy", version: "1.2.3"}, []*spanData{full, bare}); string(enc) != string(ref) {
		t.Errorf("encoding differs from proto.Marshal's:\n got %x\nwant %x", enc, ref)
	}
}
