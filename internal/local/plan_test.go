package local

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config"
)

func planYAML(t *testing.T, yaml string) ([]*Workload, []error) {
	t.Helper()
	f := config.ParseFile("app.yaml", []byte(yaml))
	if len(f.Errors) > 0 {
		t.Fatalf("manifest does not validate: %v", f.Errors)
	}
	return Plan(f.Objects)
}

const deployHead = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
`

func TestPlanWorkload(t *testing.T) {
	ws, errs := planYAML(t, `apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {GREETING: hello}
---
`+deployHead+`    spec:
      serviceAccountName: web-sa
      containers:
      - name: web
        image: ignored
        command: [server, "--listen=$(POD_IP):$(PORT)", "$$(PORT)"]
        env:
        - {name: PORT, value: "8080"}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: ADDR
          value: "$(POD_IP):$(PORT)"
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: cfg, key: GREETING}}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(ws) != 1 {
		t.Fatalf("%d workloads, want 1", len(ws))
	}
	w := ws[0]
	if w.Replicas != 2 || w.Pod.ServiceAccount != "web-sa" || !w.Pod.Sidecar || w.Pod.Labels[TLSModeLabel] != "istio" {
		t.Fatalf("workload %+v", w)
	}
	c := w.Pod.Containers[0]
	if c.Readiness == nil || c.Readiness.Port != 8080 || c.Readiness.Path != "/ready" {
		t.Fatalf("readiness probe %+v: want GET /ready on the port named http (8080)", c.Readiness)
	}
	info := podInfo{Name: "web-0", Namespace: "default", IP: "127.10.1.2", ServiceAccount: "web-sa"}
	env := containerEnv([]string{"PATH=/bin", "PORT=1"}, sidecarProxyEnv("127.10.1.2"), info, c)
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	for k, want := range map[string]string{
		"PORT": "8080", "POD_IP": "127.10.1.2", "ADDR": "127.10.1.2:8080", "GREETING": "hello",
		"HTTP_PROXY": "http://127.10.1.2:15001", "HOSTNAME": "web-0", "PATH": "/bin",
	} {
		if got[k] != want {
			t.Errorf("env %s = %q, want %q", k, got[k], want)
		}
	}
	argv := expandCommand(c.Command, env)
	if d := cmp.Diff([]string{"server", "--listen=127.10.1.2:8080", "$(PORT)"}, argv); d != "" {
		t.Errorf("command (-want +got):\n%s", d)
	}
}

func TestPlanInjectOff(t *testing.T) {
	ws, errs := planYAML(t, strings.Replace(deployHead, "labels: {app: web}", "labels: {app: web}\n      annotations: {sidecar.istio.io/inject: \"false\"}", 1)+`    spec:
      containers:
      - {name: web, image: x, command: [server], ports: [{containerPort: 15001}]}
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if ws[0].Pod.Sidecar || ws[0].Pod.Labels[TLSModeLabel] != "" {
		t.Fatalf("inject false still gets a sidecar: %+v", ws[0].Pod)
	}
}

// Everything local mode cannot run is refused with the field's path.
func TestPlanErrors(t *testing.T) {
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"missing command", `      containers:
      - {name: web, image: nginx, args: [--port=80]}
`, "spec.template.spec.containers[0].command: required in local mode: trellis up runs the command as a local process and ignores the image \"nginx\" (args are only the arguments)"},
		{"port clash", `      containers:
      - {name: web, image: x, command: [a], ports: [{containerPort: 8080}]}
      - {name: metrics, image: x, command: [b], ports: [{containerPort: 8080}]}
`, "spec.template.spec.containers[1].ports[0].containerPort: port 8080 is already used in this pod by container \"web\""},
		{"sidecar port", `      containers:
      - {name: web, image: x, command: [a], ports: [{containerPort: 15001}]}
`, "spec.template.spec.containers[0].ports[0].containerPort: port 15001 is already used in this pod by the trellis-proxy sidecar"},
		{"secret", `      containers:
      - name: web
        image: x
        command: [a]
        env: [{name: K, valueFrom: {secretKeyRef: {name: s, key: k}}}]
`, "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef: Secrets are not read in local mode"},
		{"missing config map", `      containers:
      - name: web
        image: x
        command: [a]
        env: [{name: K, valueFrom: {configMapKeyRef: {name: nope, key: k}}}]
`, "ConfigMap default/nope with key \"k\" is not in the folder"},
		{"host network", `      hostNetwork: true
      containers:
      - {name: web, image: x, command: [a]}
`, "spec.template.spec.hostNetwork: not supported in local mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, errs := planYAML(t, deployHead+"    spec:\n"+tc.spec)
			if len(ws) != 0 || len(errs) != 1 {
				t.Fatalf("got %d workloads and errors %v, want one error", len(ws), errs)
			}
			msg := errs[0].Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "Deployment default/web") || !strings.Contains(msg, "app.yaml") {
				t.Fatalf("error %q\nwant it to name the file, the Deployment and contain %q", msg, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)-$(B)": "1-two",
		"$(C)":      "$(C)",
		"$$(A)":     "$(A)",
		"$(A":       "$(A",
		"cost $5":   "cost $5",
		"$":         "$",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// Pods inherit only the minimal base of the user's environment (no proxy
// settings), with the manifests folder and the trellis binary's folder
// first on PATH (secrets_test.go has the rest).
func TestBaseEnv(t *testing.T) {
	got := baseEnv([]string{"HOME=/root", "PATH=/usr/bin:/bin", "HTTP_PROXY=http://corp:3128", "no_proxy=x"}, []string{"/mesh", "/opt/trellis"})
	want := []string{"HOME=/root", "PATH=/mesh:/opt/trellis:/usr/bin:/bin"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
