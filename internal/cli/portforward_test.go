package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/local"
)

func TestParsePortSpecs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []portSpec
		err  string
	}{
		{args: []string{"8080:9080"}, want: []portSpec{{8080, "9080"}}},
		{args: []string{"9080"}, want: []portSpec{{9080, "9080"}}},
		{args: []string{":9080", "8081:http"}, want: []portSpec{{0, "9080"}, {8081, "http"}}},
		{args: []string{"x:9080"}, err: `invalid local port "x"`},
		{args: []string{"http"}, err: `invalid local port "http"`},
		{args: []string{"8080:"}, err: `invalid port "8080:"`},
		{args: []string{"8080:70000"}, err: `invalid remote port "70000"`},
		{args: []string{"0:80"}, err: `invalid local port "0"`},
	} {
		got, err := parsePortSpecs(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.args, diff)
		}
	}
}

func TestResolveForward(t *testing.T) {
	web := func(name, ip string, ready bool, version string) local.PodState {
		return local.PodState{
			Name: name, Namespace: "default", Deployment: "web-" + version, IP: ip, Ready: ready,
			Labels: map[string]string{"app": "web", "version": version},
			Containers: []local.ContainerState{
				{Name: "web", Ports: []local.ContainerPort{{Name: "http", ContainerPort: 8000}, {Name: "admin", ContainerPort: 8001}}},
				{Name: "trellis-proxy", Sidecar: true},
			},
		}
	}
	st := &local.State{
		Pods: []local.PodState{
			web("web-v1-0", "127.10.0.2", false, "v1"),
			web("web-v1-1", "127.10.0.3", true, "v1"),
			web("web-v2-0", "127.10.0.4", true, "v2"),
			{Name: "db-0", Namespace: "default", Deployment: "db", IP: "127.10.0.5", Labels: map[string]string{"app": "db"}},
		},
		Services: []local.ServiceState{
			{Name: "web", Namespace: "default", Selector: map[string]string{"app": "web"}, Ports: []local.ServicePort{
				{Name: "http", Port: 80, TargetPort: "http"}, {Name: "admin", Port: 81, TargetPort: "8001"}, {Port: 8000},
			}},
			{Name: "db", Namespace: "default", Selector: map[string]string{"app": "db"}, Ports: []local.ServicePort{{Port: 5432}}},
		},
	}
	for _, tc := range []struct {
		target  string
		ports   []portSpec
		pod     string
		targets []int
		err     string
	}{
		// A Service: its first ready pod; service ports to target ports,
		// named or numbered or the same.
		{target: "svc/web", ports: []portSpec{{0, "80"}, {0, "admin"}, {0, "8000"}}, pod: "web-v1-1", targets: []int{8000, 8001, 8000}},
		{target: "service/web", ports: []portSpec{{0, "81"}}, pod: "web-v1-1", targets: []int{8001}},
		{target: "svc/web", ports: []portSpec{{0, "9999"}}, err: "service web does not have a service port 9999 (its ports: 80, 81, 8000)"},
		{target: "svc/nope", ports: []portSpec{{0, "80"}}, err: `no service "nope" in namespace default (services there: web, db)`},
		{target: "svc/db", ports: []portSpec{{0, "5432"}}, err: "service default/db has no ready pod"},
		// A Deployment: its first ready pod; pod ports.
		{target: "deploy/web-v1", ports: []portSpec{{0, "http"}}, pod: "web-v1-1", targets: []int{8000}},
		{target: "deployment/web-v2", ports: []portSpec{{0, "9000"}}, pod: "web-v2-0", targets: []int{9000}},
		{target: "deploy/db", ports: []portSpec{{0, "1"}}, err: "deployment default/db has no ready pod"},
		// A pod, ready or not.
		{target: "web-v1-0", ports: []portSpec{{0, "admin"}}, pod: "web-v1-0", targets: []int{8001}},
		{target: "pod/web-v1-0", ports: []portSpec{{0, "grpc"}}, err: `pod web-v1-0 has no container port named "grpc"`},
		{target: "gone-0", ports: []portSpec{{0, "1"}}, err: `no pod or deployment "gone-0"`},
		{target: "job/x", ports: []portSpec{{0, "1"}}, err: `cannot forward to "job/x"`},
	} {
		pod, targets, err := resolveForward(st, "default", tc.target, tc.ports)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.target, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.target, err)
			continue
		}
		if pod.Name != tc.pod || !cmp.Equal(targets, tc.targets) {
			t.Errorf("%s: pod %s ports %v, want %s %v", tc.target, pod.Name, targets, tc.pod, tc.targets)
		}
	}
}

// TestForwarderHalfClose checks that a client's end of writing reaches the
// pod's app, which then answers, and that the answer's end reaches the
// client: requests that read to EOF work through port-forward.
func TestForwarderHalfClose(t *testing.T) {
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	appDone := make(chan struct{})
	go func() {
		defer close(appDone)
		c, err := app.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c) // until the client's half-close
		_, _ = c.Write(bytes.ToUpper(req))
	}()

	var out bytes.Buffer
	f := &forwarder{out: &out, errOut: &out, podIP: "127.0.0.1", conns: map[net.Conn]struct{}{}}
	if err := f.listen([]string{"127.0.0.1"}, []portSpec{{0, "x"}}, []int{app.Addr().(*net.TCPAddr).Port}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error)
	go func() { runDone <- f.run(ctx, func() error { return nil }) }()

	c, err := net.Dial("tcp", f.listeners[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "HELLO" {
		t.Errorf("read %q, %v; want HELLO and EOF", got, err)
	}
	<-appDone

	cancel()
	if err := <-runDone; err != nil {
		t.Errorf("run: %v", err)
	}
	if !strings.Contains(out.String(), "Forwarding from 127.0.0.1:") || !strings.Contains(out.String(), "Handling connection for") {
		t.Errorf("printed %q", out.String())
	}
}

// TestCompanionsWithoutMesh checks the messages when no mesh runs: never
// started on the state dir, or stopped.
func TestCompanionsWithoutMesh(t *testing.T) {
	none := t.TempDir()
	stopped := t.TempDir()
	// A mesh.json as a stopped `trellis up` leaves it: its PID is gone.
	if err := os.WriteFile(filepath.Join(stopped, "mesh.json"), []byte(`{"pid": 2147483647, "startTime": 1, "mode": "explicit", "dir": "/src/shop", "pods": null}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args    []string
		code    int
		stdout  string
		stderr  string
		stopped bool
	}{
		{args: []string{"status"}, code: 1, stderr: "error: no mesh in " + none + ": start one with `trellis up DIR`"},
		{args: []string{"status"}, stopped: true, code: 1, stderr: "error: no mesh is running on state dir " + stopped + " (the last one, from /src/shop, has stopped): start it with `trellis up /src/shop`"},
		{args: []string{"status", "-o", "json"}, stopped: true, code: 1, stderr: "no mesh is running"},
		{args: []string{"status", "-o", "yaml"}, code: 1, stderr: `unknown output format "yaml"`},
		{args: []string{"down"}, stopped: true, code: 0, stdout: "no mesh is running on state dir " + stopped + ": nothing to stop"},
		{args: []string{"down"}, code: 1, stderr: "error: no mesh in " + none},
		{args: []string{"logs", "-f", "x"}, stopped: true, code: 1, stderr: "no mesh is running"},
		{args: []string{"logs", "x"}, stopped: true, code: 1, stderr: "holds no log of a pod x"},
		{args: []string{"port-forward", "svc/x", "80"}, stopped: true, code: 1, stderr: "no mesh is running"},
		{args: []string{"port-forward", "svc/x"}, code: 1, stderr: "name a target and at least one port"},
		{args: []string{"exec", "x", "--", "true"}, stopped: true, code: 1, stderr: "error: no mesh is running on state dir " + stopped + " (the last one, from /src/shop, has stopped)"},
	} {
		sd := none
		if tc.stopped {
			sd = stopped
		}
		var out, errOut bytes.Buffer
		// The flag goes right after the command: exec's -- ends its flags.
		args := append([]string{tc.args[0], "--state-dir", sd}, tc.args[1:]...)
		code := Execute(context.Background(), args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errOut.String(), tc.stderr) {
			t.Errorf("trellis %s (stopped %v): exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				strings.Join(tc.args, " "), tc.stopped, code, out.String(), errOut.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

func TestProxySync(t *testing.T) {
	for _, tc := range []struct {
		s    *local.SidecarState
		want string
	}{
		{nil, "-"},
		{&local.SidecarState{}, "NOT SENT"},
		{&local.SidecarState{Connected: true}, "STALE"},
		{&local.SidecarState{Connected: true, Synced: true, NACKs: 1, LastNACK: "old"}, "SYNCED"},
		{&local.SidecarState{Connected: true, NACKs: 2, LastNACK: "listener x:\n bad port"}, "NACK: listener x: bad port"},
	} {
		if got := proxySync(tc.s); got != tc.want {
			t.Errorf("proxySync(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}
