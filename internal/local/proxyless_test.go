package local

import "testing"

// A pod template annotated for Istio's grpc-agent template runs without a
// sidecar, as a proxyless pod, labelled tlsMode istio unless it sets the
// label itself; sidecar.istio.io/inject: "false" still means no mesh at
// all; a sidecar pod is not proxyless.
func TestPlanProxyless(t *testing.T) {
	for _, tc := range []struct {
		name, meta         string
		sidecar, proxyless bool
		tlsMode            string
	}{
		{"grpc-agent", `labels: {app: web}
      annotations: {inject.istio.io/templates: grpc-agent}`, false, true, "istio"},
		{"label kept", `labels: {app: web, security.istio.io/tlsMode: disabled}
      annotations: {inject.istio.io/templates: grpc-agent}`, false, true, "disabled"},
		{"inject off", `labels: {app: web}
      annotations: {inject.istio.io/templates: grpc-agent, sidecar.istio.io/inject: "false"}`, false, false, ""},
		{"sidecar", `labels: {app: web}
      annotations: {inject.istio.io/templates: sidecar}`, true, false, "istio"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, errs := planYAML(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      `+tc.meta+`
    spec:
      containers: [{name: web, image: ignored, command: [server]}]
`)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			pt := ws[0].Pod
			if pt.Sidecar != tc.sidecar || pt.Proxyless != tc.proxyless || pt.Labels[TLSModeLabel] != tc.tlsMode {
				t.Errorf("sidecar %v, proxyless %v, tlsMode %q; want %v, %v, %q", pt.Sidecar, pt.Proxyless, pt.Labels[TLSModeLabel], tc.sidecar, tc.proxyless, tc.tlsMode)
			}
		})
	}
}
