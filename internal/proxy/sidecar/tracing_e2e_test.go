package sidecar_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// collector is an in-process OTLP receiver: every span it was sent, with
// its resource.
type collector struct {
	mu    sync.Mutex
	spans []gotSpan
}

type gotSpan struct {
	*tracepb.Span
	resource *resourcepb.Resource
}

func (c *collector) add(td *tracepb.TracesData) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range td.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				c.spans = append(c.spans, gotSpan{sp, rs.Resource})
			}
		}
	}
}

func (c *collector) got() []gotSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]gotSpan(nil), c.spans...)
}

// otlpTraceService is opentelemetry.proto.collector.trace.v1.TraceService
// as a collector registers it; the request decodes as TracesData (the
// same wire shape as ExportTraceServiceRequest), the response is an empty
// ExportTraceServiceResponse.
var otlpTraceService = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req tracepb.TracesData
			if err := dec(&req); err != nil {
				return nil, err
			}
			srv.(*collector).add(&req)
			return &emptypb.Empty{}, nil
		},
	}},
}

// grpcCollectorAt serves OTLP/gRPC on addr until the test ends.
func grpcCollectorAt(t *testing.T, addr string) *collector {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	srv.RegisterService(&otlpTraceService, c)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return c
}

// httpCollectorAt serves OTLP/HTTP (protobuf) on addr at path.
func httpCollectorAt(t *testing.T, addr, path string) *collector {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		b, err := io.ReadAll(r.Body)
		var req tracepb.TracesData
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return c
}

// tracingMesh is reviews (base.2, sa reviews) and its caller productpage
// (base.1, sa productpage) in mTLS, an OTLP collector without a sidecar
// at base.9 as a Service in istio-system, named by MeshConfig as the
// tracing provider, and a mesh-wide Telemetry sampling sampling%.
func tracingMeshConfig(base, provider string, sampling int) string {
	return istioMetricsConfig(base) + fmt.Sprintf(`---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultProviders: {tracing: [otel]}
    extensionProviders:
    - name: otel
      opentelemetry: {service: otel-collector.istio-system.svc.cluster.local, port: 4317%[2]s}
---
apiVersion: v1
kind: Service
metadata: {name: otel-collector, namespace: istio-system}
spec:
  selector: {app: otel-collector}
  ports: [{name: grpc-otlp, port: 4317}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: otel-collector, namespace: istio-system}
spec: {address: %[1]s.9, labels: {app: otel-collector}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{randomSamplingPercentage: %[3]d}]
`, base, provider, sampling)
}

// seen is what the app behind the server's sidecar saw, request by
// request, keyed by path.
type seen struct {
	mu  sync.Mutex
	hdr map[string]http.Header
}

func (s *seen) get(path string) http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hdr[path]
}

// startTracingMesh starts the mesh of tracingMeshConfig and returns the
// client pod and what reviews' app saw.
func startTracingMesh(t *testing.T, base, config string) (*meshtest.Mesh, *meshtest.Pod, *meshtest.Pod, *seen) {
	t.Helper()
	m := meshtest.New(t, config, meshtest.WithCA())
	s := &seen{hdr: map[string]http.Header{}}
	m.Backend(base+".2:9080", "reviews", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hdr[r.URL.Path] = r.Header.Clone()
		s.mu.Unlock()
		io.WriteString(w, "reviews")
	})
	serverID := m.Identity("default", "reviews", time.Hour)
	clientID := m.Identity("default", "productpage", time.Hour)
	server := m.Sidecar("reviews-v2", base+".2", map[string]string{"app": "reviews", "version": "v2"}, m.WithIdentity(serverID))
	client := m.Sidecar("productpage", base+".1", map[string]string{"app": "productpage", "version": "v1"}, m.WithIdentity(clientID))
	m.WaitSynced()
	c := client.Client()
	t.Cleanup(c.CloseIdleConnections)
	meshtest.Eventually(t, 10*time.Second, func() string {
		if code, flags, body, _ := get(c, "http://reviews:9080/warm", nil); code != 200 {
			return fmt.Sprintf("reviews answered %d %s %q", code, flags, body)
		}
		return ""
	})
	return m, client, server, s
}

func spanAttrs(sp *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range sp.Attributes {
		m[kv.Key] = kv.Value.GetStringValue()
	}
	return m
}

func resourceAttr(r *resourcepb.Resource, key string) string {
	for _, kv := range r.GetAttributes() {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

// spansFor are the spans whose http.url ends with path.
func spansFor(spans []gotSpan, path string) (client, server *gotSpan) {
	for i := range spans {
		if !strings.HasSuffix(spanAttrs(spans[i].Span)["http.url"], path) {
			continue
		}
		switch spans[i].Kind {
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = &spans[i]
		case tracepb.Span_SPAN_KIND_SERVER:
			server = &spans[i]
		}
	}
	return client, server
}

// waitTrace polls the collector until both sidecars' spans of path came.
func waitTrace(t *testing.T, col *collector, path string) (client, server *gotSpan) {
	t.Helper()
	meshtest.Eventually(t, 12*time.Second, func() string {
		client, server = spansFor(col.got(), path)
		if client == nil || server == nil {
			return fmt.Sprintf("collector has client span %v, server span %v for %s (of %d spans)", client != nil, server != nil, path, len(col.got()))
		}
		return ""
	})
	return client, server
}

// traceparentOf splits a W3C traceparent into trace id, parent id, flags.
func traceparentOf(t *testing.T, h string) (traceID, parentID, flags string) {
	t.Helper()
	p := strings.Split(h, "-")
	if len(p) != 4 || p[0] != "00" || len(p[1]) != 32 || len(p[2]) != 16 || len(p[3]) != 2 {
		t.Fatalf("the app saw traceparent %q, not a W3C version 00 one", h)
	}
	return p[1], p[2], p[3]
}

// One request from productpage through both sidecars to reviews is one
// trace at the collector: the client's sidecar's CLIENT span and the
// server's SERVER span under it, with Envoy's and Istio's attributes,
// and the app sees the server span as its parent.
func TestTracingTwoSidecarsOTLPGRPC(t *testing.T) {
	const base = "127.162.1"
	col := grpcCollectorAt(t, base+".9:4317")
	_, client, _, s := startTracingMesh(t, base, tracingMeshConfig(base, "", 100))
	c := client.Client()

	if code, flags, body, _ := get(c, "http://reviews:9080/traced", nil); code != 200 {
		t.Fatalf("GET /traced = %d %s %q", code, flags, body)
	}
	app := s.get("/traced")
	cs, ss := waitTrace(t, col, "/traced")

	ct, st := hex.EncodeToString(cs.TraceId), hex.EncodeToString(ss.TraceId)
	if ct != st {
		t.Errorf("client span in trace %s, server span in %s: want one trace", ct, st)
	}
	if got, want := hex.EncodeToString(ss.ParentSpanId), hex.EncodeToString(cs.SpanId); got != want {
		t.Errorf("server span's parent = %q, want the client span %q", got, want)
	}
	if len(cs.ParentSpanId) != 0 {
		t.Errorf("client span has parent %x; the request came without a trace", cs.ParentSpanId)
	}
	tid, pid, fl := traceparentOf(t, app.Get("Traceparent"))
	if tid != st || pid != hex.EncodeToString(ss.SpanId) || fl != "01" {
		t.Errorf("app saw traceparent %q, want trace %s, parent the server span %x, sampled", app.Get("Traceparent"), st, ss.SpanId)
	}
	rid := app.Get("X-Request-Id")
	if rid == "" {
		t.Fatal("the app saw no x-request-id")
	}

	for _, tc := range []struct {
		side     string
		sp       *gotSpan
		service  string
		ip       string
		cluster  string
		wantName string
	}{
		{"client", cs, "productpage", base + ".1", "outbound|9080||reviews.default.svc.cluster.local", "reviews:9080/traced"},
		{"server", ss, "reviews", base + ".2", "inbound|9080||", "reviews:9080/traced"},
	} {
		a := spanAttrs(tc.sp.Span)
		want := map[string]string{
			"http.method": "GET", "http.status_code": "200", "upstream_cluster": tc.cluster,
			"guid:x-request-id": rid, "component": "proxy",
			"istio.namespace": "default", "istio.canonical_service": tc.service,
		}
		got := map[string]string{}
		for k := range want {
			got[k] = a[k]
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s span attributes (-want +got):\n%s\nall: %v", tc.side, d, a)
		}
		if n := a["node_id"]; !strings.Contains(n, tc.ip) {
			t.Errorf("%s span node_id = %q, want the sidecar's (with %s)", tc.side, n, tc.ip)
		}
		if got, want := resourceAttr(tc.sp.resource, "service.name"), tc.service+".default"; got != want {
			t.Errorf("%s span service.name = %q, want %q", tc.side, got, want)
		}
	}

	// A request that arrives in a sampled W3C trace continues it: the
	// client's span is a child of the caller's.
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if code, _, _, _ := get(c, "http://reviews:9080/continued", map[string]string{"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01"}); code != 200 {
		t.Fatalf("GET /continued = %d", code)
	}
	cs, ss = waitTrace(t, col, "/continued")
	if got := hex.EncodeToString(cs.TraceId); got != callerTrace {
		t.Errorf("client span of a traced request in trace %s, want the caller's %s", got, callerTrace)
	}
	if got := hex.EncodeToString(cs.ParentSpanId); got != callerSpan {
		t.Errorf("client span's parent = %s, want the caller's span %s", got, callerSpan)
	}
	if got := hex.EncodeToString(ss.TraceId); got != callerTrace {
		t.Errorf("server span in trace %s, want the caller's %s", got, callerTrace)
	}
	if tid, pid, _ := traceparentOf(t, s.get("/continued").Get("Traceparent")); tid != callerTrace || pid != hex.EncodeToString(ss.SpanId) {
		t.Errorf("app saw traceparent %q, want trace %s under the server span %x", s.get("/continued").Get("Traceparent"), callerTrace, ss.SpanId)
	}

	// B3 multi headers in, B3 at the app, same trace.
	const b3Trace, b3Span = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
	if code, _, _, _ := get(c, "http://reviews:9080/b3", map[string]string{"x-b3-traceid": b3Trace, "x-b3-spanid": b3Span, "x-b3-sampled": "1"}); code != 200 {
		t.Fatalf("GET /b3 = %d", code)
	}
	h := s.get("/b3")
	if h.Get("X-B3-Traceid") != b3Trace || h.Get("X-B3-Spanid") == "" || h.Get("X-B3-Spanid") == b3Span {
		t.Errorf("app saw x-b3-traceid %q x-b3-spanid %q, want trace %s under a sidecar's span", h.Get("X-B3-Traceid"), h.Get("X-B3-Spanid"), b3Trace)
	}
	_, ss = waitTrace(t, col, "/b3")
	if got := hex.EncodeToString(ss.TraceId); got != b3Trace {
		t.Errorf("server span of a B3 request in trace %s, want %s", got, b3Trace)
	}
	if got := h.Get("X-B3-Spanid"); got != hex.EncodeToString(ss.SpanId) {
		t.Errorf("app saw x-b3-spanid %s, want the server span %x", got, ss.SpanId)
	}
}

// With an OTLP/HTTP provider (http: {path}) the sidecars POST their spans
// to the collector's path through its cluster.
func TestTracingOTLPHTTP(t *testing.T) {
	const base = "127.162.2"
	col := httpCollectorAt(t, base+".9:4317", "/v1/traces")
	_, client, _, s := startTracingMesh(t, base, tracingMeshConfig(base, ", http: {path: /v1/traces}", 100))
	if code, _, _, _ := get(client.Client(), "http://reviews:9080/over-http", nil); code != 200 {
		t.Fatalf("GET /over-http = %d", code)
	}
	cs, ss := waitTrace(t, col, "/over-http")
	if hex.EncodeToString(ss.TraceId) != hex.EncodeToString(cs.TraceId) || hex.EncodeToString(ss.ParentSpanId) != hex.EncodeToString(cs.SpanId) {
		t.Errorf("server span %x/%x parent %x, want a child of the client span %x/%x", ss.TraceId, ss.SpanId, ss.ParentSpanId, cs.TraceId, cs.SpanId)
	}
	if got, want := spanAttrs(ss.Span)["guid:x-request-id"], s.get("/over-http").Get("X-Request-Id"); got != want || got == "" {
		t.Errorf("server span's guid:x-request-id = %q, the app saw %q", got, want)
	}
}

// At 0% sampling the sidecars report nothing of a fresh request but still
// propagate its trace context, unsampled; a request that arrives sampled
// is traced anyway, as Envoy honours the caller's decision.
func TestTracingSamplingZero(t *testing.T) {
	const base = "127.162.3"
	col := grpcCollectorAt(t, base+".9:4317")
	_, client, _, s := startTracingMesh(t, base, tracingMeshConfig(base, "", 0))
	c := client.Client()

	if code, _, _, _ := get(c, "http://reviews:9080/unsampled", nil); code != 200 {
		t.Fatalf("GET /unsampled = %d", code)
	}
	tid, _, fl := traceparentOf(t, s.get("/unsampled").Get("Traceparent"))
	if fl != "00" || tid == strings.Repeat("0", 32) {
		t.Errorf("app saw traceparent %q, want a trace with the sampled flag off", s.get("/unsampled").Get("Traceparent"))
	}

	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	if code, _, _, _ := get(c, "http://reviews:9080/sampled", map[string]string{"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01"}); code != 200 {
		t.Fatalf("GET /sampled = %d", code)
	}
	cs, ss := waitTrace(t, col, "/sampled")
	if hex.EncodeToString(cs.TraceId) != callerTrace || hex.EncodeToString(ss.TraceId) != callerTrace {
		t.Errorf("spans of a sampled request in traces %x and %x, want the caller's %s", cs.TraceId, ss.TraceId, callerTrace)
	}
	if _, _, fl := traceparentOf(t, s.get("/sampled").Get("Traceparent")); fl != "01" {
		t.Errorf("app saw traceparent %q, want it sampled", s.get("/sampled").Get("Traceparent"))
	}
	// The unsampled request's spans, had there been any, were queued
	// before the sampled one's and exported no later.
	for _, sp := range col.got() {
		if u := spanAttrs(sp.Span)["http.url"]; !strings.HasSuffix(u, "/sampled") {
			t.Errorf("collector got a span of %s at 0%% sampling", u)
		}
	}
}
