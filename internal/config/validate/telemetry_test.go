package validate_test

import "testing"

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
