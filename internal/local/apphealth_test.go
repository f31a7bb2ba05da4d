package local

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const probedPod = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}ANNOTATIONS}
    spec:
      containers:
      - name: web
        image: x
        command: [server]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http, scheme: HTTPS, host: example.test, httpHeaders: [{name: X-Probe, value: r}]}
          timeoutSeconds: 3
          periodSeconds: 2
          failureThreshold: 5
        livenessProbe:
          tcpSocket: {port: 8080}
        startupProbe:
          exec: {command: [check]}
      - name: rpc
        image: x
        command: [rpc-server]
        ports: [{containerPort: 9090}]
        readinessProbe:
          grpc: {port: 9090, service: my.Health}
        livenessProbe:
          grpc: {port: 9090}
`

// A meshed pod's httpGet, tcpSocket and grpc probes go to the sidecar's
// 15020 /app-health/CONTAINER/KIND, keeping their timing, and the
// sidecar gets the original probes in ISTIO_KUBE_APP_PROBERS (named ports
// resolved, gRPC with its service); exec probes stay, as Istio's
// injector leaves them.
func TestAppProbesRewritten(t *testing.T) {
	w := onlyWorkload(t, strings.Replace(probedPod, "ANNOTATIONS", "", 1))
	s := &supervisor{dir: "/mesh", stateDir: t.TempDir(), mode: "explicit", proxyPath: "/bin/trellis-proxy"}
	p := s.newPod(w, "web-0", netip.MustParseAddr("127.10.0.9"))

	web, rpc := p.apps[0].spec, p.apps[1].spec
	want := &Probe{HTTPGet: true, Port: 15020, Path: "/app-health/web/readyz", Scheme: "HTTP", Headers: [][2]string{{"X-Probe", "r"}},
		Period: 2 * time.Second, Timeout: 3 * time.Second, SuccessThreshold: 1, FailureThreshold: 5}
	if d := cmp.Diff(want, web.Readiness); d != "" {
		t.Errorf("web's readiness probe (-want +got):\n%s", d)
	}
	for name, got := range map[string]*Probe{"web livez": web.Liveness, "rpc readyz": rpc.Readiness, "rpc livez": rpc.Liveness} {
		kind := strings.Fields(name)
		if !got.HTTPGet || got.TCP || got.Port != 15020 || got.Path != "/app-health/"+kind[0]+"/"+kind[1] {
			t.Errorf("%s probe %+v, want an HTTP GET of 15020 /app-health/%s/%s", name, got, kind[0], kind[1])
		}
	}
	if len(web.Startup.Exec) != 1 || web.Startup.HTTPGet {
		t.Errorf("web's exec startup probe was rewritten: %+v", web.Startup)
	}
	// The workload itself is untouched (other pods of it, a re-plan).
	if w.Pod.Containers[0].Readiness.Port != 8080 {
		t.Errorf("the workload's probe was changed in place: %+v", w.Pod.Containers[0].Readiness)
	}

	var probers map[string]any
	for _, kv := range p.sidecar.env {
		if v, ok := strings.CutPrefix(kv, "ISTIO_KUBE_APP_PROBERS="); ok {
			if err := json.Unmarshal([]byte(v), &probers); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantProbers := map[string]any{
		"/app-health/web/readyz": map[string]any{"httpGet": map[string]any{"path": "/ready", "port": 8080.0, "host": "example.test", "scheme": "HTTPS",
			"httpHeaders": []any{map[string]any{"name": "X-Probe", "value": "r"}}}, "timeoutSeconds": 3.0},
		"/app-health/web/livez":  map[string]any{"tcpSocket": map[string]any{"port": 8080.0}, "timeoutSeconds": 1.0},
		"/app-health/rpc/readyz": map[string]any{"grpc": map[string]any{"port": 9090.0, "service": "my.Health"}, "timeoutSeconds": 1.0},
		"/app-health/rpc/livez":  map[string]any{"grpc": map[string]any{"port": 9090.0, "service": ""}, "timeoutSeconds": 1.0},
	}
	if d := cmp.Diff(wantProbers, probers); d != "" {
		t.Errorf("the sidecar's ISTIO_KUBE_APP_PROBERS (-want +got):\n%s", d)
	}
}

// Without a sidecar, or with sidecar.istio.io/rewriteAppHTTPProbers:
// "false", probes stay as written and the sidecar gets none.
func TestAppProbesKept(t *testing.T) {
	for name, ann := range map[string]string{
		"no sidecar":  `, annotations: {sidecar.istio.io/inject: "false"}`,
		"rewrite off": `, annotations: {sidecar.istio.io/rewriteAppHTTPProbers: "false"}`,
	} {
		t.Run(name, func(t *testing.T) {
			w := onlyWorkload(t, strings.Replace(probedPod, "ANNOTATIONS", ann, 1))
			s := &supervisor{dir: "/mesh", stateDir: t.TempDir(), mode: "explicit", proxyPath: "/bin/trellis-proxy"}
			p := s.newPod(w, "web-0", netip.MustParseAddr("127.10.0.9"))
			if got := p.apps[0].spec.Readiness; got.Port != 8080 || got.Path != "/ready" || got.Scheme != "HTTPS" {
				t.Errorf("readiness probe %+v, want the one written", got)
			}
			if got := p.apps[1].spec.Liveness; !got.TCP || got.Port != 9090 {
				t.Errorf("grpc liveness probe %+v, want the planned TCP check of 9090", got)
			}
			if p.sidecar != nil {
				for _, kv := range p.sidecar.env {
					if strings.HasPrefix(kv, "ISTIO_KUBE_APP_PROBERS=") {
						t.Errorf("the sidecar got %s", kv)
					}
				}
			}
		})
	}
}
