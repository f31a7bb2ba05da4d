//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/redirect"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/testing/needs"
	testnetns "github.com/trellismesh/trellis/internal/testing/netns"
)

// proxyUID is the sidecar's uid, as Istio's 1337: the capture rules let
// its own connections through.
const proxyUID = 1337

// Transparent mode, end to end: two pod network namespaces joined by a
// veth, each with nftables capture and the real trellis-proxy binary
// running as uid 1337. The client app dials the Service's virtual IP with
// no proxy settings; its sidecar captures the connection, routes it and
// dials the server pod, whose sidecar captures it inbound and hands it to
// the app from 127.0.0.6. Everything lives inside the namespaces the test
// creates; the control plane is reached over a Unix socket.
func TestTransparentModeInNetns(t *testing.T) {
	transparentMesh(t, family{client: "10.244.0.5", server: "10.244.0.6", prefix: "/24", vip: "10.96.0.20", vipNet: "10.96.0.0/16", inbound: "127.0.0.6"})
}

// The same over IPv6: capture, SO_ORIGINAL_DST and the inbound
// passthrough source (::6) in their IPv6 forms.
func TestTransparentModeInNetnsIPv6(t *testing.T) {
	transparentMesh(t, family{client: "fd00:244::5", server: "fd00:244::6", prefix: "/64", vip: "fd00:96::20", vipNet: "fd00:96::/64", inbound: "[::6]"})
}

// family is one address family's pod IPs, Service VIP and the address
// the app sees inbound traffic come from.
type family struct {
	client, server, prefix, vip, vipNet, inbound string
}

func transparentMesh(t *testing.T, f family) {
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root (network namespaces, nftables, setuid); CI runs as root")
	}
	for _, tool := range []string{"ip", "nsenter", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			needs.Skip(t, "needs %s", tool)
		}
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	client := netns(t, "trellis-tp-"+id+"-a")
	server := netns(t, "trellis-tp-"+id+"-b")
	cn, sn := filepath.Base(client), filepath.Base(server)
	ip(t, "-n", cn, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", sn)
	// nodad: an IPv6 address is usable at once instead of after
	// duplicate address detection.
	v6 := strings.Contains(f.client, ":")
	addrArgs := func(a string) []string {
		args := []string{"addr", "add", a + f.prefix, "dev", "veth0"}
		if v6 {
			args = append(args, "nodad")
		}
		return args
	}
	ip(t, append([]string{"-n", cn}, addrArgs(f.client)...)...)
	ip(t, append([]string{"-n", sn}, addrArgs(f.server)...)...)
	ip(t, "-n", cn, "link", "set", "veth0", "up")
	ip(t, "-n", sn, "link", "set", "veth0", "up")
	if v6 {
		// The inbound passthrough source: IPv6 loopback is ::1 alone, so
		// pod setup adds ::6, as istio-iptables does.
		for _, ns := range []string{cn, sn} {
			ip(t, "-n", ns, "-6", "addr", "add", "::6/128", "dev", "lo", "nodad")
		}
	}
	// Service VIPs need a route to be dialled at all; capture takes them
	// before they leave.
	ip(t, "-n", cn, "route", "add", f.vipNet, "dev", "veth0")

	// A directory uid 1337 can reach, for the binary and sockets.
	dir, err := os.MkdirTemp("", "trellis-tp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin := buildProxy(t)
	config := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  clusterIP: %s
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec: {address: "%s", labels: {app: reviews}}
`, f.vip, f.server)
	sock := filepath.Join(dir, "xds.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o777)
	meshtest.New(t, config, meshtest.WithControlPlane(func(o *controlplane.Options) { o.XDSListener = lis }))

	// The server app.
	var appLn net.Listener
	inNS(t, server, func() { appLn, err = net.Listen("tcp", net.JoinHostPort(f.server, "9080")) })
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app saw remote=%s xff=%s host=%s", r.RemoteAddr, r.Header.Get("X-Forwarded-For"), r.Host)
	})}
	go app.Serve(appLn)
	t.Cleanup(func() { app.Close(); appLn.Close() })

	for _, pod := range []struct{ ns, name, ip, labels string }{
		{server, "reviews-v1", f.server, "app=reviews"},
		{client, "sleep", f.client, "app=sleep"},
	} {
		table := "trellis-tp-" + id
		rs := redirect.Build(redirect.Config{Table: table, ProxyUIDs: []uint32{proxyUID}})
		if err := redirect.ApplyIn(context.Background(), pod.ns, rs); err != nil {
			t.Fatalf("capture in %s: %v", pod.ns, err)
		}
		adminSock := filepath.Join(dir, pod.name+"-admin.sock")
		cmd := exec.Command("nsenter", "--net="+pod.ns, "setpriv", fmt.Sprintf("--reuid=%d", proxyUID), fmt.Sprintf("--regid=%d", proxyUID), "--clear-groups",
			bin, "--mode", "REDIRECT", "--xds", "unix://"+sock, "--pod-ip", pod.ip, "--pod-name", pod.name, "--labels", pod.labels,
			"--admin-socket", adminSock, "--drain-duration", "1s")
		var logs lockedBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Signal(unix.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("%s's proxy exited with %v", pod.name, err)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Errorf("%s's proxy did not stop", pod.name)
			}
			if t.Failed() {
				t.Logf("%s's proxy log:\n%s", pod.name, logs.String())
			}
		})
		waitReady(t, adminSock)
	}

	// The client app: no proxy settings, just the Service's VIP.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			inNS(t, client, func() { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr) })
			return conn, err
		},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + net.JoinHostPort(f.vip, "9080") + "/")
	if err != nil {
		t.Fatalf("the client app's request to the VIP: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "app saw remote=" + f.inbound + ":"
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), want) || !strings.Contains(string(body), "xff="+f.client+" ") {
		t.Errorf("got %d %q, want the app to answer a request from its sidecar (%s…) carrying the client's IP in X-Forwarded-For", resp.StatusCode, body, want)
	}
	for _, pod := range []struct{ name, stat string }{
		{"sleep", "http.outbound.downstream_rq_2xx"},
		{"reviews-v1", "http.inbound.downstream_rq_2xx"},
	} {
		if v := adminStat(t, filepath.Join(dir, pod.name+"-admin.sock"), pod.stat); v < 1 {
			t.Errorf("%s's %s = %d: the request did not go through that sidecar", pod.name, pod.stat, v)
		}
	}
}

func netns(t *testing.T, name string) string { return testnetns.New(t, name) }

func ip(t *testing.T, args ...string) { t.Helper(); testnetns.IP(t, args...) }

// inNS runs fn in the namespace at path; it may run off the test's
// goroutine (a Transport's dial), so failures are reported, not fatal.
func inNS(t *testing.T, path string, fn func()) { testnetns.In(t, path, fn) }

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func waitReady(t *testing.T, sock string) {
	t.Helper()
	c := unixClient(sock)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("http://admin/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy at %s never became ready (%v)", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func adminStat(t *testing.T, sock, name string) int {
	t.Helper()
	c := unixClient(sock)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://admin/stats")
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}
