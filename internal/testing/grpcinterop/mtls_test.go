package grpcinterop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	xdsgrpc "google.golang.org/grpc/xds"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/identity"
	"github.com/trellismesh/trellis/internal/identity/filecert"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/translate"
	"github.com/trellismesh/trellis/internal/xds"
)

// Proxyless gRPC with the mesh's identities: grpc-go clients and
// xDS-enabled grpc-go servers, each in a process of its own with a
// bootstrap naming the file_watcher certificate provider over files
// internal/identity/filecert writes from the control plane's CA.

// serverEnv selects server mode in TestMain and carries its serverConfig.
const serverEnv = "TRELLIS_GRPC_SERVER"

type serverConfig struct {
	Version string
}

// serverEvent is one line of a server process's stdout.
type serverEvent struct {
	Port int    `json:"port,omitempty"` // the first line: where it listens
	Mode string `json:"mode,omitempty"` // serving mode changes, as grpc-go reports them
	Err  string `json:"err,omitempty"`
}

// runServer is the server process: grpc-go's xDS-enabled server with xDS
// credentials (plaintext fallback), on 127.0.0.1, answering UnaryCall
// with its version and the caller's SPIFFE ID and certificate serial.
func runServer(raw string) int {
	var cfg serverConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "bad %s: %v\n", serverEnv, err)
		return 2
	}
	out := json.NewEncoder(os.Stdout)
	var outMu sync.Mutex
	emit := func(e serverEvent) {
		outMu.Lock()
		defer outMu.Unlock()
		_ = out.Encode(e)
	}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot make xDS server credentials: %v\n", err)
		return 1
	}
	s, err := xdsgrpc.NewGRPCServer(grpc.Creds(creds), xdsgrpc.ServingModeCallback(func(_ net.Addr, args xdsgrpc.ServingModeChangeArgs) {
		e := serverEvent{Mode: args.Mode.String()}
		if args.Err != nil {
			e.Err = args.Err.Error()
		}
		emit(e)
	}))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot make xDS server: %v\n", err)
		return 1
	}
	testgrpc.RegisterTestServiceServer(s, &identityGreeter{version: cfg.Version})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot listen: %v\n", err)
		return 1
	}
	emit(serverEvent{Port: lis.Addr().(*net.TCPAddr).Port})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		s.Stop()
	}()
	if err := s.Serve(lis); err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
	}
	return 0
}

// identityGreeter answers with its version (ServerId) and the caller's
// SPIFFE ID (Username) and certificate serial (Hostname), empty for a
// plaintext caller.
type identityGreeter struct {
	testgrpc.UnimplementedTestServiceServer
	version string
}

func (g *identityGreeter) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	resp := &testgrpc.SimpleResponse{ServerId: g.version}
	if p, ok := peer.FromContext(ctx); ok {
		resp.Username, resp.Hostname = peerIdentity(p.AuthInfo)
	}
	return resp, nil
}

// peerIdentity is the SPIFFE ID and leaf serial (hex) of a TLS peer; ""
// for plaintext.
func peerIdentity(ai credentials.AuthInfo) (id, serial string) {
	info, ok := ai.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return "", ""
	}
	leaf := info.State.PeerCertificates[0]
	if info.SPIFFEID != nil {
		id = info.SPIFFEID.String()
	}
	return id, leaf.SerialNumber.Text(16)
}

// server is a running server process, seen from the test.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *meshtest.LockedBuffer
	done   chan struct{}

	mu     sync.Mutex
	port   int
	events []serverEvent
}

// workload is one proxyless workload's identity: its files, written and
// rotated from the mesh CA, and its node.
type workload struct {
	name, sa string
	labels   map[string]string
	files    *filecert.Writer
	dir      string
	// secureXDS: the workload speaks xDS over mTLS with its files, on
	// the control plane's secure port (the mesh needs meshtest.WithCA);
	// node overrides its node metadata (to claim another identity).
	secureXDS bool
	node      map[string]any
}

// newWorkload writes identity files for default/sa from the mesh's CA.
func (m *mesh) newWorkload(name, sa string, labels map[string]string, ttl time.Duration) *workload {
	m.t.Helper()
	dir := filepath.Join(m.t.TempDir(), name)
	w, err := filecert.Start(filecert.Options{
		Dir: dir, CA: m.ControlPlane().CA(), TTL: ttl,
		ID: identity.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa},
	})
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(w.Close)
	return &workload{name: name, sa: sa, labels: labels, files: w, dir: dir}
}

// bootstrap is the workload's grpc-go bootstrap: its node at 127.0.0.1
// with its labels and service account, and its certificate files.
func (w *workload) bootstrap(t *testing.T, xdsAddr string, refresh time.Duration) string {
	t.Helper()
	labels := map[string]any{}
	for k, v := range w.labels {
		labels[k] = v
	}
	md := map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": w.sa, "LABELS": labels}
	for k, v := range w.node {
		md[k] = v
	}
	b, err := filecert.Bootstrap(w.dir, filecert.BootstrapOptions{
		XDSAddress: xdsAddr, NodeID: xds.NodeID("127.0.0.1", w.name, "default"), RefreshInterval: refresh,
		Metadata: md, SecureXDS: w.secureXDS,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// xdsAddrFor is where w gets its config: the secure port for a workload
// with secureXDS.
func (m *mesh) xdsAddrFor(w *workload) string {
	if w.secureXDS {
		return m.ControlPlane().SecureAddr().String()
	}
	return m.XDSAddr()
}

func (w *workload) spiffeID() string { return "spiffe://cluster.local/ns/default/sa/" + w.sa }

// startServer starts an xDS-enabled grpc-go server process for w and
// returns once it listens (it serves only once the control plane gives
// it its listener).
func (m *mesh) startServer(w *workload, version string, refresh time.Duration) *server {
	m.t.Helper()
	raw, _ := json.Marshal(serverConfig{Version: version})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serverEnv+"="+string(raw), "GRPC_XDS_BOOTSTRAP_CONFIG="+w.bootstrap(m.t, m.xdsAddrFor(w), refresh))
	s := &server{t: m.t, cmd: cmd, stderr: &meshtest.LockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		m.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e serverEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			s.mu.Lock()
			if e.Port != 0 {
				s.port = e.Port
			} else {
				s.events = append(s.events, e)
			}
			s.mu.Unlock()
		}
	}()
	m.t.Cleanup(func() {
		_ = s.stdin.Close()
		select {
		case <-s.done:
		case <-time.After(exitTimeout):
			_ = cmd.Process.Kill()
			<-s.done
		}
		_ = cmd.Wait()
		if m.t.Failed() {
			m.t.Logf("server %s stderr:\n%s", w.name, s.stderr.String())
		}
	})
	s.waitFor("its port", func() bool { return s.port != 0 })
	return s
}

func (s *server) waitFor(what string, cond func() bool) {
	s.t.Helper()
	meshtest.Eventually(s.t, startupTimeout, func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		if cond() {
			return ""
		}
		select {
		case <-s.done:
			return "server exited before " + what + ": " + s.stderr.String()
		default:
		}
		return fmt.Sprintf("server did not report %s (events %v)", what, s.events)
	})
}

// waitServing waits until grpc-go says the server serves: it has its
// listener from the control plane.
func (s *server) waitServing() {
	s.t.Helper()
	s.waitFor("SERVING", func() bool { return len(s.events) > 0 && s.events[len(s.events)-1].Mode == "SERVING" })
}

// mtlsServices is greeter's Service; its WorkloadEntry comes once the
// server process knows its port (workloadEntry).
const mtlsServices = `apiVersion: v1
kind: Service
metadata:
  name: greeter
  namespace: default
spec:
  selector:
    app: greeter
  ports:
  - name: grpc-greeter
    port: 7070
`

func workloadEntry(w *workload, port int) string {
	var labels []string
	for k, v := range w.labels {
		labels = append(labels, fmt.Sprintf("    %s: %q", k, v))
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %s
  namespace: default
  annotations: {inject.istio.io/templates: grpc-agent}
spec:
  address: 127.0.0.1
  serviceAccount: %s
  labels:
%s
  ports:
    grpc-greeter: %d
`, w.name, w.sa, strings.Join(labels, "\n"), port)
}

// startMTLSMesh starts a control plane with greeter's Service and policy
// (routing file), and a greeter server process with identity sa greeter
// and labels, registered as a WorkloadEntry; it returns once the server
// serves.
func startMTLSMesh(t *testing.T, policy string, serverLabels map[string]string, ttl, refresh time.Duration, opts ...meshtest.Option) (*mesh, *workload) {
	t.Helper()
	m := startMeshWith(t, mtlsServices, policy, opts...)
	srv := m.newWorkload("greeter-0", "greeter", serverLabels, ttl)
	srv.secureXDS = m.ControlPlane().SecureAddr() != nil
	s := m.startServer(srv, "v1", refresh)
	m.Write("workloads.yaml", workloadEntry(srv, s.port))
	s.waitServing()
	return m, srv
}

// startMeshWith is startMesh for tests that bring their own services
// (and servers): the same control plane settings and leak check.
func startMeshWith(t *testing.T, services, routing string, extra ...meshtest.Option) *mesh {
	t.Helper()
	leak.Check(t)
	opts := append([]meshtest.Option{
		meshtest.WithControlPlane(func(o *controlplane.Options) {
			o.Debounce, o.MaxDelay, o.Resync = 0, 0, 0
		}),
	}, extra...)
	if routing != "" {
		opts = append(opts, meshtest.WithFile(routingFile, routing))
	}
	return &mesh{Mesh: meshtest.New(t, services, opts...), t: t}
}

var (
	meshedLabels = map[string]string{"app": "greeter", translate.TLSModeLabel: translate.TLSModeIstio}
	plainLabels  = map[string]string{"app": "greeter"}
	// A proxyless client with the mesh identity is labelled so (its
	// bootstrap names the certificate provider clusters refer to).
	clientLabels = map[string]string{"app": "sleep", translate.TLSModeLabel: translate.TLSModeIstio}
)

// A proxyless client and an xDS-enabled server, both meshed (tlsMode
// istio), with certificates from the mesh CA in files: every RPC runs
// over mTLS, each side seeing the other's SPIFFE ID from its verified
// certificate (the server's SAN checked by the client against greeter's
// service account, the client's read by the server from the handshake).
func TestProxylessMTLS(t *testing.T) {
	m, srv := startMTLSMesh(t, "", meshedLabels, 0, 0)
	cl := m.newWorkload("sleep-0", "sleep", clientLabels, 0)
	c := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 50, MaxDuration: time.Minute, XDSCreds: true,
		Bootstrap: cl.bootstrap(t, m.XDSAddr(), 0)})
	c.waitReady()
	recs := c.finish()
	checkNoFailures(t, "mTLS", count(recs))
	if len(recs) != 50 {
		t.Fatalf("client made %d RPCs, want 50", len(recs))
	}
	for _, r := range recs {
		if r.ServerID != srv.spiffeID() || r.ClientID != cl.spiffeID() {
			t.Fatalf("RPC %d: client saw server %q, server saw client %q; want %s and %s over mTLS", r.Seq, r.ServerID, r.ClientID, srv.spiffeID(), cl.spiffeID())
		}
	}
	t.Logf("50 RPCs over mTLS: client %s ↔ server %s", cl.spiffeID(), srv.spiffeID())
	m.checkNoNACKs()
}

// A client whose xDS credentials expect another identity than the server
// has (a DestinationRule's subjectAltNames) is refused by its own TLS
// check: the SANs the control plane sends are enforced, not decoration.
func TestProxylessMTLSChecksServerIdentity(t *testing.T) {
	m, _ := startMTLSMesh(t, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/payments"]}
`, meshedLabels, 0, 0)
	cl := m.newWorkload("sleep-0", "sleep", clientLabels, 0)
	c := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 3, MaxDuration: time.Minute, XDSCreds: true, NoWarmup: true,
		Bootstrap: cl.bootstrap(t, m.XDSAddr(), 0)})
	got := count(c.finish())
	if got.n != 3 || got.failed != got.n {
		t.Errorf("client expecting another identity: want all 3 RPCs refused, got %v", got)
	}
	t.Logf("refused: %s", got.firstErr)
	m.checkNoNACKs()
}

const strictGreeter = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: greeter, namespace: default}
spec:
  selector: {matchLabels: {app: greeter}}
  mtls: {mode: %s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`

// PeerAuthentication STRICT on a server without the tlsMode label (so the
// policy alone decides), and ISTIO_MUTUAL for its clients: a client with
// the identity but plaintext channel credentials is refused by the
// server, one with xDS credentials gets through with its identity, and one
// without an identity gets no cluster (not plaintext, and nothing it would
// NACK). Switched to PERMISSIVE, the plaintext client gets through: the
// refusal was the policy's.
func TestProxylessStrictRefusesPlaintext(t *testing.T) {
	m, srv := startMTLSMesh(t, fmt.Sprintf(strictGreeter, "STRICT"), plainLabels, 0, 0)
	cl := m.newWorkload("sleep-0", "sleep", clientLabels, 0)
	boot := cl.bootstrap(t, m.XDSAddr(), 0)

	plain := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 3, MaxDuration: time.Minute, NoWarmup: true, Bootstrap: boot})
	got := count(plain.finish())
	if got.n != 3 || got.failed != got.n {
		t.Errorf("plaintext client under STRICT: want all 3 RPCs refused, got %v", got)
	}
	t.Logf("plaintext under STRICT refused: %s", got.firstErr)

	secure := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 10, MaxDuration: time.Minute, XDSCreds: true, Bootstrap: boot})
	secure.waitReady()
	recs := secure.finish()
	checkNoFailures(t, "mTLS client under STRICT", count(recs))
	for _, r := range recs {
		if r.ClientID != cl.spiffeID() || r.ServerID != srv.spiffeID() {
			t.Fatalf("RPC %d under STRICT: server saw %q, client saw %q", r.Seq, r.ClientID, r.ServerID)
		}
	}

	noID := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 1, MaxDuration: time.Minute, NoWarmup: true, XDSCreds: true})
	if got := count(noID.finish()); got.failed != got.n {
		t.Errorf("client without an identity under ISTIO_MUTUAL: want its RPC to fail, got %v", got)
	}

	m.setRouting(fmt.Sprintf(strictGreeter, "PERMISSIVE"))
	meshtest.Eventually(t, 20*time.Second, func() string {
		c := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 1, MaxDuration: time.Minute, NoWarmup: true, Bootstrap: boot})
		if got := count(c.finish()); got.failed > 0 {
			return "plaintext client still refused after PERMISSIVE: " + got.firstErr
		}
		return ""
	})
	m.checkNoNACKs()
}

// Certificates of a few seconds on both sides, files rereads every 200ms:
// the client opens new connections all along, so handshakes keep
// happening with whatever the files hold. No RPC may fail, both sides
// must have used several certificates, and connections made after the
// first certificates expired must succeed (they would fail verification
// had the files not been rotated and reread).
func TestProxylessRotation(t *testing.T) {
	const ttl = 3 * time.Second
	const refresh = 200 * time.Millisecond
	m, srv := startMTLSMesh(t, "", meshedLabels, ttl, refresh)
	cl := m.newWorkload("sleep-0", "sleep", clientLabels, ttl)
	firstClient, firstServer := cl.files.Status(), srv.files.Status()
	c := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 100000, MaxDuration: time.Minute, XDSCreds: true,
		Pace: 20 * time.Millisecond, NewChannelEvery: 10, Bootstrap: cl.bootstrap(t, m.XDSAddr(), refresh)})
	c.waitReady()
	expired := firstClient.NotAfter
	if firstServer.NotAfter.After(expired) {
		expired = firstServer.NotAfter
	}
	sleepUntil(expired.Add(3 * time.Second))
	recs := c.stop()

	checkNoFailures(t, "under rotation", count(recs))
	clientSerials, serverSerials := map[string]bool{}, map[string]bool{}
	late := 0
	for _, r := range recs {
		clientSerials[r.ClientSerial] = true
		serverSerials[r.ServerSerial] = true
		if r.Err == "" && r.started().After(expired) {
			late++
		}
		if r.Err == "" && (r.ClientID != cl.spiffeID() || r.ServerID != srv.spiffeID()) {
			t.Fatalf("RPC %d: identities %q/%q", r.Seq, r.ClientID, r.ServerID)
		}
	}
	if len(clientSerials) < 3 || len(serverSerials) < 3 {
		t.Errorf("want at least 3 certificates used on each side, got client %d, server %d", len(clientSerials), len(serverSerials))
	}
	if late < 20 {
		t.Errorf("only %d RPCs succeeded after the first certificates expired at %v", late, expired)
	}
	if st := cl.files.Status(); st.Renewals < 2 || st.LastError != nil {
		t.Errorf("client files: %d renewals, last error %v", st.Renewals, st.LastError)
	}
	t.Logf("%d RPCs, %d after the first certificates expired; client certificates %d, server certificates %d",
		len(recs), late, len(clientSerials), len(serverSerials))
	m.checkNoNACKs()
}

// AuthorizationPolicy on an xDS-enabled grpc-go server, enforced by
// grpc-go from the RBAC filters Trellis sends: only sleep's identity is
// allowed, and a DENY on a request header refuses even sleep when it sends
// it. Refused calls get grpc-go's PERMISSION_DENIED from its RBAC filter.
func TestProxylessAuthorization(t *testing.T) {
	m, _ := startMTLSMesh(t, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: greeter}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-blocked, namespace: default}
spec:
  selector: {matchLabels: {app: greeter}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/grpc.testing.TestService/*]}}]
    when: [{key: 'request.headers[x-block]', values: ["yes"]}]
`, meshedLabels, 0, 0)
	sleep := m.newWorkload("sleep-0", "sleep", clientLabels, 0)
	other := m.newWorkload("other-0", "other", map[string]string{"app": "other", translate.TLSModeLabel: translate.TLSModeIstio}, 0)

	allowed := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 20, MaxDuration: time.Minute, XDSCreds: true,
		Metadata: []map[string]string{{}, {"x-block": "no"}}, Bootstrap: sleep.bootstrap(t, m.XDSAddr(), 0)})
	allowed.waitReady()
	got := count(allowed.finish())
	checkNoFailures(t, "sleep", got)
	if got.n != 20 {
		t.Errorf("sleep: %d RPCs, want 20", got.n)
	}

	for _, tc := range []struct {
		name string
		w    *workload
		md   map[string]string
	}{
		{"another identity", other, nil},
		{"sleep with x-block: yes", sleep, map[string]string{"x-block": "yes"}},
	} {
		c := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 5, MaxDuration: time.Minute, XDSCreds: true, NoWarmup: true,
			Metadata: []map[string]string{tc.md}, Bootstrap: tc.w.bootstrap(t, m.XDSAddr(), 0)})
		recs := c.finish()
		got := count(recs)
		if got.n != 5 || got.failed != 5 {
			t.Errorf("%s: want all 5 RPCs refused, got %v", tc.name, got)
			continue
		}
		for _, r := range recs {
			if !strings.Contains(r.Err, "PermissionDenied") {
				t.Errorf("%s: RPC %d failed with %q, want PermissionDenied from RBAC", tc.name, r.Seq, r.Err)
				break
			}
		}
		t.Logf("%s: %s", tc.name, got.firstErr)
	}
	m.checkNoNACKs()
}

// Proxyless workloads can get their config over mTLS too, as sidecars do:
// the bootstrap's channel credentials are the workload's own files
// (grpc-go's "tls" channel creds), the control plane takes the namespace
// and service account from the certificate, and a node claiming another
// service account gets nothing (its calls fail; the server still serves
// the honest client).
func TestProxylessSecureXDS(t *testing.T) {
	m, srv := startMTLSMesh(t, "", meshedLabels, 0, 0, meshtest.WithCA())
	cl := m.newWorkload("sleep-0", "sleep", clientLabels, 0)
	cl.secureXDS = true
	c := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 10, MaxDuration: time.Minute, XDSCreds: true,
		Bootstrap: cl.bootstrap(t, m.xdsAddrFor(cl), 0)})
	c.waitReady()
	recs := c.finish()
	checkNoFailures(t, "over secure xDS", count(recs))
	for _, r := range recs {
		if r.ClientID != cl.spiffeID() || r.ServerID != srv.spiffeID() {
			t.Fatalf("RPC %d: identities %q/%q", r.Seq, r.ClientID, r.ServerID)
		}
	}

	liar := m.newWorkload("liar-0", "sleep", clientLabels, 0)
	liar.secureXDS = true
	liar.node = map[string]any{"SERVICE_ACCOUNT": "greeter"}
	lc := m.startClient(clientConfig{Targets: []string{"xds:///greeter:7070"}, Max: 1, MaxDuration: time.Minute, XDSCreds: true, NoWarmup: true,
		Bootstrap: liar.bootstrap(t, m.xdsAddrFor(liar), 0)})
	got := count(lc.finish())
	if got.failed != got.n || !strings.Contains(got.firstErr, "PermissionDenied") {
		t.Errorf("a node claiming another service account: want its xDS stream refused (PermissionDenied), got %v: %s", got, got.firstErr)
	}
	t.Logf("node claiming another service account: %s", got.firstErr)
	m.checkNoNACKs()
}
