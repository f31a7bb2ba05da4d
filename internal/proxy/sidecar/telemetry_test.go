package sidecar_test

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

func istioMetricsConfig(base string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2}
spec: {address: %s.2, serviceAccount: reviews, labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}}
`, base)
}

// scrape reads a sidecar's :15090/stats/prometheus with Prometheus's own
// parser and returns the samples of the metrics named, as
// "name{label=value,...}" (labels sorted) → value.
func scrape(t *testing.T, ip string, names ...string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + ip + ":15090/stats/prometheus")
	if err != nil {
		t.Fatalf("scrape %s: %v", ip, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the Prometheus parser refused %s's exposition: %v", ip, err)
	}
	out := map[string]float64{}
	for _, name := range names {
		f := fams[name]
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			v := m.GetCounter().GetValue()
			if f.GetType() == dto.MetricType_HISTOGRAM {
				v = float64(m.GetHistogram().GetSampleCount())
			}
			out[name+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}

func series(name string, kv ...string) string {
	var ls []string
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, kv[i]+"="+kv[i+1])
	}
	sort.Strings(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

// istioLabels are the 25 labels of one request from productpage to
// reviews-v2 over mTLS, as reporter and with that code.
func istioLabels(reporter, code, security string) []string {
	return []string{"reporter", reporter,
		"source_workload", "productpage", "source_workload_namespace", "default", "source_principal", "spiffe://cluster.local/ns/default/sa/productpage",
		"source_app", "productpage", "source_version", "v1", "source_cluster", "Kubernetes", "source_canonical_service", "productpage", "source_canonical_revision", "v1",
		"destination_workload", "reviews-v2", "destination_workload_namespace", "default", "destination_principal", "spiffe://cluster.local/ns/default/sa/reviews",
		"destination_app", "reviews", "destination_version", "v2", "destination_cluster", "Kubernetes", "destination_canonical_service", "reviews", "destination_canonical_revision", "v2",
		"destination_service", "reviews.default.svc.cluster.local", "destination_service_name", "reviews", "destination_service_namespace", "default",
		"request_protocol", "http", "response_code", code, "grpc_response_status", "", "response_flags", "-", "connection_security_policy", security}
}

// Both sidecars of a request report it under Istio's names with every
// label filled: the client learns the destination from the endpoint's
// metadata, the server the source from the tunnel's peer metadata and
// the caller's certificate; the peer-metadata headers never reach the
// app.
func TestIstioMetricsBothSides(t *testing.T) {
	leak.Check(t)
	const base = "127.77.240"
	m := meshtest.New(t, istioMetricsConfig(base), meshtest.WithCA())
	var leaked []string
	m.Backend(base+".2:9080", "reviews", func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if strings.HasPrefix(k, "X-Envoy-Peer-Metadata") || k == "X-Trellis-Destination-Service" {
				leaked = append(leaked, k)
			}
		}
		if r.URL.Path == "/fail" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "reviews")
	})
	serverID := m.Identity("default", "reviews", time.Hour)
	clientID := m.Identity("default", "productpage", time.Hour)
	m.Sidecar("reviews-v2", base+".2", map[string]string{"app": "reviews", "version": "v2"}, m.WithIdentity(serverID))
	client := m.Sidecar("productpage", base+".1", map[string]string{"app": "productpage", "version": "v1"}, m.WithIdentity(clientID))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	meshtest.Eventually(t, 5*time.Second, func() string {
		if code, flags, body, _ := get(c, "http://reviews:9080/warm", nil); code != 200 {
			return fmt.Sprintf("reviews answered %d %s %q", code, flags, body)
		}
		return ""
	})
	// Counted from here: the warm-up's requests are in the first scrape.
	before := map[string]map[string]float64{
		"client": scrape(t, base+".1", "istio_requests_total", "istio_request_duration_milliseconds"),
		"server": scrape(t, base+".2", "istio_requests_total", "istio_request_duration_milliseconds"),
	}
	for range 3 {
		if code, _, _, _ := get(c, "http://reviews:9080/", nil); code != 200 {
			t.Fatalf("GET / = %d", code)
		}
	}
	if code, _, _, _ := get(c, "http://reviews:9080/fail", nil); code != 503 {
		t.Fatalf("GET /fail = %d", code)
	}
	delta := func(who, ip string) map[string]float64 {
		now := scrape(t, ip, "istio_requests_total", "istio_request_duration_milliseconds")
		out := map[string]float64{}
		for k, v := range now {
			if d := v - before[who][k]; d != 0 {
				out[k] = d
			}
		}
		return out
	}
	for _, side := range []struct{ who, ip, reporter, security string }{
		{"client", base + ".1", "source", "unknown"},
		{"server", base + ".2", "destination", "mutual_tls"},
	} {
		want := map[string]float64{
			series("istio_requests_total", istioLabels(side.reporter, "200", side.security)...):                3,
			series("istio_requests_total", istioLabels(side.reporter, "503", side.security)...):                1,
			series("istio_request_duration_milliseconds", istioLabels(side.reporter, "200", side.security)...): 3,
			series("istio_request_duration_milliseconds", istioLabels(side.reporter, "503", side.security)...): 1,
		}
		got := delta(side.who, side.ip)
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s's series after 3 OK and 1 failed request (-want +got):\n%s", side.who, d)
		}
	}
	if len(leaked) > 0 {
		t.Errorf("peer-metadata headers reached the app: %v", leaked)
	}
}

// A request the client's sidecar answers itself before choosing a
// cluster (a fault's abort) is still reported against the service the
// route names, with the flag that says why.
func TestIstioMetricsFaultAbortNamesService(t *testing.T) {
	const base = "127.77.241"
	m := meshtest.New(t, istioMetricsConfig(base)+`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: reviews}}]
`)
	m.Backend(base+".2:9080", "reviews", nil)
	client := m.Sidecar("productpage", base+".1", map[string]string{"app": "productpage", "version": "v1"})
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	meshtest.Eventually(t, 5*time.Second, func() string {
		if code, flags, _, _ := get(c, "http://reviews:9080/", nil); code != 503 || flags != "FI" {
			return fmt.Sprintf("got %d %s, want the fault's 503 FI", code, flags)
		}
		return ""
	})
	for k, v := range scrape(t, base+".1", "istio_requests_total") {
		if !strings.Contains(k, "response_code=503") {
			continue
		}
		if !strings.Contains(k, "destination_service=reviews.default.svc.cluster.local") || !strings.Contains(k, "response_flags=FI") || v < 1 {
			t.Errorf("the aborted requests' series: %s = %v", k, v)
		}
		return
	}
	t.Error("no series for the aborted requests")
}

// A TCP connection through both sidecars is reported by each: opened and
// closed once, its bytes each way, Istio's TCP labels (no response code),
// the source learned from the tunnel's peer metadata.
func TestIstioTCPMetrics(t *testing.T) {
	const base = "127.77.242"
	m := meshtest.New(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp-db, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-v1}
spec: {address: %s.2, serviceAccount: db, labels: {app: db, version: v1, security.istio.io/tlsMode: istio}}
`, base), meshtest.WithCA())
	nameServer(t, base+".2:9000", "db says hello") // 13 bytes, then closes
	m.Sidecar("db-v1", base+".2", map[string]string{"app": "db", "version": "v1"}, m.WithIdentity(m.Identity("default", "db", time.Hour)))
	client := m.Sidecar("productpage", base+".1", map[string]string{"app": "productpage", "version": "v1"}, m.WithIdentity(m.Identity("default", "productpage", time.Hour)))
	m.WaitSynced()
	if got := dbAnswer(t, client); got != "db says hello" {
		t.Fatalf("db answered %q", got)
	}
	names := []string{"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total", "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"}
	for _, side := range []struct{ ip, reporter, security string }{{base + ".1", "source", "unknown"}, {base + ".2", "destination", "mutual_tls"}} {
		ls := []string{"reporter", side.reporter,
			"source_workload", "productpage", "source_workload_namespace", "default", "source_principal", "spiffe://cluster.local/ns/default/sa/productpage",
			"source_app", "productpage", "source_version", "v1", "source_cluster", "Kubernetes", "source_canonical_service", "productpage", "source_canonical_revision", "v1",
			"destination_workload", "db-v1", "destination_workload_namespace", "default", "destination_principal", "spiffe://cluster.local/ns/default/sa/db",
			"destination_app", "db", "destination_version", "v1", "destination_cluster", "Kubernetes", "destination_canonical_service", "db", "destination_canonical_revision", "v1",
			"destination_service", "db.default.svc.cluster.local", "destination_service_name", "db", "destination_service_namespace", "default",
			"request_protocol", "tcp", "response_flags", "-", "connection_security_policy", side.security}
		want := map[string]float64{
			series(names[0], ls...): 1,
			series(names[1], ls...): 1,
			series(names[2], ls...): 13,
			series(names[3], ls...): 0,
		}
		// The close is counted as the copies end, just after the client
		// read the answer: wait for it.
		meshtest.Eventually(t, 5*time.Second, func() string {
			return cmp.Diff(want, scrape(t, side.ip, names...))
		})
	}
}
