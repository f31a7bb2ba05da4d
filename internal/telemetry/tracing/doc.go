// Package tracing is the sidecar's OpenTelemetry tracing core: it reads a
// request's trace context (W3C traceparent/tracestate, B3 single and multi
// header), decides sampling (the parent's flag when one came, else a random
// percentage, as Envoy's random_sampling), writes the context on for the next
// hop, builds the SERVER or CLIENT span with the attributes Envoy and Istio
// put on HTTP spans, and exports sampled spans in batches over OTLP/gRPC or
// OTLP/HTTP.
//
// It uses only the OTLP wire types (go.opentelemetry.io/proto/otlp's trace,
// common and resource messages), not the OpenTelemetry SDK: the proxy has a
// 25 MB RSS budget and already links gRPC and protobuf. It also avoids the
// otlp collector package, whose grpc-gateway half would pull in a module
// the proxy does not otherwise need: TracesData has the same wire shape as
// ExportTraceServiceRequest (one repeated ResourceSpans in field 1), so it
// is sent as the request.
//
// An unsampled request costs no allocation beyond the propagation headers.
package tracing
