package validate_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config"
)

func TestMeshConfigTelemetry(t *testing.T) {
	cm := func(mesh string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n" + mesh
	}
	runIstioCases(t, []istioCase{
		{name: "valid providers", yaml: cm(`
    defaultProviders: {tracing: [otel], accessLogging: [envoy], metrics: [prometheus]}
    accessLogFile: /dev/stdout
    accessLogEncoding: JSON
    accessLogFormat: '{"code": "%RESPONSE_CODE%"}'
    defaultConfig: {tracing: {sampling: 10}}
    extensionProviders:
    - name: otel
      opentelemetry: {service: otel.istio-system.svc.cluster.local, port: 4317, grpc: {timeout: 1s}}
    - name: otel-http
      opentelemetry: {service: otel.istio-system.svc.cluster.local, port: 4318, http: {path: /v1/traces, headers: [{name: x-token, value: t}]}}
    - name: log
      envoyFileAccessLog: {path: /dev/stdout, logFormat: {labels: {code: "%RESPONSE_CODE%"}}}
`)},
		// istiod logs and ignores a provider name it does not know; the
		// translator warns (telemetry.go), the config loads.
		{name: "an unknown default provider loads", yaml: cm(`
    defaultProviders: {tracing: [nope]}
`)},
		{name: "bad providers", yaml: cm(`
    accessLogEncoding: JSON
    accessLogFormat: 'code=%RESPONSE_CODE%'
    defaultConfig: {tracing: {sampling: 101}}
    extensionProviders:
    - name: otel
      opentelemetry: {port: 0, http: {path: v1/traces}, grpc: {}}
    - name: log
      envoyFileAccessLog: {logFormat: {}}
`), want: []string{
			`x.yaml#1 ConfigMap istio-system/istio: data[mesh].extensionProviders[0].opentelemetry.service: required: the collector's service, as <host> or <namespace>/<host>`,
			`x.yaml#1 ConfigMap istio-system/istio: data[mesh].extensionProviders[0].opentelemetry.port: 0 is not a port: the collector's port, 1..65535`,
			`x.yaml#1 ConfigMap istio-system/istio: data[mesh].extensionProviders[0].opentelemetry.http.path: "v1/traces" must start with /`,
			`x.yaml#1 ConfigMap istio-system/istio: data[mesh].extensionProviders[0].opentelemetry: set http or grpc, not both`,
			`x.yaml#1 ConfigMap istio-system/istio: data[mesh].extensionProviders[1].envoyFileAccessLog.logFormat: set text or labels, or remove logFormat for Istio's default format`,
			`x.yaml#1 ConfigMap istio-system/istio: data[mesh].accessLogFormat: with accessLogEncoding JSON it must be a JSON object of labels: invalid character 'c' looking for beginning of value`,
			`x.yaml#1 ConfigMap istio-system/istio: data[mesh].defaultConfig.tracing.sampling: 101 is not a percentage: must be in 0..100`,
		}},
	})
}

func TestTelemetryValidation(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "sampling out of range, empty provider, tag without a source", yaml: `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: default}
spec:
  tracing:
  - providers: [{name: ""}]
    randomSamplingPercentage: 150
    customTags: {a: {}}
`, want: []string{
			`x.yaml#1 Telemetry default/t: spec.tracing[0].providers[0].name: required`,
			`x.yaml#1 Telemetry default/t: spec.tracing[0].randomSamplingPercentage: 150 is not a percentage: must be in 0..100`,
			`x.yaml#1 Telemetry default/t: spec.tracing[0].customTags[a]: set one of literal, environment, header or formatter`,
		}},
	})
}

// The in-force table names what a Telemetry uses that the sidecars do not
// enforce (CEL filters and UPSERT, targetRef) and nothing else.
func TestTelemetryInForce(t *testing.T) {
	f := config.ParseFile("t.yaml", []byte(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: default}
spec:
  selector: {matchLabels: {app: a}}
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 10
    customTags: {a: {literal: {value: b}}, c: {header: {name: x-c}}}
  accessLogging:
  - providers: [{name: envoy}]
    filter: {expression: "response.code >= 400"}
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
      tagOverrides:
        response_flags: {operation: REMOVE}
        source_app: {operation: UPSERT, value: "'x'"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: /dev/stdout
    defaultProviders: {metrics: [prometheus], tracing: [otel]}
    extensionProviders:
    - name: prometheus
      prometheus: {}
    - name: otel
      opentelemetry: {service: otel.istio-system.svc.cluster.local, port: 4317}
`))
	if len(f.Errors) > 0 {
		t.Fatal(f.Errors)
	}
	var got []string
	for _, o := range f.Objects {
		for _, n := range o.NotInForce {
			got = append(got, o.Kind+" "+n.Path)
		}
	}
	want := []string{
		"Telemetry spec.accessLogging[0].filter",
		"Telemetry spec.metrics[0].overrides[0].tagOverrides[source_app].operation",
		"Telemetry spec.metrics[0].overrides[0].tagOverrides[source_app].value",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("not in force (-want +got):\n%s", d)
	}
}
