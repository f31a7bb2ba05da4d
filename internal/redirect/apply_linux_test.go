//go:build linux

package redirect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/trellismesh/trellis/internal/proxy/origdst"
	"github.com/trellismesh/trellis/internal/testing/needs"
	testnetns "github.com/trellismesh/trellis/internal/testing/netns"
)

func netns(t *testing.T, name string) string { return testnetns.New(t, name) }

func ip(t *testing.T, args ...string) { t.Helper(); testnetns.IP(t, args...) }

// inNS runs fn in the namespace at path and stops the test if it cannot.
func inNS(t *testing.T, path string, fn func()) {
	t.Helper()
	if !testnetns.In(t, path, fn) {
		t.FailNow()
	}
}

// serve answers every connection with name and the connection's original destination, or
// with its local address when the namespace has no conntrack (no nat rules load it there).
func serve(t *testing.T, ns, addr, name string, originalDst bool) {
	t.Helper()
	var ln net.Listener
	inNS(t, ns, func() {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			t.Fatalf("listen %s in %s: %v", addr, ns, err)
		}
	})
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dst, err := netip.MustParseAddrPort(c.LocalAddr().String()), error(nil)
			if originalDst {
				dst, err = origdst.Get(c.(*net.TCPConn))
			}
			if err != nil {
				fmt.Fprintf(c, "%s error %v", name, err)
			} else {
				fmt.Fprintf(c, "%s %s", name, dst)
			}
			c.Close()
		}
	}()
}

// ask connects from namespace ns (with socket mark if non-zero) and returns what answered.
func ask(t *testing.T, ns, addr string, mark int) string {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if mark != 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark) })
			if err != nil {
				return err
			}
			return serr
		}
	}
	var conn net.Conn
	inNS(t, ns, func() {
		var err error
		if conn, err = d.Dial("tcp", addr); err != nil {
			t.Fatalf("dial %s from %s: %v", addr, ns, err)
		}
	})
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return string(b)
}

func tables(t *testing.T, nsPath string) []string {
	t.Helper()
	var opts []nftables.ConnOption
	if nsPath != "" {
		f, err := os.Open(nsPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	var names []string
	for _, tb := range ts {
		names = append(names, tb.Name)
	}
	return names
}

// TestCaptureInNetns wires two namespaces: "pod" (10.244.0.5, the sidecar's home) and "peer"
// (10.244.0.6, which also owns the VIP 10.96.0.20, so uncaptured traffic visibly lands there).
func TestCaptureInNetns(t *testing.T) {
	id, pod, peer := podAndPeer(t, "peer", "10.244.0.6/24")
	podName, peerName := filepath.Base(pod), filepath.Base(peer)
	ip(t, "-n", podName, "route", "add", "10.96.0.0/16", "via", "10.244.0.6")
	ip(t, "-n", peerName, "addr", "add", "10.96.0.20/32", "dev", "lo")

	serve(t, pod, "127.0.0.1:15001", "outbound", true)
	serve(t, pod, "0.0.0.0:15006", "inbound", true)
	serve(t, pod, "10.244.0.5:9080", "app", true)
	serve(t, pod, "0.0.0.0:15021", "health", true)
	serve(t, peer, "10.96.0.20:9080", "peer", false)
	serve(t, peer, "10.96.0.20:3306", "peer", false)

	const mark = 0x539
	table := "trellis-test-" + id
	cfg := Config{Table: table, ProxyMark: mark, ProxyUIDs: []uint32{1337}, ExcludeOutboundPorts: []uint16{3306}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rs := Build(cfg)
	if err := ApplyIn(context.Background(), pod, rs); err != nil {
		if strings.Contains(err.Error(), "kernel lacks") {
			needs.Skip(t, "kernel refuses the rules: %v", err)
		}
		t.Fatalf("ApplyIn: %v", err)
	}
	t.Cleanup(func() {
		if err := RemoveIn(pod, table); err != nil {
			t.Errorf("RemoveIn: %v", err)
		}
	})
	if got := tables(t, ""); containsString(got, table) {
		t.Fatalf("table %s appeared in the test's own namespace: %v", table, got)
	}

	for _, tc := range []struct {
		name, from, addr string
		mark             int
		want             string
	}{
		{"app to a VIP is captured", pod, "10.96.0.20:9080", 0, "outbound 10.96.0.20:9080"},
		{"the proxy's own connection is not", pod, "10.96.0.20:9080", mark, "peer 10.96.0.20:9080"},
		{"an excluded outbound port is not", pod, "10.96.0.20:3306", 0, "peer 10.96.0.20:3306"},
		{"inbound is captured with its original destination", peer, "10.244.0.5:9080", 0, "inbound 10.244.0.5:9080"},
		{"the health port is never captured", peer, "10.244.0.5:15021", 0, "health 10.244.0.5:15021"},
		{"an app calling its own pod IP stays direct", pod, "10.244.0.5:9080", 0, "app 10.244.0.5:9080"},
		{"the proxy calling its own pod enters inbound", pod, "10.244.0.5:9080", mark, "inbound 10.244.0.5:9080"},
		{"localhost is never captured", pod, "127.0.0.1:15021", 0, "health 127.0.0.1:15021"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ask(t, tc.from, tc.addr, tc.mark); got != tc.want {
				t.Errorf("connecting to %s (mark %#x) answered %q, want %q", tc.addr, tc.mark, got, tc.want)
			}
		})
	}

	t.Run("the kernel holds what String says", func(t *testing.T) {
		if _, err := exec.LookPath("nft"); err != nil {
			needs.Skip(t, "nft CLI not installed (Debian package nftables)")
		}
		kernelHoldsString(t, pod, peer, table, rs)
	})

	// The uid exclusion, by making the test's own uid the proxy's; re-applying the same table
	// also exercises the atomic replace.
	cfg.ProxyMark, cfg.ProxyUIDs = 0, []uint32{uint32(os.Getuid())}
	if err := ApplyIn(context.Background(), pod, Build(cfg)); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if got := ask(t, pod, "10.96.0.20:9080", 0); got != "peer 10.96.0.20:9080" {
		t.Errorf("with the caller's uid as the proxy's, a VIP answered %q, want the peer", got)
	}

	if err := RemoveIn(pod, table); err != nil {
		t.Fatalf("RemoveIn: %v", err)
	}
	if err := RemoveIn(pod, table); err != nil {
		t.Fatalf("second RemoveIn must succeed: %v", err)
	}
	if got := tables(t, pod); containsString(got, table) {
		t.Errorf("table %s still present after RemoveIn: %v", table, got)
	}
	if got := ask(t, pod, "10.96.0.20:9080", 0); got != "peer 10.96.0.20:9080" {
		t.Errorf("after RemoveIn a VIP answered %q, want the peer", got)
	}
}

func containsString(ss []string, s string) bool {
	for _, v := range ss {
		if v == s {
			return true
		}
	}
	return false
}

// TestApplyCurrentNamespace covers Apply and Remove (no path) from a thread moved into a fresh
// namespace, the way a pod's init step would run them.
func TestApplyCurrentNamespace(t *testing.T) {
	ns := netns(t, "trellis-test-"+netnsTestID(t))
	table := "trellis-cur"
	inNS(t, ns, func() {
		if err := Apply(context.Background(), Build(Config{Table: table, ProxyUIDs: []uint32{1337}})); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	})
	if got := tables(t, ns); !containsString(got, table) {
		t.Fatalf("after Apply the namespace has tables %v, want %s", got, table)
	}
	if got := tables(t, ""); containsString(got, table) {
		t.Fatalf("table %s leaked into the test's own namespace", table)
	}
	inNS(t, ns, func() {
		if err := Remove(table); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	})
	if got := tables(t, ns); containsString(got, table) {
		t.Fatalf("after Remove the namespace still has %v", got)
	}
}

func TestApplyRefusesBeforeSending(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Apply(ctx, Build(Config{Table: "t", ProxyMark: 1})); err != context.Canceled {
		t.Errorf("Apply with a cancelled context = %v", err)
	}
	if err := Apply(context.Background(), Ruleset{}); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("Apply of an empty Ruleset = %v, want a refusal", err)
	}
	if err := Remove(""); err == nil {
		t.Error("Remove of an empty table name succeeded")
	}
}

// serveUDP answers every datagram on addr in namespace ns with name.
func serveUDP(t *testing.T, ns, addr, name string) {
	t.Helper()
	var pc net.PacketConn
	inNS(t, ns, func() {
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			t.Fatalf("listen udp %s in %s: %v", addr, ns, err)
		}
	})
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
}

// askUDP sends one datagram to addr from namespace ns over a connected socket (with socket mark
// if non-zero): an answer arrives only from addr itself, so one coming back proves that a
// redirected query's answer is rewritten to the address the app asked.
func askUDP(t *testing.T, ns, addr string, mark int) string {
	t.Helper()
	d := net.Dialer{}
	if mark != 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark) }); err != nil {
				return err
			}
			return serr
		}
	}
	var conn net.Conn
	inNS(t, ns, func() {
		var err error
		if conn, err = d.Dial("udp", addr); err != nil {
			t.Fatalf("dial udp %s from %s: %v", addr, ns, err)
		}
	})
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("query")); err != nil {
		t.Fatalf("send to %s: %v", addr, err)
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		return "no answer: " + err.Error()
	}
	return string(buf[:n])
}

// TestDNSCaptureInNetns: with DNSPort set, the app's UDP and TCP queries to any nameserver reach
// the proxy's DNS port, the proxy's own reach the nameserver, and other TCP is captured as before.
func TestDNSCaptureInNetns(t *testing.T) {
	id, pod, peer := podAndPeer(t, "dns", "10.244.0.1/24")
	ip(t, "-n", filepath.Base(pod), "link", "set", "lo", "up")

	serveUDP(t, pod, "127.0.0.1:15053", "sidecar-udp")
	serve(t, pod, "127.0.0.1:15053", "sidecar-tcp", true)
	serve(t, pod, "127.0.0.1:15001", "outbound", true)
	serveUDP(t, peer, "10.244.0.1:53", "nameserver-udp")
	serve(t, peer, "10.244.0.1:53", "nameserver-tcp", false)
	serve(t, peer, "10.244.0.1:80", "peer", false)

	const mark = 0x539
	table := "trellis-test-" + id
	cfg := Config{Table: table, ProxyMark: mark, DNSPort: DefaultDNSPort}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rs := Build(cfg)
	if err := ApplyIn(context.Background(), pod, rs); err != nil {
		if strings.Contains(err.Error(), "kernel lacks") {
			needs.Skip(t, "kernel refuses the rules: %v", err)
		}
		t.Fatalf("ApplyIn: %v", err)
	}
	t.Cleanup(func() {
		if err := RemoveIn(pod, table); err != nil {
			t.Errorf("RemoveIn: %v", err)
		}
	})

	if got := askUDP(t, pod, "10.244.0.1:53", 0); got != "sidecar-udp" {
		t.Errorf("the app's UDP query answered %q, want the sidecar's DNS port", got)
	}
	if got := askUDP(t, pod, "10.244.0.1:53", mark); got != "nameserver-udp" {
		t.Errorf("the proxy's UDP query answered %q, want the nameserver", got)
	}
	if got := ask(t, pod, "10.244.0.1:53", 0); got != "sidecar-tcp 10.244.0.1:53" {
		t.Errorf("the app's TCP query answered %q, want the sidecar's DNS port", got)
	}
	if got := ask(t, pod, "10.244.0.1:53", mark); got != "nameserver-tcp 10.244.0.1:53" {
		t.Errorf("the proxy's TCP query answered %q, want the nameserver", got)
	}
	if got := ask(t, pod, "10.244.0.1:80", 0); got != "outbound 10.244.0.1:80" {
		t.Errorf("other TCP answered %q, want the outbound port as without DNS capture", got)
	}

	if _, err := exec.LookPath("nft"); err == nil {
		kernelHoldsString(t, pod, peer, table, rs)
	}
}

// kernelHoldsString checks that the table that Apply installed in the
// namespace at pod is, as the kernel lists it, what nft -f of rs.String()
// installs in the namespace at peer (where it is removed again).
func kernelHoldsString(t *testing.T, pod, peer, table string, rs Ruleset) {
	t.Helper()
	list := func(ns string) string {
		out, err := exec.Command("ip", "netns", "exec", filepath.Base(ns), "nft", "list", "table", "inet", table).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		return string(out)
	}
	applied := list(pod)
	load := exec.Command("ip", "netns", "exec", filepath.Base(peer), "nft", "-f", "-")
	load.Stdin = strings.NewReader(rs.String())
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	defer func() {
		if err := RemoveIn(peer, table); err != nil {
			t.Error(err)
		}
	}()
	if want := list(peer); applied != want {
		t.Errorf("Apply installed\n%s\nbut nft -f of String() installs\n%s", applied, want)
	}
}

// netnsTestID skips the test without root or the ip tool, which network
// namespaces need, and returns a random id for the names of its
// namespaces, so that runs never meet each other's.
func netnsTestID(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root (network namespaces and nftables); CI runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		needs.Skip(t, "needs the ip tool (iproute2)")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return hex.EncodeToString(rnd[:])
}

// podAndPeer makes two fresh network namespaces joined by a veth pair:
// "pod" at 10.244.0.5/24 and a peer named by suffix at peerAddr, both
// links up. It skips the test without root or the ip tool, and returns
// the random id in the names and the two namespaces' paths.
func podAndPeer(t *testing.T, suffix, peerAddr string) (id, pod, peer string) {
	t.Helper()
	id = netnsTestID(t)
	pod = netns(t, "trellis-test-"+id+"-pod")
	peer = netns(t, "trellis-test-"+id+"-"+suffix)
	podName, peerName := filepath.Base(pod), filepath.Base(peer)
	ip(t, "-n", podName, "link", "add", "vpod", "type", "veth", "peer", "name", "vpeer", "netns", peerName)
	ip(t, "-n", podName, "addr", "add", "10.244.0.5/24", "dev", "vpod")
	ip(t, "-n", podName, "link", "set", "vpod", "up")
	ip(t, "-n", peerName, "addr", "add", peerAddr, "dev", "vpeer")
	ip(t, "-n", peerName, "link", "set", "vpeer", "up")
	return id, pod, peer
}
