package sidecar_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// withMeshLines adds lines to the MeshConfig of tracingMeshConfig.
func withMeshLines(config string, lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("    " + l + "\n")
	}
	return strings.Replace(config, "    defaultProviders:", b.String()+"    defaultProviders:", 1)
}

// ratingsNoEndpoints is a Service nobody serves: the client's sidecar
// answers 503 with response flag UH (no healthy upstream).
const ratingsNoEndpoints = `---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
`

// logLines are the JSON access-log lines in file whose path is path.
func logLines(t *testing.T, file, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("access log line %q is not JSON: %v", line, err)
		}
		if e["path"] == path {
			out = append(out, e)
		}
	}
	return out
}

// waitLogLines polls (logs flush every second) until n lines of path are
// in file.
func waitLogLines(t *testing.T, file, path string, n int) []map[string]any {
	t.Helper()
	var got []map[string]any
	meshtest.Eventually(t, 5*time.Second, func() string {
		got = logLines(t, file, path)
		if len(got) < n {
			return fmt.Sprintf("%s has %d access-log lines of %s, want %d", file, len(got), path, n)
		}
		return ""
	})
	return got
}

func byDirection(t *testing.T, lines []map[string]any) (in, out map[string]any) {
	t.Helper()
	for _, l := range lines {
		switch l["direction"] {
		case "inbound":
			if in != nil {
				t.Errorf("two inbound lines: %v and %v", in, l)
			}
			in = l
		case "outbound":
			if out != nil {
				t.Errorf("two outbound lines: %v and %v", out, l)
			}
			out = l
		default:
			t.Errorf("line with direction %v: %v", l["direction"], l)
		}
	}
	return in, out
}

// pick is the string form of keys of a JSON log line.
func pick(l map[string]any, keys ...string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		out[k] = fmt.Sprint(l[k])
	}
	return out
}

// With MeshConfig accessLogFile and JSON encoding, one request through
// two sidecars is one line from each, with Istio's keys: the client's
// outbound line names the service's cluster, the server's inbound line the
// caller's principal, both the request id the app saw and the trace id
// of the spans. A request to a service without endpoints logs the
// client's 503 with UH.
func TestAccessLogJSONBothSidecars(t *testing.T) {
	const base = "127.162.4"
	logFile := filepath.Join(t.TempDir(), "access.log")
	col := grpcCollectorAt(t, base+".9:4317")
	config := withMeshLines(tracingMeshConfig(base, "", 100), "accessLogFile: "+logFile, "accessLogEncoding: JSON") + ratingsNoEndpoints
	_, client, _, s := startTracingMesh(t, base, config)
	c := client.Client()

	if code, _, _, _ := get(c, "http://reviews:9080/logged", nil); code != 200 {
		t.Fatalf("GET /logged = %d", code)
	}
	rid := s.get("/logged").Get("X-Request-Id")
	in, out := byDirection(t, waitLogLines(t, logFile, "/logged", 2))
	if in == nil || out == nil {
		t.Fatalf("want one inbound and one outbound line, got inbound %v outbound %v", in, out)
	}
	// Envoy's bytes of an HTTP stream are its body's: none up, "reviews"
	// down.
	keys := []string{"method", "path", "response_code", "response_flags", "request_id", "upstream_cluster", "downstream_peer_principal", "authority", "bytes_received", "bytes_sent"}
	wantOut := map[string]string{"method": "GET", "path": "/logged", "response_code": "200", "response_flags": "-", "request_id": rid, "bytes_received": "0", "bytes_sent": "7",
		"upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local", "downstream_peer_principal": "", "authority": "reviews:9080"}
	if d := cmp.Diff(wantOut, pick(out, keys...)); d != "" {
		t.Errorf("client's outbound line (-want +got):\n%s\nline: %v", d, out)
	}
	wantIn := map[string]string{"method": "GET", "path": "/logged", "response_code": "200", "response_flags": "-", "request_id": rid, "bytes_received": "0", "bytes_sent": "7",
		"upstream_cluster": "inbound|9080||", "downstream_peer_principal": "cluster.local/ns/default/sa/productpage", "authority": "reviews:9080"}
	if d := cmp.Diff(wantIn, pick(in, keys...)); d != "" {
		t.Errorf("server's inbound line (-want +got):\n%s\nline: %v", d, in)
	}
	for _, l := range []map[string]any{in, out} {
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", fmt.Sprint(l["start_time"])); err != nil {
			t.Errorf("start_time %v is not RFC3339 with ms in UTC: %v", l["start_time"], err)
		}
		for _, k := range []string{"downstream_local_address", "downstream_remote_address"} {
			if v, ok := l[k].(string); l[k] != nil && (!ok || strings.Contains(v, "invalid")) {
				t.Errorf("%s %s = %v, want an address or null", l["direction"], k, l[k])
			}
		}
		if l["upstream_host"] != base+".2:9080" {
			t.Errorf("%s upstream_host = %v, want %s.2:9080", l["direction"], l["upstream_host"], base)
		}
	}
	cs, ss := waitTrace(t, col, "/logged")
	if got, want := out["trace_id"], hex.EncodeToString(cs.TraceId); got != want {
		t.Errorf("client's line trace_id = %v, want its span's %s", got, want)
	}
	if got, want := in["trace_id"], hex.EncodeToString(ss.TraceId); got != want {
		t.Errorf("server's line trace_id = %v, want its span's %s", got, want)
	}

	if code, _, _, _ := get(c, "http://ratings:9080/nobody", nil); code != 503 {
		t.Fatalf("GET ratings/nobody = %d, want 503", code)
	}
	l := waitLogLines(t, logFile, "/nobody", 1)
	if len(l) != 1 {
		t.Fatalf("want one line for /nobody, got %v", l)
	}
	if d := cmp.Diff(map[string]string{"response_code": "503", "response_flags": "UH", "direction": "outbound",
		"upstream_cluster": "outbound|9080||ratings.default.svc.cluster.local"},
		pick(l[0], "response_code", "response_flags", "direction", "upstream_cluster")); d != "" {
		t.Errorf("line of a request without endpoints (-want +got):\n%s\nline: %v", d, l[0])
	}
}

// Without accessLogEncoding the lines are in Istio's default TEXT format.
func TestAccessLogTextDefault(t *testing.T) {
	const base = "127.162.5"
	logFile := filepath.Join(t.TempDir(), "access.log")
	grpcCollectorAt(t, base+".9:4317")
	_, client, _, s := startTracingMesh(t, base, withMeshLines(tracingMeshConfig(base, "", 0), "accessLogFile: "+logFile))
	if code, _, _, _ := get(client.Client(), "http://reviews:9080/text", nil); code != 200 {
		t.Fatalf("GET /text = %d", code)
	}
	rid := s.get("/text").Get("X-Request-Id")
	// [start] "GET /text HTTP/1.1" 200 - via_upstream - "-" 0 7 N N "-"
	// "Go-http-client/1.1" "rid" "reviews:9080" "upstream host" cluster ...
	re := regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /text HTTP/1\.1" 200 - \S+ - "-" 0 7 \d+ \S+ "[^"]*" "Go-http-client/1\.1" "` +
		regexp.QuoteMeta(rid) + `" "reviews:9080" "` + regexp.QuoteMeta(base+".2:9080") + `" (\S+) `)
	meshtest.Eventually(t, 5*time.Second, func() string {
		b, _ := os.ReadFile(logFile)
		clusters := map[string]bool{}
		for line := range strings.SplitSeq(string(b), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				clusters[m[1]] = true
			}
		}
		want := map[string]bool{"outbound|9080||reviews.default.svc.cluster.local": true, "inbound|9080||": true}
		if d := cmp.Diff(want, clusters); d != "" {
			return fmt.Sprintf("TEXT lines of /text by cluster (-want +got):\n%s\nfile:\n%s", d, b)
		}
		return ""
	})
}

// A workload's Telemetry turns its own access log off while the mesh's
// accessLogFile keeps the others', and a metrics override disabling
// REQUEST_COUNT for CLIENT mode takes istio_requests_total off the
// client's reports only.
func TestTelemetryDisablesPerWorkload(t *testing.T) {
	const base = "127.162.6"
	logFile := filepath.Join(t.TempDir(), "access.log")
	config := istioMetricsConfig(base) + fmt.Sprintf(`---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: %s
    accessLogEncoding: JSON
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-quiet, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging: [{disabled: true}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: no-client-count, namespace: istio-system}
spec:
  metrics:
  - overrides: [{match: {metric: REQUEST_COUNT, mode: CLIENT}, disabled: true}]
`, logFile)
	_, client, _, _ := startTracingMesh(t, base, config)
	c := client.Client()
	for _, path := range []string{"/quiet1", "/quiet2"} {
		if code, _, _, _ := get(c, "http://reviews:9080"+path, nil); code != 200 {
			t.Fatalf("GET %s = %d", path, code)
		}
	}
	// Both sidecars of this process write the file through one buffer,
	// and the server had ended /quiet1 before /quiet2 was sent: once the
	// client's /quiet2 line is there, a server line of /quiet1 would be.
	waitLogLines(t, logFile, "/quiet2", 1)
	for _, path := range []string{"/quiet1", "/quiet2"} {
		in, out := byDirection(t, logLines(t, logFile, path))
		if out == nil {
			t.Errorf("no client (outbound) line for %s", path)
		}
		if in != nil {
			t.Errorf("the server logged %s with its access log disabled: %v", path, in)
		}
	}

	var dest float64
	for k, v := range scrape(t, base+".1", "istio_requests_total") {
		t.Errorf("client reports %s = %v with REQUEST_COUNT off for CLIENT", k, v)
	}
	for k, v := range scrape(t, base+".2", "istio_requests_total") {
		if strings.Contains(k, "reporter=destination") && strings.Contains(k, "response_code=200") {
			dest += v
		}
	}
	// /warm (at least once), /quiet1 and /quiet2.
	if dest < 3 {
		t.Errorf("server reports %v requests, want at least 3: the override is for CLIENT only", dest)
	}
	// The client still reports the rest of Istio's metrics.
	if len(scrape(t, base+".1", "istio_request_duration_milliseconds")) == 0 {
		t.Error("client reports no istio_request_duration_milliseconds; only REQUEST_COUNT was disabled")
	}
}
