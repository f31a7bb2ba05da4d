package registry

import "testing"

// Pods and WorkloadEntries asking for Istio's grpc-agent template (alone
// or among others) are proxyless endpoints; others, and a template of
// another name, are not.
func TestProxylessEndpoints(t *testing.T) {
	r := build(t, `apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: default}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 7070}]
---
apiVersion: v1
kind: Pod
metadata:
  name: proxyless
  namespace: default
  labels: {app: greeter}
  annotations: {inject.istio.io/templates: "grpc-agent"}
spec: {containers: [{name: app, image: app}]}
status: {podIP: 10.0.0.1, phase: Running}
---
apiVersion: v1
kind: Pod
metadata:
  name: listed
  namespace: default
  labels: {app: greeter}
  annotations: {inject.istio.io/templates: "custom, grpc-agent"}
spec: {containers: [{name: app, image: app}]}
status: {podIP: 10.0.0.2, phase: Running}
---
apiVersion: v1
kind: Pod
metadata:
  name: sidecar
  namespace: default
  labels: {app: greeter}
  annotations: {inject.istio.io/templates: "sidecar"}
spec: {containers: [{name: app, image: app}]}
status: {podIP: 10.0.0.3, phase: Running}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vm
  namespace: default
  annotations: {inject.istio.io/templates: grpc-agent}
spec: {address: 10.0.0.4, labels: {app: greeter}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-sidecar, namespace: default}
spec: {address: 10.0.0.5, labels: {app: greeter}}
`)
	got := map[string]bool{}
	for _, in := range mustLookup(t, r, "greeter", "default").Instances[7070] {
		got[in.Workload] = in.Proxyless
	}
	want := map[string]bool{"proxyless": true, "listed": true, "sidecar": false, "vm": true, "vm-sidecar": false}
	for w, p := range want {
		if v, ok := got[w]; !ok || v != p {
			t.Errorf("%s: Proxyless %v (present %v), want %v", w, v, ok, p)
		}
	}
}
