package tracing

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The proxy encodes OTLP by hand: the generated otlp types need protobuf's
// reflection runtime, which costs the sidecar megabytes it does not have
// (cmd/trellis-proxy/deps_test.go). Field numbers are those of
// opentelemetry/proto/{collector/trace,trace,common,resource}/v1; an
// ExportTraceServiceRequest has TracesData's wire shape.

// valueKind is which AnyValue field an attribute sets.
type valueKind uint8

const (
	valueString valueKind = iota
	valueBool
	valueInt
	valueDouble
)

// attr is a KeyValue with a scalar AnyValue.
type attr struct {
	key  string
	kind valueKind
	s    string
	i    int64
	f    float64
	b    bool
}

func str(k, v string) attr { return attr{key: k, s: v} }

// scope is an InstrumentationScope.
type scope struct{ name, version string }

// statusError is Status.StatusCode STATUS_CODE_ERROR.
const statusError = 2

// spanData is one finished span as it goes on the wire.
type spanData struct {
	traceID          [16]byte
	spanID, parentID [8]byte
	hasParent        bool
	traceState, name string
	kind             Kind
	start, end       uint64 // unix nanoseconds
	flags            uint32
	attrs            []attr
	statusCode       int32
	statusMessage    string
}

// wireKind is the span's Span.SpanKind.
func (k Kind) wireKind() uint64 {
	if k == Client {
		return 3 // SPAN_KIND_CLIENT
	}
	return 2 // SPAN_KIND_SERVER
}

func sizeMsg(num protowire.Number, size int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(size)
}

func appendMsgHeader(b []byte, num protowire.Number, size int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(size))
}

func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// The AnyValue oneof is always written, even at its zero value: a set
// oneof field has presence.
func sizeAnyValue(a *attr) int {
	switch a.kind {
	case valueBool:
		return protowire.SizeTag(2) + 1
	case valueInt:
		return protowire.SizeTag(3) + protowire.SizeVarint(uint64(a.i))
	case valueDouble:
		return protowire.SizeTag(4) + protowire.SizeFixed64()
	default:
		return protowire.SizeTag(1) + protowire.SizeBytes(len(a.s))
	}
}

func appendAnyValue(b []byte, a *attr) []byte {
	switch a.kind {
	case valueBool:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(a.b))
	case valueInt:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(a.i))
	case valueDouble:
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(a.f))
	default:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		return protowire.AppendString(b, a.s)
	}
}

func sizeKeyValue(a *attr) int {
	return sizeString(1, a.key) + sizeMsg(2, sizeAnyValue(a))
}

func appendKeyValue(b []byte, a *attr) []byte {
	b = appendString(b, 1, a.key)
	b = appendMsgHeader(b, 2, sizeAnyValue(a))
	return appendAnyValue(b, a)
}

func sizeAttrs(num protowire.Number, attrs []attr) int {
	n := 0
	for i := range attrs {
		n += sizeMsg(num, sizeKeyValue(&attrs[i]))
	}
	return n
}

func appendAttrs(b []byte, num protowire.Number, attrs []attr) []byte {
	for i := range attrs {
		b = appendMsgHeader(b, num, sizeKeyValue(&attrs[i]))
		b = appendKeyValue(b, &attrs[i])
	}
	return b
}

func sizeScope(s scope) int { return sizeString(1, s.name) + sizeString(2, s.version) }

func sizeStatus(s *spanData) int {
	n := sizeString(2, s.statusMessage)
	if s.statusCode != 0 {
		n += protowire.SizeTag(3) + protowire.SizeVarint(uint64(s.statusCode))
	}
	return n
}

func sizeSpan(s *spanData) int {
	n := protowire.SizeTag(1) + protowire.SizeBytes(len(s.traceID)) +
		protowire.SizeTag(2) + protowire.SizeBytes(len(s.spanID)) +
		sizeString(3, s.traceState) + sizeString(5, s.name) +
		protowire.SizeTag(6) + protowire.SizeVarint(s.kind.wireKind()) +
		sizeAttrs(9, s.attrs)
	if s.hasParent {
		n += protowire.SizeTag(4) + protowire.SizeBytes(len(s.parentID))
	}
	if s.start != 0 {
		n += protowire.SizeTag(7) + protowire.SizeFixed64()
	}
	if s.end != 0 {
		n += protowire.SizeTag(8) + protowire.SizeFixed64()
	}
	if st := sizeStatus(s); st > 0 {
		n += sizeMsg(15, st)
	}
	if s.flags != 0 {
		n += protowire.SizeTag(16) + protowire.SizeFixed32()
	}
	return n
}

func appendSpan(b []byte, s *spanData) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, s.traceID[:])
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, s.spanID[:])
	b = appendString(b, 3, s.traceState)
	if s.hasParent {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, s.parentID[:])
	}
	b = appendString(b, 5, s.name)
	b = protowire.AppendTag(b, 6, protowire.VarintType)
	b = protowire.AppendVarint(b, s.kind.wireKind())
	if s.start != 0 {
		b = protowire.AppendTag(b, 7, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, s.start)
	}
	if s.end != 0 {
		b = protowire.AppendTag(b, 8, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, s.end)
	}
	b = appendAttrs(b, 9, s.attrs)
	if st := sizeStatus(s); st > 0 {
		b = appendMsgHeader(b, 15, st)
		b = appendString(b, 2, s.statusMessage)
		if s.statusCode != 0 {
			b = protowire.AppendTag(b, 3, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(s.statusCode))
		}
	}
	if s.flags != 0 {
		b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, s.flags)
	}
	return b
}

// encodeTraces returns an ExportTraceServiceRequest holding spans under one
// ResourceSpans (resource attributes res) and one ScopeSpans (sc), sized
// up front so the request is one allocation.
func encodeTraces(res []attr, sc scope, spans []*spanData) []byte {
	sizes := make([]int, len(spans))
	ss := sizeMsg(1, sizeScope(sc))
	for i, sp := range spans {
		sizes[i] = sizeSpan(sp)
		ss += sizeMsg(2, sizes[i])
	}
	resSize := sizeAttrs(1, res)
	rs := sizeMsg(1, resSize) + sizeMsg(2, ss)
	b := make([]byte, 0, sizeMsg(1, rs))
	b = appendMsgHeader(b, 1, rs)
	b = appendMsgHeader(b, 1, resSize)
	b = appendAttrs(b, 1, res)
	b = appendMsgHeader(b, 2, ss)
	b = appendMsgHeader(b, 1, sizeScope(sc))
	b = appendString(b, 1, sc.name)
	b = appendString(b, 2, sc.version)
	for i, sp := range spans {
		b = appendMsgHeader(b, 2, sizes[i])
		b = appendSpan(b, sp)
	}
	return b
}
