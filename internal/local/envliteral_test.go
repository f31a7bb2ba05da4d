package local

import "testing"

// The kubelet expands $(VAR) only in env[].value, command and args
// (EnvVar.value: "Variable references $(VAR_NAME) are expanded using the
// previously defined environment variables in the container"); values taken
// from a ConfigMap, by envFrom or configMapKeyRef, are used as they are.
func TestConfigMapValuesNotExpanded(t *testing.T) {
	env := containerEnvMap(t, `apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {TEMPLATE: "$(GREETING) world", ONE: "$(GREETING)"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: x
        command: [server]
        envFrom: [{configMapRef: {name: cfg}}]
        env:
        - {name: GREETING, value: hello}
        - {name: FROM_KEY, valueFrom: {configMapKeyRef: {name: cfg, key: ONE}}}
        - {name: EXPANDED, value: "$(GREETING) there"}
`, podInfo{Name: "web-0", Namespace: "default", IP: "127.10.0.2"})
	for k, want := range map[string]string{"TEMPLATE": "$(GREETING) world", "FROM_KEY": "$(GREETING)", "EXPANDED": "hello there"} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
}
