package controlplane_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

const metricsMesh = `apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
`

// The control plane serves istiod's metrics on its monitoring port: a
// certificate issued, a sidecar connected and converged after a change, a
// NACK from another client, and an invalid object are each counted under
// istiod's name, labels and value.
func TestControlPlaneMetrics(t *testing.T) {
	mon, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := meshtest.New(t, metricsMesh, meshtest.WithCA(), meshtest.WithControlPlane(func(o *controlplane.Options) { o.MonitoringListener = mon }))
	cp := m.ControlPlane()
	if got, want := cp.MonitoringAddr().String(), mon.Addr().String(); got != want {
		t.Fatalf("MonitoringAddr = %s, want %s", got, want)
	}
	url := "http://" + mon.Addr().String() + "/metrics"

	id := m.Identity("default", "sleep", 0)
	m.Sidecar("sleep", "127.91.16.2", map[string]string{"app": "sleep"}, m.WithIdentity(id))
	m.WaitSynced()

	root, _ := pem.Decode(cp.RootCertPEM())
	rc, err := x509.ParseCertificate(root.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	got := scrape(t, url)
	want := map[string]float64{
		"citadel_server_csr_count":                   1,
		"citadel_server_success_cert_issuance_count": 1,
		"citadel_server_root_cert_expiry_timestamp":  float64(rc.NotAfter.Unix()),
		`pilot_xds{version="unknown"}`:               1,
		"pilot_services":                             1,
		"pilot_virt_services":                        1,
		"pilot_total_xds_internal_errors":            0,
	}
	if diff := cmp.Diff(want, pick(got, want)); diff != "" {
		t.Errorf("after one certificate and one sidecar (-want +got):\n%s", diff)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing: Go runtime and process collectors not registered", name)
		}
	}
	// Every delta response is counted once and timed once.
	var pushes float64
	for _, typ := range []string{"cds", "eds", "lds", "rds"} {
		n := got[`pilot_xds_pushes{type="`+typ+`"}`]
		if n < 1 {
			t.Errorf("pilot_xds_pushes{type=%q} = %v, want >= 1", typ, n)
		}
		if c := got[`pilot_xds_push_time_count{type="`+typ+`"}`]; c != n {
			t.Errorf("pilot_xds_push_time_count{type=%q} = %v, want %v (one per push)", typ, c, n)
		}
		pushes += n
	}
	if c := got["pilot_xds_send_time_count"]; c != pushes {
		t.Errorf("pilot_xds_send_time_count = %v, want %v", c, pushes)
	}

	// A change reaches the sidecar: its route push is counted and the
	// debounced push observed from the change on.
	before := scrape(t, url)
	m.Write("mesh.yaml", strings.Replace(metricsMesh, "  - route:", "  - timeout: 3s\n    route:", 1))
	m.WaitSynced()
	meshtest.Eventually(t, 5*time.Second, func() string {
		after := scrape(t, url)
		if d := after["pilot_proxy_convergence_time_count"] - before["pilot_proxy_convergence_time_count"]; d < 1 {
			return "no convergence observed for the change"
		}
		if d := after[`pilot_xds_pushes{type="rds"}`] - before[`pilot_xds_pushes{type="rds"}`]; d < 1 {
			return "no route push counted for the change"
		}
		return ""
	})

	// A NACK from a second client: the total by type and istiod's per-type
	// gauge by node and error code; both go when the client does.
	m.AllowNACKs("this test sends one to count it")
	node := "sidecar~127.91.16.3~nacker.default~default.svc.cluster.local"
	closeNacker := meshtest.NACKClusters(t, m.XDSAddr(), node)
	meshtest.Eventually(t, 5*time.Second, func() string {
		got := scrape(t, url)
		want := map[string]float64{
			`pilot_total_xds_rejects{type="cds"}`:               1,
			`pilot_xds_cds_reject{err="3",node="` + node + `"}`: 1,
			`pilot_xds{version="unknown"}`:                      2,
		}
		return cmp.Diff(want, pick(got, want))
	})
	closeNacker()
	meshtest.Eventually(t, 5*time.Second, func() string {
		got := scrape(t, url)
		if n := got[`pilot_xds{version="unknown"}`]; n != 1 {
			return fmt.Sprintf("pilot_xds = %v after the NACKing client left, want 1", n)
		}
		for k := range got {
			if strings.HasPrefix(k, "pilot_xds_cds_reject{") {
				return "reject gauge kept after its proxy left: " + k
			}
		}
		return ""
	})

	// An invalid object is rejected and counted by kind; the last good
	// version stays (pilot_virt_services unchanged).
	m.Write("vs2.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings.example.com]
  http:
  - route:
    - destination: {host: reviews}
      weight: -1
`)
	meshtest.Eventually(t, 5*time.Second, func() string {
		got := scrape(t, url)
		want := map[string]float64{`pilot_total_rejected_configs{type="VirtualService"}`: 1, "pilot_virt_services": 1}
		return cmp.Diff(want, pick(got, want))
	})
}

// scrape reads url with the Prometheus text parser into one value per
// series, keyed name{label="value",...} (labels sorted); histograms give
// _count and _sum.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, mt := range f.GetMetric() {
			key := func(n string) string { return n + labels(mt.GetLabel()) }
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key(name)] = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(name)] = mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key(name+"_count")] = float64(mt.GetHistogram().GetSampleCount())
				out[key(name+"_sum")] = mt.GetHistogram().GetSampleSum()
			default:
				out[key(name)] = mt.GetUntyped().GetValue()
			}
		}
	}
	return out
}

func labels(ls []*dto.LabelPair) string {
	if len(ls) == 0 {
		return ""
	}
	s := make([]string, 0, len(ls))
	for _, l := range ls {
		s = append(s, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(s)
	return "{" + strings.Join(s, ",") + "}"
}

// pick is got restricted to want's keys (a missing series is left out,
// so the diff shows it).
func pick(got, want map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k := range want {
		if v, ok := got[k]; ok {
			out[k] = v
		}
	}
	return out
}
