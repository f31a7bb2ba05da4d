package metrics

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

var (
	productpage = Workload{Name: "productpage-v1", Namespace: "default", App: "productpage", Version: "v1", CanonicalService: "productpage", CanonicalRevision: "v1", Cluster: "Kubernetes"}
	reviews     = "reviews-v2;default;reviews;v2;reviews;v2;Kubernetes"
)

// parse reads the registry's exposition with Prometheus's own parser,
// so a format error fails the test, and returns each sample as
// "name{sorted labels}" → value.
func parse(t *testing.T, r *Registry) map[string]float64 {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WritePrometheus(&buf); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("Prometheus parser refused the exposition: %v\n%s", err, buf.String())
	}
	out := map[string]float64{}
	key := func(name string, lp []*dto.LabelPair, extra ...string) string {
		var ls []string
		for _, l := range lp {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		ls = append(ls, extra...)
		sort.Strings(ls)
		return name + "{" + strings.Join(ls, ",") + "}"
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key(name, m.GetLabel())] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[key(name+"_count", m.GetLabel())] = float64(h.GetSampleCount())
				out[key(name+"_sum", m.GetLabel())] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[key(name+"_bucket", m.GetLabel(), fmt.Sprintf("le=%g", b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
			default:
				t.Fatalf("%s: unexpected type %v", name, f.GetType())
			}
		}
	}
	return out
}

func labelSet(kv ...string) string {
	var ls []string
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, kv[i]+"="+kv[i+1])
	}
	sort.Strings(ls)
	return "{" + strings.Join(ls, ",") + "}"
}

// The exact series a destination sidecar reports for two requests from
// productpage to reviews over mTLS: every Istio label, Envoy's buckets.
func TestRecordHTTPExposition(t *testing.T) {
	r := New()
	r.FormatFlags = func(uint64) string { return "UF" }
	src := r.Peers.Own(productpage, "spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
	dst := r.Peers.Endpoint(reviews, "spiffe://cluster.local/ns/default/sa/bookinfo-reviews")
	svc := r.Service("reviews.default.svc.cluster.local")
	for _, d := range []time.Duration{3 * time.Millisecond, 70 * time.Millisecond} {
		r.RecordHTTP(&Request{Reporter: Destination, Source: src, Destination: dst, Service: svc, Protocol: HTTP, Security: MutualTLS,
			Code: 200, GRPCStatus: -1, Duration: d, RequestBytes: 300, ResponseBytes: 4000})
	}
	got := parse(t, r)
	ls := []string{"reporter", "destination",
		"source_workload", "productpage-v1", "source_workload_namespace", "default", "source_principal", "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
		"source_app", "productpage", "source_version", "v1", "source_cluster", "Kubernetes", "source_canonical_service", "productpage", "source_canonical_revision", "v1",
		"destination_workload", "reviews-v2", "destination_workload_namespace", "default", "destination_principal", "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
		"destination_app", "reviews", "destination_version", "v2", "destination_cluster", "Kubernetes", "destination_canonical_service", "reviews", "destination_canonical_revision", "v2",
		"destination_service", "reviews.default.svc.cluster.local", "destination_service_name", "reviews", "destination_service_namespace", "default",
		"request_protocol", "http", "response_code", "200", "grpc_response_status", "", "response_flags", "-", "connection_security_policy", "mutual_tls"}
	if n := len(ls) / 2; n != 25 {
		t.Fatalf("test lists %d labels, Istio has 25", n)
	}
	want := map[string]float64{"istio_requests_total" + labelSet(ls...): 2}
	for _, h := range []struct {
		name string
		obs  []float64
		sum  float64
	}{
		{"istio_request_duration_milliseconds", []float64{3, 70}, 73},
		{"istio_request_bytes", []float64{300, 300}, 600},
		{"istio_response_bytes", []float64{4000, 4000}, 8000},
	} {
		for _, b := range Buckets {
			n := 0
			for _, o := range h.obs {
				if o <= b {
					n++
				}
			}
			want[h.name+"_bucket"+labelSet(append(ls, "le", fmt.Sprintf("%g", b))...)] = float64(n)
		}
		want[h.name+"_bucket"+labelSet(append(ls, "le", "+Inf")...)] = 2
		want[h.name+"_count"+labelSet(ls...)] = 2
		want[h.name+"_sum"+labelSet(ls...)] = h.sum
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("series (-want +got):\n%s", d)
	}
}

// gRPC series carry the status and message counts; unknown peers and
// services read "unknown"; the source reports connection security as
// unknown, as Istio's does.
func TestRecordGRPCAndUnknowns(t *testing.T) {
	r := New()
	r.RecordHTTP(&Request{Reporter: Source, Protocol: GRPC, Code: 200, GRPCStatus: 14, RequestMessages: 3, ResponseMessages: 5, Flags: 1})
	got := parse(t, r)
	var req, resp float64
	for k, v := range got {
		if strings.HasPrefix(k, "istio_request_messages_total{") {
			req = v
			for _, l := range []string{"grpc_response_status=14", "request_protocol=grpc", "source_workload=unknown", "destination_service=unknown",
				"destination_principal=unknown", "connection_security_policy=unknown", "reporter=source", "response_flags=1"} {
				if !strings.Contains(k, l) {
					t.Errorf("series %s lacks %s", k, l)
				}
			}
		}
		if strings.HasPrefix(k, "istio_response_messages_total{") {
			resp = v
		}
	}
	if req != 3 || resp != 5 {
		t.Errorf("messages = %v/%v, want 3/5", req, resp)
	}
}

func TestTCP(t *testing.T) {
	r := New()
	c := TCPConn{Reporter: Destination, Source: r.Peers.Endpoint(reviews, ""), Destination: r.Peers.Own(productpage, ""), Service: r.Service("mongo.db.svc.cluster.local"), Security: None}
	s := r.OpenTCP(c)
	s.AddReceived(10)
	s.AddSent(25)
	s.AddSent(5)
	r.CloseTCP(c, 0)
	got := parse(t, r)
	find := func(name string) float64 {
		for k, v := range got {
			if strings.HasPrefix(k, name+"{") {
				if !strings.Contains(k, "request_protocol=tcp") || !strings.Contains(k, "destination_service_namespace=db") || strings.Contains(k, "response_code") {
					t.Errorf("%s: wrong labels", k)
				}
				return v
			}
		}
		t.Errorf("no %s", name)
		return 0
	}
	for name, want := range map[string]float64{TCPOpenedTotal: 1, TCPClosedTotal: 1, TCPSentBytesTotal: 30, TCPReceivedBytesTotal: 10} {
		if got := find(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// Telemetry's overrides: a disabled metric is not written; a removed
// label is dropped and the series it told apart are added together.
func TestConfigOverrides(t *testing.T) {
	r := New()
	for _, code := range []int{200, 503, 503} {
		r.RecordHTTP(&Request{Reporter: Source, Code: code, GRPCStatus: -1})
		r.RecordHTTP(&Request{Reporter: Destination, Code: code, GRPCStatus: -1})
	}
	r.SetConfig(Source, &Config{Disabled: map[string]bool{RequestDuration: true}, Removed: map[string][]string{RequestsTotal: {"response_code", "destination_principal"}}})
	got := parse(t, r)
	counts := map[string]float64{}
	for k, v := range got {
		name, labels, _ := strings.Cut(k, "{")
		rep := "source"
		if strings.Contains(labels, "reporter=destination") {
			rep = "destination"
		}
		if name == "istio_requests_total" {
			counts[rep+" "+fmt.Sprint(strings.Contains(labels, "response_code="))] += v
			if rep == "source" {
				if strings.Contains(labels, "destination_principal") {
					t.Errorf("removed label kept: %s", k)
				}
				if v != 3 {
					t.Errorf("source series = %v, want the 3 requests merged", v)
				}
			}
		}
		if name == "istio_request_duration_milliseconds_count" && rep == "source" {
			t.Errorf("disabled metric written: %s", k)
		}
	}
	if d := cmp.Diff(map[string]float64{"source false": 3, "destination true": 3}, counts); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
}

func TestPeerHeaderRoundTrip(t *testing.T) {
	v := EncodeHeader(productpage, "productpage-v1-0")
	got, err := DecodeHeader(v)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(productpage, got); d != "" {
		t.Errorf("decoded (-want +got):\n%s", d)
	}
	if _, err := DecodeHeader("!!"); err == nil {
		t.Error("garbage decoded")
	}
	var c Peers
	if p := c.Header("!!", ""); p.Name != Unknown {
		t.Errorf("garbage peer = %+v", p.Workload)
	}
	if a, b := c.Header(v, "spiffe://x"), c.Header(v, "spiffe://x"); a != b {
		t.Error("peers not interned")
	}
}

// Label values are escaped as the text format requires.
func TestEscaping(t *testing.T) {
	r := New()
	r.RecordHTTP(&Request{Reporter: Source, Service: r.Service(`we"ird\host` + "\n"), GRPCStatus: -1})
	got := parse(t, r)
	for k := range got {
		if strings.HasPrefix(k, "istio_requests_total") && !strings.Contains(k, "destination_service=we\"ird\\host\n") {
			t.Errorf("escaped value lost: %q", k)
		}
	}
}

func TestClusterService(t *testing.T) {
	for in, want := range map[string]string{
		"outbound|9080|v1|reviews.default.svc.cluster.local": "reviews.default.svc.cluster.local",
		"outbound|9080||reviews.default.svc.cluster.local":   "reviews.default.svc.cluster.local",
		"inbound|9080||":     "",
		"PassthroughCluster": "",
	} {
		if got := ClusterService(in); got != want {
			t.Errorf("ClusterService(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSeriesBound(t *testing.T) {
	r := New()
	for i := range MaxSeries + 10 {
		r.RecordHTTP(&Request{Code: 200, GRPCStatus: -1, Flags: uint64(i)})
	}
	if n := r.overflow.Load(); n != 10 {
		t.Errorf("overflow = %d, want 10", n)
	}
}

// Recording an existing series allocates nothing.
func TestRecordAllocs(t *testing.T) {
	r := New()
	src, dst := r.Peers.Own(productpage, ""), r.Peers.Endpoint(reviews, "")
	q := &Request{Reporter: Source, Source: src, Destination: dst, Service: r.Service("reviews.default.svc.cluster.local"), Code: 200, GRPCStatus: -1, Duration: time.Millisecond}
	r.RecordHTTP(q)
	if n := testing.AllocsPerRun(100, func() { r.RecordHTTP(q) }); n != 0 {
		t.Errorf("RecordHTTP allocates %v times per request", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	r := New()
	src, dst := r.Peers.Own(productpage, ""), r.Peers.Endpoint(reviews, "")
	q := &Request{Reporter: Source, Source: src, Destination: dst, Service: r.Service("reviews.default.svc.cluster.local"), Code: 200, GRPCStatus: -1, Duration: time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.RecordHTTP(q)
		}
	})
}

// The hand-written Struct is the one protobuf's runtime reads, and a
// header an Istio sidecar makes with that runtime decodes here.
func TestPeerHeaderWireCompatible(t *testing.T) {
	raw, _ := base64.StdEncoding.DecodeString(EncodeHeader(productpage, "productpage-v1-0"))
	var st structpb.Struct
	if err := proto.Unmarshal(raw, &st); err != nil {
		t.Fatalf("protobuf cannot read our Struct: %v", err)
	}
	want := map[string]any{"NAME": "productpage-v1-0", "NAMESPACE": "default", "WORKLOAD_NAME": "productpage-v1", "CLUSTER_ID": "Kubernetes",
		"LABELS": map[string]any{"app": "productpage", "version": "v1", "service.istio.io/canonical-name": "productpage", "service.istio.io/canonical-revision": "v1"}}
	if d := cmp.Diff(want, st.AsMap()); d != "" {
		t.Errorf("our Struct (-want +got):\n%s", d)
	}
	istio, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "shop", "WORKLOAD_NAME": "cart", "CLUSTER_ID": "east", "MESH_ID": "m", "APP_CONTAINERS": []any{"cart"},
		"LABELS": map[string]any{"app": "cart", "version": "v3", "pod-template-hash": "abc"}})
	b, _ := proto.Marshal(istio)
	got, err := DecodeHeader(base64.StdEncoding.EncodeToString(b))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Workload{Name: "cart", Namespace: "shop", App: "cart", Version: "v3", CanonicalService: "cart", CanonicalRevision: "v3", Cluster: "east"}, got); d != "" {
		t.Errorf("an Istio sidecar's header (-want +got):\n%s", d)
	}
}

// The destination's principal is the one mesh mTLS proves: in the
// caller's trust domain, only when the caller has a SPIFFE ID and the
// endpoint a sidecar and a service account.
func TestUpstreamPrincipal(t *testing.T) {
	var c Peers
	withID := c.Own(productpage, "spiffe://example.org/ns/default/sa/productpage")
	noID := c.Own(productpage, "")
	for _, tc := range []struct {
		self    *Peer
		sa      string
		meshTLS bool
		want    string
	}{
		{withID, "reviews", true, "spiffe://example.org/ns/default/sa/reviews"},
		{withID, "reviews", false, Unknown},
		{withID, "", true, Unknown},
		{noID, "reviews", true, Unknown},
	} {
		p := c.Upstream(tc.self, reviews, "default", tc.sa, tc.meshTLS)
		if p.Principal != tc.want || p.Name != "reviews-v2" {
			t.Errorf("Upstream(self %s, sa %q, mTLS %v) = %s %s, want %s reviews-v2", tc.self.Principal, tc.sa, tc.meshTLS, p.Principal, p.Name, tc.want)
		}
	}
}
