package local_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/testing/needs"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// Proxyless gRPC pods through trellis up (helper H9): pods annotated
// inject.istio.io/templates: grpc-agent run grpc-go apps
// (internal/testing/proxylessapp) with no sidecar, their identity and
// xDS bootstrap from trellis up.

var (
	appOnce sync.Once
	appPath string
	appErr  error
)

// proxylessApp builds internal/testing/proxylessapp once per test binary.
func proxylessApp(t *testing.T) string {
	t.Helper()
	appOnce.Do(func() {
		dir, err := os.MkdirTemp("", "trellis-proxylessapp-")
		if err != nil {
			appErr = err
			return
		}
		appPath = filepath.Join(dir, "proxylessapp")
		out, err := exec.Command("go", "build", "-o", appPath, "../testing/proxylessapp").CombinedOutput()
		if err != nil {
			appErr = fmt.Errorf("go build proxylessapp: %v\n%s", err, out)
		}
	})
	if appErr != nil {
		t.Fatal(appErr)
	}
	return appPath
}

// grpcDeployment is a Deployment (and Service when port > 0) named name
// with service account name, running command; proxyless adds Istio's
// grpc-agent annotation, noInject turns injection off.
func grpcDeployment(name string, port int, proxyless, noInject bool, command ...string) string {
	var ann []string
	if proxyless {
		ann = append(ann, "inject.istio.io/templates: grpc-agent")
	}
	if noInject {
		ann = append(ann, `sidecar.istio.io/inject: "false"`)
	}
	q := make([]string, len(command))
	for i, c := range command {
		q[i] = fmt.Sprintf("%q", c)
	}
	y := ""
	if port > 0 {
		y = fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: grpc, port: %[2]d}]
---
`, name, port)
	}
	y += fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata:
      labels: {app: %[1]s}
      annotations: {%[2]s}
    spec:
      serviceAccountName: %[1]s
      containers:
      - name: app
        image: ignored
        command: [%[3]s]
`, name, strings.Join(ann, ", "), strings.Join(q, ", "))
	if port > 0 {
		y += fmt.Sprintf(`        ports: [{containerPort: %[1]d}]
        readinessProbe: {tcpSocket: {port: %[1]d}, periodSeconds: 1}
`, port)
	}
	return y
}

// callResult is one line of proxylessapp call's output.
type callResult struct {
	ServerVersion, ServerID, CallerID, XFCC, Err string
}

// grpcCall runs proxylessapp call in pod (as its container, through
// trellis exec) and returns its one result.
func grpcCall(t *testing.T, m *uptest.Mesh, app, pod string, args ...string) callResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, stderr, _ := m.Trellis(ctx, append([]string{"exec", pod, "--", app, "call", "-timeout", "5s"}, args...)...)
	var r callResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		return callResult{Err: fmt.Sprintf("no result (%v): stdout %q stderr %q", err, out, stderr)}
	}
	return r
}

func spiffe(sa string) string { return "spiffe://cluster.local/ns/default/sa/" + sa }

// Explicit mode: a proxyless client and an xDS-enabled server, each with
// no sidecar and an identity from trellis up: the call runs over mTLS with
// each side seeing the other's SPIFFE ID; a plaintext client is refused
// by the server's listener (tlsMode istio: mTLS only). The server pod's
// folder holds its bootstrap and files (the key 0600), its containers
// have GRPC_XDS_BOOTSTRAP, and the folder is gone with the pod.
func TestUpProxylessGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	app := proxylessApp(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "greeter.yaml"), grpcDeployment("greeter", 7070, true, false, app, "serve", "-xds", "-port", "7070", "-version", "v1"))
	writeFile(t, filepath.Join(dir, "client.yaml"), grpcDeployment("client", 0, true, false, "sleep", "3600"))
	m := uptest.Start(t, dir)

	st := readState(t, m)
	g := pod(t, st, "greeter")
	if g.Sidecar != nil {
		t.Error("greeter runs a sidecar; a grpc-agent pod has none")
	}
	if g.Identity != spiffe("greeter") || g.Labels["security.istio.io/tlsMode"] != "istio" {
		t.Errorf("greeter: identity %q, tlsMode %q; want %s and istio", g.Identity, g.Labels["security.istio.io/tlsMode"], spiffe("greeter"))
	}
	podDir := filepath.Join(m.StateDir, "pods", "default", g.Name)
	for name, mode := range map[string]os.FileMode{"grpc-bootstrap.json": 0o600, "certs/key.pem": 0o600, "certs/cert-chain.pem": 0, "certs/root-cert.pem": 0} {
		fi, err := os.Stat(filepath.Join(podDir, name))
		if err != nil {
			t.Errorf("greeter's %s: %v", name, err)
			continue
		}
		if mode != 0 && fi.Mode().Perm() != mode {
			t.Errorf("greeter's %s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, _, _ := m.Trellis(ctx, "exec", "greeter", "--", "env")
	if want := "GRPC_XDS_BOOTSTRAP=" + filepath.Join(podDir, "grpc-bootstrap.json"); !strings.Contains(env, want+"\n") {
		t.Errorf("greeter's env lacks %s:\n%s", want, env)
	}

	var r callResult
	meshtest.Eventually(t, 30*time.Second, func() string {
		r = grpcCall(t, m, app, "client", "-target", "xds:///greeter:7070", "-xds-creds")
		if r.Err != "" {
			return "client → greeter: " + r.Err
		}
		return ""
	})
	if r.ServerVersion != "v1" || r.ServerID != spiffe("greeter") || r.CallerID != spiffe("client") {
		t.Errorf("client → greeter: %+v; want v1, the server %s and the caller %s over mTLS", r, spiffe("greeter"), spiffe("client"))
	}
	if r := grpcCall(t, m, app, "client", "-target", "xds:///greeter:7070"); r.Err == "" {
		t.Errorf("a plaintext client got through to a server whose listener takes mTLS only: %+v", r)
	}

	c := pod(t, st, "client")
	clientDir := filepath.Join(m.StateDir, "pods", "default", c.Name)
	if _, err := os.Stat(filepath.Join(clientDir, "certs", "key.pem")); err != nil {
		t.Fatalf("client's key: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "client.yaml")); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 30*time.Second, func() string {
		if _, err := os.Stat(clientDir); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("the gone client's folder is still there (%v)", err)
		}
		return ""
	})
}

// Transparent mode, where a sidecar receives what is sent to its pod:
// with mesh-wide STRICT, a proxyless grpc-go client reaches a sidecar'd
// plain grpc-go server over mTLS (the sidecar terminates grpc-go's h2
// mTLS; the app learns the client's SPIFFE ID from the sidecar's XFCC and
// the client verified the sidecar's), a plaintext grpc-go client in a pod
// without a sidecar is refused by that sidecar, and a sidecar'd client's
// plaintext call reaches the proxyless server through its sidecar's
// direct mTLS (the server sees the sidecar's identity).
func TestUpProxylessGRPCTransparent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "transparent mode needs root (CI runs as root)")
	}
	app := proxylessApp(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "greeter.yaml"), grpcDeployment("greeter", 7070, true, false, app, "serve", "-xds", "-port", "7070", "-version", "proxyless"))
	writeFile(t, filepath.Join(dir, "meshed.yaml"), grpcDeployment("meshed", 7070, false, false, app, "serve", "-port", "7070", "-version", "sidecar"))
	writeFile(t, filepath.Join(dir, "client.yaml"), grpcDeployment("client", 0, true, false, "sleep", "3600"))
	writeFile(t, filepath.Join(dir, "sleep.yaml"), grpcDeployment("sleep", 0, false, false, "sleep", "3600"))
	writeFile(t, filepath.Join(dir, "plain.yaml"), grpcDeployment("plain", 0, false, true, "sleep", "3600"))
	writeFile(t, filepath.Join(dir, "strict.yaml"), "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n")
	m := uptest.Start(t, dir, "--transparent")

	var r callResult
	meshtest.Eventually(t, 30*time.Second, func() string {
		r = grpcCall(t, m, app, "client", "-target", "xds:///meshed:7070", "-xds-creds")
		if r.Err != "" {
			return "client → meshed: " + r.Err
		}
		return ""
	})
	if r.ServerVersion != "sidecar" || r.ServerID != spiffe("meshed") || !strings.Contains(r.XFCC, "URI="+spiffe("client")) {
		t.Errorf("proxyless client → sidecar'd server: %+v; want the sidecar %s verified and the app told URI=%s", r, spiffe("meshed"), spiffe("client"))
	}

	meshed := pod(t, readState(t, m), "meshed")
	before := sidecarStat(t, meshed.Sidecar.AdminSocket, "listener.virtualInbound.no_filter_chain_match")
	if r := grpcCall(t, m, app, "plain", "-target", "dns:///meshed.default.svc.cluster.local:7070"); r.Err == "" {
		t.Errorf("a plaintext grpc-go client got through STRICT: %+v", r)
	}
	if after := sidecarStat(t, meshed.Sidecar.AdminSocket, "listener.virtualInbound.no_filter_chain_match"); after <= before {
		t.Errorf("meshed's sidecar counted no refused plaintext connection (%d before, %d after)", before, after)
	}

	meshtest.Eventually(t, 30*time.Second, func() string {
		r = grpcCall(t, m, app, "sleep", "-target", "dns:///greeter.default.svc.cluster.local:7070")
		if r.Err != "" {
			return "sleep → greeter: " + r.Err
		}
		return ""
	})
	if r.ServerVersion != "proxyless" || r.CallerID != spiffe("sleep") {
		t.Errorf("sidecar'd client → proxyless server: %+v; want the server to see the sidecar's %s", r, spiffe("sleep"))
	}
}
