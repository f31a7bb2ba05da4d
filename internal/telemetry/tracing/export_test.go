package tracing

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
	"github.com/trellismesh/trellis/internal/testing/leak"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// receiver is an in-process OTLP collector: it keeps every request.
type receiver struct {
	mu   sync.Mutex
	reqs []*tracepb.TracesData
	// answer is the raw ExportTraceServiceResponse to send, nil for empty.
	answer []byte
}

func (r *receiver) add(req *tracepb.TracesData) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
}

func (r *receiver) spans() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, req := range r.reqs {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

// waitSpans polls until n spans arrived.
func (r *receiver) waitSpans(t *testing.T, n int) []*tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := r.spans()
		if len(s) >= n || time.Now().After(deadline) {
			if len(s) != n {
				t.Fatalf("collector got %d spans, want %d", len(s), n)
			}
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// traceServiceDesc is opentelemetry.proto.collector.trace.v1.TraceService
// as the collector registers it; the request decodes as TracesData, the
// response is an empty ExportTraceServiceResponse.
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req tracepb.TracesData
			if err := dec(&req); err != nil {
				return nil, err
			}
			rec := srv.(*receiver)
			rec.add(&req)
			resp := &emptypb.Empty{}
			resp.ProtoReflect().SetUnknown(rec.answer)
			return resp, nil
		},
	}},
}

// grpcCollector serves OTLP/gRPC on loopback and returns an exporter
// connected to it.
func grpcCollector(t *testing.T) (*receiver, *GRPCExporter) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &receiver{}
	srv := grpc.NewServer()
	srv.RegisterService(&traceServiceDesc, rec)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	tgt, err := grpcwire.ParseTarget(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := grpcwire.NewConn(tgt, nil, grpcwire.Keepalive{})
	t.Cleanup(conn.Close)
	return rec, NewGRPCExporter(conn)
}

func attrs(sp *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range sp.Attributes {
		m[kv.Key] = kv.Value.GetStringValue()
	}
	return m
}

var testCfg = Config{
	ServiceName:      "productpage.default",
	NodeID:           "sidecar~10.0.0.1~productpage-v1-abc.default~default.svc.cluster.local",
	Zone:             "z1",
	Namespace:        "default",
	CanonicalService: "productpage",
	MeshID:           "cluster.local",
	FlushInterval:    time.Hour, // only Stop or a full batch exports
}

// One request through two sidecars: the client span injects, the server
// span extracts; the collector gets one trace, the server's parent the
// client's span, each with Envoy's and Istio's attributes.
func TestTwoHopTraceOverGRPC(t *testing.T) {
	leak.Check(t)
	rec, exp := grpcCollector(t)
	cfg := testCfg
	cfg.CustomTags = []CustomTag{
		{Tag: "team", Literal: "books"},
		{Tag: "tenant", Header: "x-tenant", Default: "none"},
		{Tag: "missing", Header: "x-absent", Default: "dflt"},
		{Tag: "pod", Env: "TRACING_TEST_POD", Default: "?"},
		{Tag: "unset", Env: "TRACING_TEST_UNSET", Default: "fallback"},
	}
	t.Setenv("TRACING_TEST_POD", "productpage-v1-abc")
	tr := New(cfg, exp)

	app := hdr("x-request-id", "req-1", "x-tenant", "acme", "user-agent", "curl/8")
	start := t0
	client := tr.StartSpan(Client, app, 100, start)
	wire := app.Clone()
	client.Inject(wire)
	server := tr.StartSpan(Server, wire, 0, start.Add(time.Millisecond))
	long := "/reviews/" + repeat("a", 300) + "?q=1"
	server.End(&EndInfo{
		Operation: "reviews.default.svc.cluster.local:9080/*",
		Method:    "GET", Authority: "reviews:9080", Path: long, Protocol: "HTTP/1.1",
		StatusCode: 200, GRPCStatus: -1,
		UpstreamCluster: "inbound|9080||", UpstreamClusterName: "inbound|9080||",
		RequestID: "req-1", DownstreamCluster: "", UserAgent: "curl/8", PeerAddress: "10.0.0.1",
		ResponseFlags: "-", RequestSize: 0, ResponseSize: 1234, RequestHeader: wire,
	}, start.Add(5*time.Millisecond))
	client.End(&EndInfo{
		Method: "GET", Authority: "reviews:9080", Path: "/reviews/1?q=1", Protocol: "HTTP/1.1",
		StatusCode: 503, GRPCStatus: -1,
		UpstreamCluster:     "outbound|9080||reviews.default.svc.cluster.local",
		UpstreamClusterName: "outbound|9080||reviews.default.svc.cluster.local",
		RequestID:           "req-1", UserAgent: "curl/8", PeerAddress: "10.0.0.9:9080",
		ResponseFlags: "UF", RequestSize: 10, ResponseSize: 20, RequestHeader: app,
	}, start.Add(6*time.Millisecond))

	if err := tr.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := rec.waitSpans(t, 2)
	srv, cli := got[0], got[1]

	if cli.Kind != tracepb.Span_SPAN_KIND_CLIENT || srv.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("kinds %v/%v, want CLIENT/SERVER", cli.Kind, srv.Kind)
	}
	if hex.EncodeToString(cli.TraceId) != hex.EncodeToString(srv.TraceId) || hex.EncodeToString(cli.TraceId) != client.traceIDHex() {
		t.Errorf("trace ids %x and %x differ", cli.TraceId, srv.TraceId)
	}
	if len(cli.ParentSpanId) != 0 {
		t.Errorf("client span has parent %x, want a root", cli.ParentSpanId)
	}
	if string(srv.ParentSpanId) != string(cli.SpanId) {
		t.Errorf("server parent %x, want the client span %x", srv.ParentSpanId, cli.SpanId)
	}
	if srv.Name != "reviews.default.svc.cluster.local:9080/*" {
		t.Errorf("server name %q, want the operation", srv.Name)
	}
	if cli.Name != "reviews:9080/reviews/1" {
		t.Errorf("client name %q, want authority+path without query", cli.Name)
	}
	if cli.StartTimeUnixNano != uint64(start.UnixNano()) || cli.EndTimeUnixNano != uint64(start.Add(6*time.Millisecond).UnixNano()) {
		t.Errorf("client times %d..%d", cli.StartTimeUnixNano, cli.EndTimeUnixNano)
	}
	common := map[string]string{
		"node_id": cfg.NodeID, "zone": "z1", "component": "proxy",
		"istio.canonical_service": "productpage", "istio.namespace": "default", "istio.mesh_id": "cluster.local",
		"team": "books", "tenant": "acme", "missing": "dflt", "pod": "productpage-v1-abc", "unset": "fallback",
	}
	wantCli := map[string]string{
		"http.method": "GET", "http.url": "http://reviews:9080/reviews/1?q=1", "http.protocol": "HTTP/1.1",
		"http.status_code": "503", "upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local",
		"upstream_cluster.name": "outbound|9080||reviews.default.svc.cluster.local",
		"guid:x-request-id":     "req-1", "downstream_cluster": "-", "user_agent": "curl/8",
		"peer.address": "10.0.0.9:9080", "response_flags": "UF", "request_size": "10", "response_size": "20",
		"error": "true",
	}
	wantSrv := map[string]string{
		"http.method": "GET", "http.url": "http://reviews:9080" + long[:256], "http.protocol": "HTTP/1.1",
		"http.status_code": "200", "upstream_cluster": "inbound|9080||", "upstream_cluster.name": "inbound|9080||",
		"guid:x-request-id": "req-1", "downstream_cluster": "-", "user_agent": "curl/8",
		"peer.address": "10.0.0.1", "response_flags": "-", "request_size": "0", "response_size": "1234",
	}
	for k, v := range common {
		wantCli[k], wantSrv[k] = v, v
	}
	if d := cmp.Diff(wantCli, attrs(cli)); d != "" {
		t.Errorf("client attributes (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantSrv, attrs(srv)); d != "" {
		t.Errorf("server attributes (-want +got):\n%s", d)
	}
	if cli.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || srv.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("status client %v server %v, want ERROR and UNSET", cli.Status.GetCode(), srv.Status.GetCode())
	}
	rs := rec.reqs[0].ResourceSpans[0]
	if n := rs.Resource.Attributes[0]; n.Key != "service.name" || n.Value.GetStringValue() != "productpage.default" {
		t.Errorf("resource attribute %v, want service.name productpage.default", n)
	}
	if st := tr.Stats(); st != (Stats{SpansStarted: 2, SpansExported: 2}) {
		t.Errorf("stats %+v", st)
	}
}

func (s *Span) traceIDHex() string { return hex.EncodeToString(s.traceID[:]) }

func repeat(s string, n int) string {
	b := make([]byte, 0, n*len(s))
	for range n {
		b = append(b, s...)
	}
	return string(b)
}

func TestGRPCStatusIsError(t *testing.T) {
	leak.Check(t)
	rec, exp := grpcCollector(t)
	tr := New(testCfg, exp)
	grpcReq := hdr("content-type", "application/grpc")
	for _, code := range []int{0, 14} {
		s := tr.StartSpan(Server, grpcReq, 100, t0)
		s.End(&EndInfo{Method: "POST", Path: "/pkg.Svc/M", StatusCode: 200, GRPCStatus: code, RequestHeader: grpcReq}, t0)
	}
	tr.Stop(context.Background())
	got := rec.waitSpans(t, 2)
	ok, unavailable := attrs(got[0]), attrs(got[1])
	if ok["grpc.status_code"] != "0" || ok["error"] != "" || got[0].Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("grpc OK span: %v status %v", ok, got[0].Status.GetCode())
	}
	if unavailable["grpc.status_code"] != "14" || unavailable["error"] != "true" || got[1].Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("grpc UNAVAILABLE span: %v status %v", unavailable, got[1].Status.GetCode())
	}
}

func TestHTTPExport(t *testing.T) {
	leak.Check(t)
	rec := &receiver{}
	var gotPath, gotType, gotHost string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		gotPath, gotType, gotHost = r.URL.Path, r.Header.Get("Content-Type"), r.Host
		var req tracepb.TracesData
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rec.add(&req)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	client := srv.Client()
	t.Cleanup(client.CloseIdleConnections)
	tr := New(testCfg, NewHTTPExporter(client, srv.URL+"/v1/traces", "otel-collector.observability:4318"))
	in := hdr("traceparent", "00-"+tid+"-"+sid+"-01")
	s := tr.StartSpan(Server, in, 0, t0)
	s.End(&EndInfo{Method: "GET", Authority: "a", Path: "/", StatusCode: 200, GRPCStatus: -1}, t0)
	if err := tr.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := rec.waitSpans(t, 1)
	if gotPath != "/v1/traces" || gotType != "application/x-protobuf" || gotHost != "otel-collector.observability:4318" {
		t.Errorf("POST %s type %q host %q", gotPath, gotType, gotHost)
	}
	if hex.EncodeToString(got[0].TraceId) != tid || hex.EncodeToString(got[0].ParentSpanId) != sid {
		t.Errorf("span trace %x parent %x, want %s %s", got[0].TraceId, got[0].ParentSpanId, tid, sid)
	}
}

func TestHTTPExportFailureCounted(t *testing.T) {
	leak.Check(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such path", http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	client := srv.Client()
	t.Cleanup(client.CloseIdleConnections)
	tr := New(testCfg, NewHTTPExporter(client, srv.URL+"/wrong", ""))
	for range 3 {
		s := tr.StartSpan(Server, http.Header{}, 100, t0)
		s.End(&EndInfo{StatusCode: 200, GRPCStatus: -1}, t0)
	}
	tr.Stop(context.Background())
	if st := tr.Stats(); st != (Stats{SpansStarted: 3, SpansDropped: 3, ExportFailures: 1}) {
		t.Errorf("stats %+v, want 3 started, 3 dropped, 1 failure", st)
	}
}

// A full batch goes out without waiting for the interval or Stop.
func TestBatchSizeTriggersExport(t *testing.T) {
	leak.Check(t)
	rec, exp := grpcCollector(t)
	cfg := testCfg
	cfg.BatchSize = 3
	tr := New(cfg, exp)
	defer tr.Stop(context.Background())
	for range 3 {
		s := tr.StartSpan(Server, http.Header{}, 100, t0)
		s.End(&EndInfo{StatusCode: 200, GRPCStatus: -1}, t0)
	}
	rec.waitSpans(t, 3)
}

// A span alone goes out FlushInterval later.
func TestFlushIntervalExports(t *testing.T) {
	leak.Check(t)
	rec, exp := grpcCollector(t)
	cfg := testCfg
	cfg.FlushInterval = 20 * time.Millisecond
	tr := New(cfg, exp)
	defer tr.Stop(context.Background())
	s := tr.StartSpan(Server, http.Header{}, 100, t0)
	s.End(&EndInfo{StatusCode: 200, GRPCStatus: -1}, t0)
	rec.waitSpans(t, 1)
}

// blockingExporter holds every Export until released.
type blockingExporter struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (b *blockingExporter) Export(ctx context.Context, raw []byte) error {
	b.entered <- struct{}{}
	<-b.release
	var req tracepb.TracesData
	if err := proto.Unmarshal(raw, &req); err != nil {
		return err
	}
	b.mu.Lock()
	b.n += len(req.ResourceSpans[0].ScopeSpans[0].Spans)
	b.mu.Unlock()
	return nil
}

func TestQueueOverflowDropsAndCounts(t *testing.T) {
	leak.Check(t)
	exp := &blockingExporter{entered: make(chan struct{}, 10), release: make(chan struct{})}
	cfg := testCfg
	cfg.QueueSize, cfg.BatchSize = 2, 1
	tr := New(cfg, exp)
	end := func() {
		s := tr.StartSpan(Server, http.Header{}, 100, t0)
		s.End(&EndInfo{StatusCode: 200, GRPCStatus: -1}, t0)
	}
	end()
	<-exp.entered // the goroutine holds span 1 in Export
	for range 5 {
		end() // two fit the queue, three are dropped
	}
	if st := tr.Stats(); st.SpansDropped != 3 || st.SpansStarted != 3 {
		t.Errorf("stats %+v, want 3 queued and 3 dropped", st)
	}
	close(exp.release)
	if err := tr.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exp.n != 3 {
		t.Errorf("exported %d spans, want 3", exp.n)
	}
	end() // after Stop: dropped, not queued
	if st := tr.Stats(); st != (Stats{SpansStarted: 3, SpansExported: 3, SpansDropped: 4}) {
		t.Errorf("stats %+v", st)
	}
}

// Stop's context bounds the final flush: a collector that never answers
// does not hang shutdown.
func TestStopBoundedByContext(t *testing.T) {
	leak.Check(t)
	hang := exporterFunc(func(ctx context.Context, _ []byte) error {
		<-ctx.Done()
		return ctx.Err()
	})
	tr := New(testCfg, hang)
	s := tr.StartSpan(Server, http.Header{}, 100, t0)
	s.End(&EndInfo{StatusCode: 200, GRPCStatus: -1}, t0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := tr.Stop(ctx); err == nil {
		t.Error("Stop returned nil although its flush was cut short")
	}
	if st := tr.Stats(); st.ExportFailures != 1 || st.SpansDropped != 1 {
		t.Errorf("stats %+v, want the span dropped on a failed export", st)
	}
	if err := tr.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

type exporterFunc func(context.Context, []byte) error

func (f exporterFunc) Export(ctx context.Context, req []byte) error { return f(ctx, req) }

// A collector's partial success that rejected spans counts as a failure.
func TestGRPCPartialSuccessCounted(t *testing.T) {
	leak.Check(t)
	rec, exp := grpcCollector(t)
	rec.answer = partialSuccessBytes(1, "bad span")
	tr := New(testCfg, exp)
	s := tr.StartSpan(Server, http.Header{}, 100, t0)
	s.End(&EndInfo{StatusCode: 200, GRPCStatus: -1}, t0)
	tr.Stop(context.Background())
	rec.waitSpans(t, 1)
	if st := tr.Stats(); st != (Stats{SpansStarted: 1, SpansDropped: 1, ExportFailures: 1}) {
		t.Errorf("stats %+v, want the rejected export counted as a failure", st)
	}
}

func partialSuccessBytes(rejected uint64, msg string) []byte {
	var ps []byte
	ps = protowire.AppendTag(ps, 1, protowire.VarintType)
	ps = protowire.AppendVarint(ps, rejected)
	ps = protowire.AppendTag(ps, 2, protowire.BytesType)
	ps = protowire.AppendString(ps, msg)
	var resp []byte
	resp = protowire.AppendTag(resp, 1, protowire.BytesType)
	return protowire.AppendBytes(resp, ps)
}

func TestPartialSuccessIsError(t *testing.T) {
	var ps []byte
	ps = protowire.AppendTag(ps, 1, protowire.VarintType)
	ps = protowire.AppendVarint(ps, 4)
	ps = protowire.AppendTag(ps, 2, protowire.BytesType)
	ps = protowire.AppendString(ps, "too old")
	var resp []byte
	resp = protowire.AppendTag(resp, 1, protowire.BytesType)
	resp = protowire.AppendBytes(resp, ps)
	err := partialSuccess(resp)
	if err == nil || err.Error() != "otlp export: collector rejected 4 span(s): too old" {
		t.Errorf("partialSuccess = %v", err)
	}
	if err := partialSuccess(nil); err != nil {
		t.Errorf("empty response: %v", err)
	}
}

// The access log reads TraceID after End; a second End reports nothing.
func TestEndKeepsTraceIDAndReportsOnce(t *testing.T) {
	leak.Check(t)
	rec, exp := grpcCollector(t)
	tr := New(testCfg, exp)
	s := tr.StartSpan(Server, hdr("traceparent", "00-"+tid+"-"+sid+"-01"), 0, t0)
	info := &EndInfo{StatusCode: 200, GRPCStatus: -1}
	s.End(info, t0)
	s.End(info, t0)
	if got := s.TraceID(); got != tid {
		t.Errorf("TraceID after End = %q, want %q", got, tid)
	}
	tr.Stop(context.Background())
	rec.waitSpans(t, 1)
	if st := tr.Stats(); st != (Stats{SpansStarted: 1, SpansExported: 1}) {
		t.Errorf("stats %+v", st)
	}
}
