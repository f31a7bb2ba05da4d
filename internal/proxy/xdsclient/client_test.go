package xdsclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/resource/v3" // registers the resource types for testDecode
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

const meshYAML = `apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
`

func entry(name, app, addr string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %s}
spec: {address: %s, labels: {app: %s}}
`, name, addr, app)
}

const (
	reviewsCluster = "outbound|9080||reviews.default.svc.cluster.local"
	ratingsCluster = "outbound|9080||ratings.default.svc.cluster.local"
)

var testNode = Node{IP: "127.0.0.8", Pod: "sleep-1", Namespace: "default", Labels: map[string]string{"app": "sleep"}, InterceptionMode: "NONE"}

// meshDir writes a config folder: two Services with one WorkloadEntry each.
func meshDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "mesh.yaml", meshYAML)
	write(t, dir, "reviews.yaml", entry("reviews-1", "reviews", "127.0.0.10"))
	write(t, dir, "ratings.yaml", entry("ratings-1", "ratings", "127.0.0.20"))
	return dir
}

func write(t testing.TB, dir, name, content string) {
	t.Helper()
	// Write then rename, so the watcher never reads half a file.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func startCP(t testing.TB, dir string, lis net.Listener) *controlplane.ControlPlane {
	t.Helper()
	cp, err := controlplane.Start(context.Background(), controlplane.Options{
		ConfigPaths: []string{dir},
		XDSListener: lis,
		Log:         slog.New(slog.DiscardHandler),
		Debounce:    10 * time.Millisecond,
		MaxDelay:    50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := cp.Stop(); err != nil {
				t.Errorf("control plane: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return cp
}

func listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	lis, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// testDecode stands in for xdsresource's Types with the generated types:
// these tests are about the protocol, not about resource validation.
func testDecode(typeURL string, b []byte) (string, any, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return "", nil, err
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(b, m); err != nil {
		return "", nil, err
	}
	switch x := m.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return x.GetClusterName(), x, nil
	case interface{ GetName() string }:
		return x.GetName(), m, nil
	}
	return "", nil, fmt.Errorf("no name in %s", typeURL)
}

// recorder collects what Apply is given.
type recorder struct {
	ch chan Update[any]
}

func (r *recorder) apply(u Update[any]) error {
	select {
	case r.ch <- u:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("test recorder full")
	}
}

// next returns the next update, failing after d.
func (r *recorder) next(t *testing.T, d time.Duration, what string) Update[any] {
	t.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(d):
		t.Fatalf("no update within %v: waiting for %s", d, what)
		return Update[any]{}
	}
}

// none asserts that nothing has been applied so far, nor is for d. An
// update already waiting is always caught (a select between it and an
// expired timer would pick either).
func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	fail := func(u Update[any]) {
		t.Helper()
		t.Fatalf("unexpected update of %s: updated %v, removed %v", u.TypeURL, u.Updated, u.Removed)
	}
	select {
	case u := <-r.ch:
		fail(u)
	default:
	}
	if d <= 0 {
		return
	}
	select {
	case u := <-r.ch:
		fail(u)
	case <-time.After(d):
	}
}

// initial waits for the first update of every type and returns them by
// type.
func (r *recorder) initial(t *testing.T) map[string]Update[any] {
	t.Helper()
	got := map[string]Update[any]{}
	for len(got) < 4 {
		u := r.next(t, 5*time.Second, "the initial state of every type")
		if _, dup := got[u.TypeURL]; dup {
			t.Fatalf("second update of %s before the initial state of all types", u.TypeURL)
		}
		got[u.TypeURL] = u
	}
	return got
}

// testType is a resource type decoded by a function of the type URL and
// the bytes, such as testDecode.
type testType struct {
	url    string
	decode func(typeURL string, b []byte) (string, any, error)
}

func (t testType) TypeURL() string { return t.url }

func (t testType) Decode(b []byte) (string, any, error) { return t.decode(t.url, b) }

// testSubs subscribes to the sidecar's four types, in its order, all
// decoded by decode and applied by apply.
func testSubs(decode func(string, []byte) (string, any, error), apply func(Update[any]) error) []Subscription {
	var subs []Subscription
	for _, u := range []string{xdsresource.ClusterType, xdsresource.EndpointType, xdsresource.ListenerType, xdsresource.RouteType} {
		subs = append(subs, Subscribe(testType{u, decode}, apply))
	}
	return subs
}

// erased hands typed updates to an apply of untyped ones.
func erased[T any](apply func(Update[any]) error) func(Update[T]) error {
	return func(u Update[T]) error {
		m := make(map[string]any, len(u.Resources))
		for k, v := range u.Resources {
			m[k] = v
		}
		return apply(Update[any]{TypeURL: u.TypeURL, Version: u.Version, Resources: m, Updated: u.Updated, Removed: u.Removed})
	}
}

// runClient starts Run and stops it (waiting) at cleanup.
func runClient(t *testing.T, cfg Config, subs ...Subscription) {
	t.Helper()
	if cfg.Node.Namespace == "" {
		cfg.Node = testNode
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, subs...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context ending")
		}
	})
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

func endpointAddrs(t *testing.T, u Update[any], name string) []string {
	t.Helper()
	cla, ok := u.Resources[name].(*endpointv3.ClusterLoadAssignment)
	if !ok {
		t.Fatalf("no ClusterLoadAssignment %s in %v", name, sortedKeys(u.Resources))
	}
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	return out
}

// The initial state of all four types arrives, then a folder edit arrives
// as a delta holding only the changed resource.
func TestInitialStateThenDelta(t *testing.T) {
	leak.Check(t)
	dir := meshDir(t)
	cp := startCP(t, dir, listen(t, "tcp", "127.0.0.1:0"))
	rec := &recorder{ch: make(chan Update[any], 64)}
	runClient(t, Config{Server: cp.Addr.String()}, testSubs(testDecode, rec.apply)...)

	init := rec.initial(t)
	for _, typ := range []string{xdsresource.ClusterType, xdsresource.EndpointType} {
		u := init[typ]
		for _, want := range []string{reviewsCluster, ratingsCluster} {
			if _, ok := u.Resources[want]; !ok {
				t.Errorf("%s: no %s in %v", typ, want, sortedKeys(u.Resources))
			}
		}
		if d := cmp.Diff(sortedKeys(u.Resources), u.Updated); d != "" {
			t.Errorf("%s: the initial update lists everything as updated (-resources +updated):\n%s", typ, d)
		}
	}
	if _, ok := init[xdsresource.RouteType].Resources["9080"]; !ok {
		t.Errorf("no route configuration 9080 in %v", sortedKeys(init[xdsresource.RouteType].Resources))
	}
	if len(init[xdsresource.ListenerType].Resources) == 0 {
		t.Error("no listeners")
	}
	if d := cmp.Diff([]string{"127.0.0.10"}, endpointAddrs(t, init[xdsresource.EndpointType], reviewsCluster)); d != "" {
		t.Errorf("reviews endpoints (-want +got):\n%s", d)
	}

	write(t, dir, "reviews.yaml", entry("reviews-1", "reviews", "127.0.0.11"))
	u := rec.next(t, 5*time.Second, "the edited endpoint")
	if u.TypeURL != xdsresource.EndpointType {
		t.Fatalf("edit of an endpoint pushed %s", u.TypeURL)
	}
	if d := cmp.Diff([]string{reviewsCluster}, u.Updated); d != "" || len(u.Removed) > 0 {
		t.Fatalf("delta (-want +got updated):\n%s\nremoved: %v", d, u.Removed)
	}
	if d := cmp.Diff(sortedKeys(init[xdsresource.EndpointType].Resources), sortedKeys(u.Resources)); d != "" {
		t.Errorf("the full set changed (-before +after):\n%s", d)
	}
	if d := cmp.Diff([]string{"127.0.0.11"}, endpointAddrs(t, u, reviewsCluster)); d != "" {
		t.Errorf("reviews endpoints (-want +got):\n%s", d)
	}
	// The update handed out before is the caller's: never modified.
	if d := cmp.Diff([]string{"127.0.0.10"}, endpointAddrs(t, init[xdsresource.EndpointType], reviewsCluster)); d != "" {
		t.Errorf("an earlier update was modified (-want +got):\n%s", d)
	}
	rec.none(t, 300*time.Millisecond)

	// Removing a Service removes its resources.
	write(t, dir, "mesh.yaml", strings.SplitN(meshYAML, "---\n", 2)[0])
	removed := map[string][]string{}
	deadline := time.Now().Add(5 * time.Second)
	for len(removed[xdsresource.ClusterType]) == 0 || len(removed[xdsresource.EndpointType]) == 0 {
		u := rec.next(t, time.Until(deadline), "the removal of ratings")
		removed[u.TypeURL] = append(removed[u.TypeURL], u.Removed...)
		if _, ok := u.Resources[ratingsCluster]; ok && len(u.Removed) > 0 {
			t.Errorf("%s: removed %v but ratings still in the set", u.TypeURL, u.Removed)
		}
	}
	for _, typ := range []string{xdsresource.ClusterType, xdsresource.EndpointType} {
		if d := cmp.Diff([]string{ratingsCluster}, removed[typ]); d != "" {
			t.Errorf("%s removed (-want +got):\n%s", typ, d)
		}
	}
}

// switchable is a decoder and an Apply that can be told to refuse.
type switchable struct {
	rejectDecode atomic.Value // string: resource name to refuse
	rejectApply  atomic.Value // string: refuse updates touching this name
	rec          *recorder
}

func (s *switchable) decode(typeURL string, b []byte) (string, any, error) {
	name, v, err := testDecode(typeURL, b)
	if err == nil && name == s.rejectDecode.Load() {
		return "", nil, errors.New("endpoints[0].lb_endpoints[0]: test decoder refuses")
	}
	return name, v, err
}

func (s *switchable) apply(u Update[any]) error {
	if slices.Contains(u.Updated, s.rejectApply.Load().(string)) {
		return errors.New("test apply refuses")
	}
	return s.rec.apply(u)
}

// A resource that does not decode, or an update Apply refuses, is NACKed
// with the reason; the control plane records it and the client keeps its
// last good set.
func TestNACKKeepsLastGood(t *testing.T) {
	leak.Check(t)
	dir := meshDir(t)
	cp := startCP(t, dir, listen(t, "tcp", "127.0.0.1:0"))
	sw := &switchable{rec: &recorder{ch: make(chan Update[any], 64)}}
	sw.rejectDecode.Store("")
	sw.rejectApply.Store("")
	runClient(t, Config{Server: cp.Addr.String()}, testSubs(sw.decode, sw.apply)...)
	sw.rec.initial(t)

	nacks := func() (int, string) {
		for _, st := range cp.XDS.Status() {
			if st.ID == testNode.NodeID() {
				return st.NACKs, st.LastNACK
			}
		}
		t.Fatalf("proxy %s not connected: %+v", testNode.NodeID(), cp.XDS.Status())
		return 0, ""
	}
	waitNACKs := func(n int) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, last := nacks()
			if got == n {
				return last
			}
			if got > n || time.Now().After(deadline) {
				t.Fatalf("control plane saw %d NACKs, want %d (last: %s)", got, n, last)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	sw.rejectDecode.Store(ratingsCluster)
	write(t, dir, "ratings.yaml", entry("ratings-1", "ratings", "127.0.0.21"))
	want := `resources[0] "` + ratingsCluster + `": endpoints[0].lb_endpoints[0]: test decoder refuses`
	if last := waitNACKs(1); last != want {
		t.Errorf("NACK reason:\n got %s\nwant %s", last, want)
	}
	sw.rec.none(t, 200*time.Millisecond)

	sw.rejectApply.Store(reviewsCluster)
	write(t, dir, "reviews.yaml", entry("reviews-1", "reviews", "127.0.0.11"))
	if last := waitNACKs(2); last != "applying: test apply refuses" {
		t.Errorf("NACK reason: %s", last)
	}
	sw.rec.none(t, 200*time.Millisecond)

	// The next accepted change builds on the last good set: ratings keeps
	// its old endpoint, which the control plane will not send again.
	sw.rejectDecode.Store("")
	sw.rejectApply.Store("")
	write(t, dir, "reviews.yaml", entry("reviews-1", "reviews", "127.0.0.12"))
	u := sw.rec.next(t, 5*time.Second, "the accepted change")
	if d := cmp.Diff([]string{reviewsCluster}, u.Updated); d != "" {
		t.Fatalf("updated (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"127.0.0.20"}, endpointAddrs(t, u, ratingsCluster)); d != "" {
		t.Errorf("ratings after its NACK (-last good +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"127.0.0.12"}, endpointAddrs(t, u, reviewsCluster)); d != "" {
		t.Errorf("reviews (-want +got):\n%s", d)
	}
	waitSynced(t, cp)
}

func waitSynced(t *testing.T, cp *controlplane.ControlPlane) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := cp.XDS.Status()
		if len(st) == 1 && st[0].Synced {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not synced: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a log sink shared by the client goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// When the control plane goes away the client keeps its config, retries
// with backoff, and on the restarted control plane resyncs by sending the
// versions it holds: only what changed meanwhile arrives.
func TestReconnectResyncsOnlyChanges(t *testing.T) {
	leak.Check(t)
	dir := meshDir(t)
	lis := listen(t, "tcp", "127.0.0.1:0")
	addr := lis.Addr().String()
	cp1 := startCP(t, dir, lis)
	rec := &recorder{ch: make(chan Update[any], 64)}
	logs := &lockedBuffer{}
	runClient(t, Config{
		Server:  addr,
		Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 80 * time.Millisecond},
		Log:     slog.New(slog.NewTextHandler(logs, nil)),
	}, testSubs(testDecode, rec.apply)...)
	rec.initial(t)

	if err := cp1.Stop(); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "ratings.yaml", entry("ratings-1", "ratings", "127.0.0.22"))
	// Several failed attempts: with a backoff of at most 80ms, at least
	// three within 400ms.
	for start, n := time.Now(), 0; n < 3; n = strings.Count(logs.String(), "reconnecting") {
		if time.Since(start) > 400*time.Millisecond {
			t.Fatalf("%d reconnect attempts in 400ms with a backoff of at most 80ms; logs:\n%s", n, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec.none(t, 0)

	cp2 := startCP(t, dir, listen(t, "tcp", addr))
	u := rec.next(t, 5*time.Second, "the resync")
	if u.TypeURL != xdsresource.EndpointType {
		t.Fatalf("resync applied %s (updated %v): only the ratings endpoints changed", u.TypeURL, u.Updated)
	}
	if d := cmp.Diff([]string{ratingsCluster}, u.Updated); d != "" {
		t.Fatalf("resent after reconnect (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"127.0.0.22"}, endpointAddrs(t, u, ratingsCluster)); d != "" {
		t.Errorf("ratings (-want +got):\n%s", d)
	}
	if _, ok := u.Resources[reviewsCluster]; !ok {
		t.Errorf("reviews lost across the reconnect: %v", sortedKeys(u.Resources))
	}
	rec.none(t, 300*time.Millisecond)
	waitSynced(t, cp2)
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the logs do not say why the stream failed:\n%s", logs.String())
	}
}

// Local mode serves xDS on a Unix socket.
func TestUnixSocket(t *testing.T) {
	leak.Check(t)
	dir := meshDir(t)
	// Socket paths are limited to ~107 bytes; TempDir names can be long.
	sockDir, err := os.MkdirTemp("", "xds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "xds.sock")
	startCP(t, dir, listen(t, "unix", sock))
	rec := &recorder{ch: make(chan Update[any], 64)}
	runClient(t, Config{Server: "unix://" + sock}, testSubs(testDecode, rec.apply)...)
	init := rec.initial(t)
	if _, ok := init[xdsresource.ClusterType].Resources[reviewsCluster]; !ok {
		t.Errorf("no %s over the Unix socket: %v", reviewsCluster, sortedKeys(init[xdsresource.ClusterType].Resources))
	}
}

// A server refusal reaches the caller as the server's gRPC status.
func TestServerRefusalIsReported(t *testing.T) {
	leak.Check(t)
	cp := startCP(t, meshDir(t), listen(t, "tcp", "127.0.0.1:0"))
	c, err := newClient(Config{Server: cp.Addr.String(), Node: Node{ID: "no-namespace"}, Log: slog.New(slog.DiscardHandler)}, testSubs(testDecode, func(Update[any]) error { return nil })...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.session(ctx)
	var st *StatusError
	if !errors.As(err, &st) || st.Code != codeInvalidArgument || !strings.Contains(st.Message, "names no namespace") {
		t.Fatalf("got %v, want InvalidArgument about the namespace", err)
	}
	if !strings.Contains(err.Error(), "InvalidArgument") {
		t.Errorf("error does not name the code: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	apply := func(Update[any]) error { return nil }
	subs := testSubs(testDecode, apply)
	a := Subscribe(testType{"a", testDecode}, apply)
	for _, tc := range []struct {
		cfg  Config
		subs []Subscription
		want string
	}{
		{Config{Server: "nowhere", Node: testNode}, subs, "host:port"},
		{Config{Server: "127.0.0.1:1"}, subs, "Node.ID"},
		{Config{Server: "127.0.0.1:1", Node: testNode}, []Subscription{a, a}, "twice"},
		{Config{Server: "127.0.0.1:1", Node: testNode}, nil, "at least one Subscription"},
		{Config{Server: "127.0.0.1:1", Node: testNode}, []Subscription{Subscribe[any](testType{"a", testDecode}, nil)}, "no apply function"},
	} {
		err := Run(context.Background(), tc.cfg, tc.subs...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

// Subscribed with xdsresource's Types, the control plane's resources
// arrive as xdsresource's typed structs, none NACKed.
func TestDefaultDecoder(t *testing.T) {
	leak.Check(t)
	cp := startCP(t, meshDir(t), listen(t, "tcp", "127.0.0.1:0"))
	rec := &recorder{ch: make(chan Update[any], 64)}
	cfg := Config{Server: cp.Addr.String(), Node: testNode, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg,
			Subscribe(xdsresource.ClusterResource, erased[*xdsresource.Cluster](rec.apply)),
			Subscribe(xdsresource.EndpointResource, erased[*xdsresource.ClusterLoadAssignment](rec.apply)),
			Subscribe(xdsresource.ListenerResource, erased[*xdsresource.Listener](rec.apply)),
			Subscribe(xdsresource.RouteResource, erased[*xdsresource.RouteConfig](rec.apply)))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	init := rec.initial(t)
	c, ok := init[xdsresource.ClusterType].Resources[reviewsCluster].(*xdsresource.Cluster)
	if !ok || c.Name != reviewsCluster {
		t.Errorf("cluster %s decoded as %#v", reviewsCluster, init[xdsresource.ClusterType].Resources[reviewsCluster])
	}
	cla, ok := init[xdsresource.EndpointType].Resources[reviewsCluster].(*xdsresource.ClusterLoadAssignment)
	if !ok || len(cla.Localities) != 1 || len(cla.Localities[0].Endpoints) != 1 || cla.Localities[0].Endpoints[0].Address != "127.0.0.10" {
		t.Errorf("endpoints of %s decoded as %#v", reviewsCluster, init[xdsresource.EndpointType].Resources[reviewsCluster])
	}
	if _, ok := init[xdsresource.RouteType].Resources["9080"].(*xdsresource.RouteConfig); !ok {
		t.Errorf("route configuration 9080 decoded as %#v", init[xdsresource.RouteType].Resources["9080"])
	}
	for name, l := range init[xdsresource.ListenerType].Resources {
		if _, ok := l.(*xdsresource.Listener); !ok {
			t.Errorf("listener %s decoded as %T", name, l)
		}
	}
	if st := cp.XDS.Status(); len(st) != 1 || st[0].NACKs != 0 {
		t.Errorf("the control plane's own config was NACKed: %+v", st)
	}
	waitSynced(t, cp)
}
