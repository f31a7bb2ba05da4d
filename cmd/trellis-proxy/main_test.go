package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/proxy/xdsclient"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

const meshYAML = `apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec: {address: 127.78.1.2, labels: {app: reviews, security.istio.io/tlsMode: istio}}
`

// The real binary, sent SIGTERM while it carries requests, lets them
// finish, stops answering readiness, and exits 0.
func TestSIGTERMDrainsTheProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProxy(t)
	m := meshtest.New(t, meshYAML)

	// The app: slow, so requests are in flight when the signal comes.
	appLn, err := net.Listen("tcp", "127.78.1.2:9080")
	if err != nil {
		t.Fatal(err)
	}
	var inFlight sync.WaitGroup
	var arrived = make(chan struct{}, 100)
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "v1")
	})}
	go app.Serve(appLn)
	defer func() { app.Close(); appLn.Close() }()

	// The server pod's sidecar: the binary.
	cmd := exec.Command(bin, "--xds", m.XDSAddr(), "--pod-ip", "127.78.1.2", "--pod-name", "reviews-v1",
		"--labels", "app=reviews", "--drain-duration", "3s")
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("trellis-proxy's log:\n%s", logs.String())
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	waitHTTP(t, "http://127.78.1.2:15021/healthz/ready", http.StatusOK)

	// The client pod's sidecar, in-process.
	ctx, cancel := context.WithCancel(context.Background())
	client := sidecar.New(sidecar.Options{PodIP: netip.MustParseAddr("127.78.1.1"), XDS: m.XDSAddr(),
		Node: xdsclient.Node{Pod: "sleep", Namespace: "default"}, Log: slog.New(slog.DiscardHandler)})
	clientDone := make(chan error, 1)
	go func() { clientDone <- client.Run(ctx) }()
	defer func() { cancel(); <-clientDone }()
	waitHTTP(t, "http://127.78.1.1:15021/healthz/ready", http.StatusOK)

	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "127.78.1.1:15001"})}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	const n = 6
	errs := make(chan error, n)
	for range n {
		inFlight.Add(1)
		go func() {
			defer inFlight.Done()
			resp, err := hc.Get("http://reviews:9080/")
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "v1" {
				errs <- fmt.Errorf("%d %q", resp.StatusCode, b)
			}
		}()
	}
	for range n {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("requests did not reach the app")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	inFlight.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("in-flight request failed during the drain: %v", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("trellis-proxy exited with %v after SIGTERM, want 0", err)
		}
		exited <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("trellis-proxy did not exit after SIGTERM")
	}
}

func waitHTTP(t *testing.T, u string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d (last: %v)", u, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer collects a child's output written from exec's copying
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// buildProxy builds the binary once per test run, into a directory every
// uid can reach (the transparent test runs it as the proxy's uid).
func buildProxy(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "trellis-proxy-bin-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "trellis-proxy")
		if out, err := exec.Command("go", "build", "-o", build.bin, ".").CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		build.err = os.Chmod(build.dir, 0o755)
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}
