package grpcinterop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver

	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/xds"
)

// clientEnv selects client mode in TestMain and carries its clientConfig.
const clientEnv = "TRELLIS_GRPC_CLIENT"

// Startup is generous: a loaded 2-vCPU CI machine may take seconds to
// start a process and finish the first xDS exchange.
const (
	startupTimeout = 30 * time.Second
	rpcTimeout     = 5 * time.Second
	exitTimeout    = 20 * time.Second
)

// clientConfig tells a client process what to do. It stops at whichever
// comes first: Max RPCs, MaxDuration, or its stdin closing (the test's
// way of saying "enough").
type clientConfig struct {
	// Targets are called in turn: RPC i goes to Targets[i % len]. Each
	// has its own channel, warmed up one after the other, so a later one
	// adds its names to an xDS subscription already in place.
	Targets     []string
	Max         int
	MaxDuration time.Duration
	// Pace is the pause between RPCs, so long runs measure time without
	// producing needless output.
	Pace time.Duration
	// Metadata[i % len] is sent with RPC i; an empty map sends none.
	Metadata []map[string]string
	// Namespace is the client's (node metadata NAMESPACE); default if
	// empty. Only the test reads it: the bootstrap carries it.
	Namespace string `json:"-"`
	// Bootstrap, when set, is the client's whole bootstrap (mtls_test.go:
	// certificate providers); Namespace is then only the test's.
	Bootstrap string `json:"-"`
	// XDSCreds makes the channels use grpc-go's xDS credentials (mTLS as
	// the control plane says, plaintext otherwise) instead of plaintext.
	XDSCreds bool
	// NoWarmup skips the first RPC that waits for the channel: every RPC
	// is recorded, failures included (for clients expected to be refused).
	NoWarmup bool
	// NewChannelEvery, when > 0, replaces the channels every that many
	// RPCs, so later RPCs make new connections (new TLS handshakes).
	NewChannelEvery int
}

// record is one RPC as the client saw it, one JSON line on stdout.
type record struct {
	Ready   bool   `json:"ready,omitempty"` // the first line: resolution done, loop begins
	Seq     int    `json:"seq"`
	Target  int    `json:"target,omitempty"` // index into Targets
	Start   int64  `json:"start,omitempty"`  // wall clock, Unix ns: comparable across processes
	Version string `json:"version,omitempty"`
	Err     string `json:"err,omitempty"`
	// With XDSCreds: the server's SPIFFE ID and certificate serial as the
	// client saw them, and the client's as the server saw them (mtls_test.go's
	// server answers with them).
	ServerID     string `json:"serverID,omitempty"`
	ServerSerial string `json:"serverSerial,omitempty"`
	ClientID     string `json:"clientID,omitempty"`
	ClientSerial string `json:"clientSerial,omitempty"`
}

func (r record) started() time.Time { return time.Unix(0, r.Start) }

// runClient is the client process: grpc-go, configured only through its
// bootstrap, calling UnaryCall in a loop.
func runClient(raw string) int {
	var cfg clientConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "bad %s: %v\n", clientEnv, err)
		return 2
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	out := json.NewEncoder(os.Stdout) // one Write per line, so the test reads lines as they happen

	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if cfg.XDSCreds {
		var err error
		if creds, err = xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()}); err != nil {
			fmt.Fprintf(os.Stderr, "cannot make xDS credentials: %v\n", err)
			return 1
		}
	}
	clients := make([]testgrpc.TestServiceClient, len(cfg.Targets))
	conns := make([]*grpc.ClientConn, len(cfg.Targets))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	// dial (re)creates channel i; the old one closes after the new one
	// exists, so the process's xDS client and its resources stay.
	dial := func(i int) bool {
		conn, err := grpc.NewClient(cfg.Targets[i], grpc.WithTransportCredentials(creds))
		if err != nil {
			fmt.Fprintf(os.Stderr, "cannot create client for %s: %v\n", cfg.Targets[i], err)
			return false
		}
		if conns[i] != nil {
			conns[i].Close()
		}
		conns[i] = conn
		clients[i] = testgrpc.NewTestServiceClient(conn)
		return true
	}
	for i, target := range cfg.Targets {
		if !dial(i) {
			return 1
		}
		if cfg.NoWarmup {
			continue
		}
		// Only the first RPC waits for the channel: it covers xDS
		// resolution and connecting. Later RPCs must not wait, or a broken
		// update would stall them instead of failing them.
		ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
		_, err := clients[i].UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "first RPC to %s failed: %v\n", target, err)
			return 1
		}
	}
	if err := out.Encode(record{Ready: true}); err != nil {
		return 1
	}

	deadline := time.Now().Add(cfg.MaxDuration)
	for i := 0; i < cfg.Max && time.Now().Before(deadline); i++ {
		select {
		case <-stop:
			return 0
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		if len(cfg.Metadata) > 0 {
			if md := cfg.Metadata[i%len(cfg.Metadata)]; len(md) > 0 {
				ctx = metadata.NewOutgoingContext(ctx, metadata.New(md))
			}
		}
		if cfg.NewChannelEvery > 0 && i > 0 && i%cfg.NewChannelEvery == 0 {
			for j := range conns {
				if !dial(j) {
					cancel()
					return 1
				}
			}
		}
		r := record{Seq: i, Target: i % len(clients), Start: time.Now().UnixNano()}
		var p peer.Peer
		resp, err := clients[r.Target].UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Peer(&p))
		cancel()
		if err != nil {
			r.Err = err.Error()
		} else {
			r.Version = resp.GetServerId()
			r.ClientID, r.ClientSerial = resp.GetUsername(), resp.GetHostname()
			r.ServerID, r.ServerSerial = peerIdentity(p.AuthInfo)
		}
		if err := out.Encode(r); err != nil {
			return 1 // the test went away
		}
		if cfg.Pace > 0 {
			time.Sleep(cfg.Pace)
		}
	}
	return 0
}

// client is a running client process, seen from the test.
type client struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *meshtest.LockedBuffer
	done   chan struct{} // stdout reached EOF

	mu      sync.Mutex
	ready   bool
	records []record
	bad     []string // lines that did not parse

	stopOnce sync.Once
	waitOnce sync.Once
	waitErr  error
}

// startClient starts a client process for cfg against m.
func (m *mesh) startClient(cfg clientConfig) *client {
	m.t.Helper()
	m.clients++
	raw, err := json.Marshal(cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	ns := cfg.Namespace
	if ns == "" {
		ns = "default"
	}
	node := xds.NodeID("127.0.0.1", fmt.Sprintf("client-%d", m.clients), ns)
	boot := cfg.Bootstrap
	if boot == "" {
		boot = bootstrap(m.XDSAddr(), node, ns)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		clientEnv+"="+string(raw),
		"GRPC_XDS_BOOTSTRAP_CONFIG="+boot,
	)
	c := &client{t: m.t, cmd: cmd, stderr: &meshtest.LockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		m.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	go c.read(stdout)
	m.t.Cleanup(func() {
		c.stop()
		if m.t.Failed() {
			m.t.Logf("client %s (%v) stderr:\n%s", node, cfg.Targets, c.stderr.String())
		}
	})
	return c
}

func (c *client) read(stdout io.Reader) {
	defer close(c.done)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var r record
		err := json.Unmarshal(sc.Bytes(), &r)
		c.mu.Lock()
		switch {
		case err != nil:
			c.bad = append(c.bad, sc.Text())
		case r.Ready:
			c.ready = true
		default:
			c.records = append(c.records, r)
		}
		c.mu.Unlock()
	}
}

// waitReady waits for the client's first RPC to succeed.
func (c *client) waitReady() {
	c.t.Helper()
	c.waitFor("the first RPC", startupTimeout, func() bool { return c.ready })
}

// waitRecords waits until the client has reported at least n RPCs.
func (c *client) waitRecords(n int, timeout time.Duration) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("%d RPCs", n), timeout, func() bool { return len(c.records) >= n })
}

func (c *client) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		c.mu.Lock()
		ok := cond()
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.done:
			c.t.Fatalf("client exited before %s: %v\nstderr:\n%s", what, c.wait(), c.stderr.String())
		case <-deadline:
			c.t.Fatalf("client did not report %s within %v", what, timeout)
		case <-tick.C:
		}
	}
}

// finish waits for the client to end on its own (Max or MaxDuration) and
// returns what it recorded.
func (c *client) finish() []record {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(exitTimeout):
		c.t.Fatalf("client did not finish within %v", exitTimeout)
	}
	return c.stop()
}

// stop tells the client to end, waits for it and returns what it
// recorded; the process exiting non-zero fails the test. Only the first
// call reports problems.
func (c *client) stop() []record {
	c.t.Helper()
	c.stopOnce.Do(func() {
		_ = c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(exitTimeout):
			_ = c.cmd.Process.Kill()
			<-c.done
			c.t.Errorf("client did not stop within %v; killed", exitTimeout)
		}
		if err := c.wait(); err != nil {
			c.t.Errorf("client failed: %v", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.bad) > 0 {
			c.t.Errorf("client printed %d unparsable line(s), first: %q", len(c.bad), c.bad[0])
		}
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]record(nil), c.records...)
}

// wait reaps the process once; later calls return the same result. Call
// it only after stdout reached EOF (exec.Cmd's rule for pipes).
func (c *client) wait() error {
	c.waitOnce.Do(func() { c.waitErr = c.cmd.Wait() })
	return c.waitErr
}
