package sidecar_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// telemetryConfig names an OTLP collector in MeshConfig, samples 25% of
// requests mesh-wide and turns istio_requests_total off for the sleep
// workload's client side.
const telemetryConfig = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: /dev/null
    accessLogEncoding: JSON
    defaultProviders: {tracing: [otel]}
    extensionProviders:
    - name: otel
      opentelemetry: {service: otel-collector.istio-system.svc.cluster.local, port: 4317}
---
apiVersion: v1
kind: Service
metadata: {name: otel-collector, namespace: istio-system}
spec:
  ports: [{name: grpc-otlp, port: 4317}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{randomSamplingPercentage: 25}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: sleep, namespace: default}
spec:
  selector: {matchLabels: {app: sleep}}
  metrics:
  - overrides: [{match: {metric: REQUEST_COUNT, mode: CLIENT}, disabled: true}]
`

// The sidecars take Telemetry and MeshConfig telemetry as translated (no
// NACK: meshtest fails the test on one), keep serving, and hold the
// resolved config on their chains.
func TestTelemetryConfigReachesSidecars(t *testing.T) {
	m, client := reviewsMesh(t, "127.161.7", 100, 0)
	m.Write("telemetry.yaml", telemetryConfig)
	m.WaitSynced()

	want := &xdsresource.HTTPConnectionManager{
		Tracing: &xdsresource.Tracing{SamplingPercent: 25, ServiceName: "sleep.default", MaxPathTagLength: 256,
			Provider: xdsresource.TracingProvider{Cluster: "outbound|4317||otel-collector.istio-system.svc.cluster.local",
				Authority: "otel-collector.istio-system.svc.cluster.local"}},
		AccessLogs: []xdsresource.AccessLog{{Path: "/dev/null", JSON: true}},
		Stats:      &xdsresource.Stats{Disabled: []string{"istio_requests_total"}},
	}
	meshtest.Eventually(t, 10*time.Second, func() string {
		got := telemetryOf(t, client, "0.0.0.0_9080")
		if got == nil {
			return "no outbound HTTP listener on 9080"
		}
		return cmp.Diff(want, got)
	})
	meshtest.Get(t, client.Client(), "http://reviews:9080/", nil)
}

// telemetryOf is the telemetry of the first HTTP chain of a sidecar's
// listener, read from its applied config (/config_dump's JSON).
func telemetryOf(t *testing.T, p *meshtest.Pod, listener string) *xdsresource.HTTPConnectionManager {
	t.Helper()
	b, err := json.Marshal(p.Proxy.ConfigDump())
	if err != nil {
		t.Fatal(err)
	}
	var dump struct {
		Listeners struct {
			Resources map[string]struct {
				FilterChains []struct {
					HTTP *struct {
						Tracing    *xdsresource.Tracing
						AccessLogs []xdsresource.AccessLog
						Stats      *xdsresource.Stats
					}
				}
			}
		} `json:"listeners"`
	}
	if err := json.Unmarshal(b, &dump); err != nil {
		t.Fatal(err)
	}
	for _, fc := range dump.Listeners.Resources[listener].FilterChains {
		if h := fc.HTTP; h != nil {
			return &xdsresource.HTTPConnectionManager{Tracing: h.Tracing, AccessLogs: h.AccessLogs, Stats: h.Stats}
		}
	}
	return nil
}
