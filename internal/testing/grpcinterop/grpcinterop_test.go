package grpcinterop

import (
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(clientEnv); cfg != "" {
		os.Exit(runClient(cfg))
	}
	if cfg := os.Getenv(serverEnv); cfg != "" {
		os.Exit(runServer(cfg)) // mtls_test.go
	}
	os.Exit(m.Run())
}

const fqdnTarget = "xds:///greeter.default.svc.cluster.local:7070"

// switchDeadline is how soon after a routing edit every new RPC must
// follow it (the bound; not relaxed for slow machines, since the
// pipeline takes a few hundred ms).
const switchDeadline = 2 * time.Second

// splitRouting sends weight1 of the traffic to v1 and weight2 to v2.
func splitRouting(weight1, weight2 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: greeter
  namespace: default
spec:
  hosts:
  - greeter
  http:
  - route:
    - destination:
        host: greeter
        subset: v1
      weight: %d
    - destination:
        host: greeter
        subset: v2
      weight: %d
`, weight1, weight2)
}

// headerRouting sends RPCs carrying x-trellis-canary: yes to v2 and the
// rest to v1, so either mistake (a match that does not fire, a match that
// fires on anything) shows.
const headerRouting = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: greeter
  namespace: default
spec:
  hosts:
  - greeter
  http:
  - name: canary
    match:
    - headers:
        x-trellis-canary:
          exact: "yes"
    route:
    - destination:
        host: greeter
        subset: v2
  - name: default
    route:
    - destination:
        host: greeter
        subset: v1
`

// tally counts where RPCs went.
type tally struct {
	n, failed int
	versions  map[string]int
	firstErr  string
}

func count(recs []record) tally {
	t := tally{versions: map[string]int{}}
	for _, r := range recs {
		t.n++
		if r.Err != "" {
			if t.failed == 0 {
				t.firstErr = r.Err
			}
			t.failed++
			continue
		}
		t.versions[r.Version]++
	}
	return t
}

func (t tally) share(version string) float64 {
	if t.n == 0 {
		return 0
	}
	return float64(t.versions[version]) / float64(t.n)
}

func (t tally) String() string {
	return fmt.Sprintf("%d RPCs: v1 %.1f%%, v2 %.1f%%, failed %d", t.n, 100*t.share("v1"), 100*t.share("v2"), t.failed)
}

func checkNoFailures(t *testing.T, what string, tl tally) {
	t.Helper()
	if tl.failed > 0 {
		t.Errorf("%s: %d of %d RPCs failed, first: %s", what, tl.failed, tl.n, tl.firstErr)
	}
}

// between returns the records that started in [from, to).
func between(recs []record, from, to time.Time) []record {
	var out []record
	for _, r := range recs {
		if s := r.started(); !s.Before(from) && s.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// A VirtualService splitting greeter 80/20 between v1 and v2; a grpc-go
// client makes 2000 unary RPCs through xds:///; about 80% (± 5 points)
// must be answered by v1, the rest by v2, and none may fail.
func TestWeightedSplit(t *testing.T) {
	m := startMesh(t, splitRouting(80, 20))
	c := m.startClient(clientConfig{Targets: []string{fqdnTarget}, Max: 2000, MaxDuration: time.Minute})
	c.waitReady()
	got := count(c.finish())
	t.Logf("80/20 split: %v", got)

	checkNoFailures(t, "80/20 split", got)
	if got.n != 2000 {
		t.Errorf("client made %d RPCs, want 2000", got.n)
	}
	if v1 := got.share("v1"); math.Abs(v1-0.80) > 0.05 {
		t.Errorf("v1 got %.1f%% of RPCs, want 80%% ± 5 points (%v)", 100*v1, got)
	}
	if got.versions["v1"]+got.versions["v2"] != got.n-got.failed {
		t.Errorf("RPCs answered by neither version: %v", got.versions)
	}
	m.checkNoNACKs()
}

// A VirtualService sending x-trellis-canary: yes to v2 and everything else
// to v1; a grpc-go client sends 100 RPCs each with that header, without
// it, and with another value; only the first hundred may reach v2.
func TestHeaderMatch(t *testing.T) {
	m := startMesh(t, headerRouting)
	c := m.startClient(clientConfig{
		Targets:     []string{fqdnTarget},
		Max:         300,
		MaxDuration: time.Minute,
		Metadata: []map[string]string{
			{"x-trellis-canary": "yes"},
			{},
			{"x-trellis-canary": "no"}, // present but not matching: default route
		},
	})
	c.waitReady()
	var canary, plain, other []record
	for _, r := range c.finish() {
		switch r.Seq % 3 {
		case 0:
			canary = append(canary, r)
		case 1:
			plain = append(plain, r)
		default:
			other = append(other, r)
		}
	}
	for _, tc := range []struct {
		name string
		recs []record
		want string
	}{
		{"x-trellis-canary: yes", canary, "v2"},
		{"no header", plain, "v1"},
		{"x-trellis-canary: no", other, "v1"},
	} {
		got := count(tc.recs)
		t.Logf("%s: %v", tc.name, got)
		checkNoFailures(t, tc.name, got)
		if got.n != 100 || got.versions[tc.want] != got.n {
			t.Errorf("%s: want all of 100 RPCs on %s, got %v", tc.name, tc.want, got)
		}
	}
	m.checkNoNACKs()
}

// TestLiveSwitch edits the routing file under a running client: every RPC
// that starts switchDeadline after the write must reach v2, and none may
// fail on the way.
func TestLiveSwitch(t *testing.T) {
	m := startMesh(t, splitRouting(80, 20))
	c := m.startClient(clientConfig{Targets: []string{fqdnTarget}, Max: 100000, MaxDuration: time.Minute, Pace: time.Millisecond})
	c.waitReady()
	c.waitRecords(100, startupTimeout)

	at := m.setRouting(splitRouting(0, 100))
	sleepUntil(at.Add(switchDeadline + time.Second))
	recs := c.stop()

	checkNoFailures(t, "whole run", count(recs))
	before := count(between(recs, time.Time{}, at))
	if before.versions["v1"] == 0 {
		t.Errorf("before the edit v1 got nothing: %v", before)
	}
	after := between(recs, at.Add(switchDeadline), at.Add(time.Hour))
	if len(after) < 50 {
		t.Fatalf("only %d RPCs started %v after the edit; the client was too slow to tell", len(after), switchDeadline)
	}
	if got := count(after); got.versions["v2"] != got.n {
		t.Errorf("RPCs started %v after the edit: want all on v2, got %v", switchDeadline, got)
	}
	t.Logf("before the edit: %v; from %v after: %v", before, switchDeadline, count(after))
	if lat, ok := switchLatency(recs, at, "v2"); ok {
		t.Logf("switch latency (write to the first of the final all-v2 run): %v", lat.Round(time.Millisecond))
	}
	m.checkNoNACKs()
}

// switchLatency measures from at to the start of the final run of RPCs
// answered by want. Under a split the old config also sends some RPCs to
// want, so this can come out a few RPCs early, never late.
func switchLatency(recs []record, at time.Time, want string) (time.Duration, bool) {
	i := len(recs)
	for i > 0 && recs[i-1].Version == want && recs[i-1].Err == "" {
		i--
	}
	if i == len(recs) {
		return 0, false
	}
	for ; i < len(recs); i++ {
		if s := recs[i].started(); !s.Before(at) {
			return s.Sub(at), true
		}
	}
	return 0, false
}

// TestInvalidEditKeepsRouting writes broken routing under a running
// client: each must leave the 80/20 split as it was, with no RPC failing,
// and a valid edit afterwards must still apply. Each broken version would,
// if applied, move traffic far from 80/20.
func TestInvalidEditKeepsRouting(t *testing.T) {
	m := startMesh(t, splitRouting(80, 20))
	c := m.startClient(clientConfig{Targets: []string{fqdnTarget}, Max: 1000000, MaxDuration: time.Minute})
	c.waitReady()
	c.waitRecords(100, startupTimeout)

	const rejected = "invalid config; the last good version stays in force"
	type window struct {
		name     string
		from, to time.Time
	}
	var windows []window
	for _, tc := range []struct{ name, routing string }{
		// Clamped to 0 this would send everything to v2.
		{"negative weight", strings.Replace(splitRouting(80, 20), "weight: 80", "weight: -5", 1)},
		// With the typo ignored this would be 0/100.
		{"unknown field", strings.Replace(splitRouting(0, 100), "  - route:", "  - timout: 5s\n    route:", 1)},
		{"broken YAML", splitRouting(0, 100) + "  - route: [\n"},
	} {
		seen := strings.Count(m.Log(), rejected)
		at := m.setRouting(tc.routing)
		// The rejection is the only sign that the edit was read; the
		// folder's periodic rescan backs up a missed file event.
		m.waitLogAbove(rejected, seen, 10*time.Second)
		sleepUntil(at.Add(2 * time.Second))
		windows = append(windows, window{tc.name, at, time.Now()})
	}

	at := m.setRouting(splitRouting(0, 100))
	sleepUntil(at.Add(switchDeadline + time.Second))
	recs := c.stop()

	for _, w := range windows {
		got := count(between(recs, w.from, w.to))
		t.Logf("%s: %v", w.name, got)
		checkNoFailures(t, w.name, got)
		// 5 points, or 5 standard deviations when a slow machine made
		// fewer RPCs than that bound needs; a wrongly applied edit moves
		// v1 by 30 points or more.
		tol := math.Max(0.05, 5*math.Sqrt(0.8*0.2/float64(max(got.n, 1))))
		if got.n < 100 || math.Abs(got.share("v1")-0.80) > tol {
			t.Errorf("%s: want v1 80%% ± %.1f points over at least 100 RPCs, got %v", w.name, 100*tol, got)
		}
	}
	after := count(between(recs, at.Add(switchDeadline), at.Add(time.Hour)))
	t.Logf("valid edit afterwards, from %v: %v", switchDeadline, after)
	if after.n < 50 || after.versions["v2"] != after.n {
		t.Errorf("valid edit after the broken ones: want all of at least 50 RPCs on v2 from %v on, got %v", switchDeadline, after)
	}
	checkNoFailures(t, "whole run", count(recs))
	m.checkNoNACKs()
}

// TestTargets resolves every form of the service's name a client in its
// namespace may write. Each must carry the service's routing, not just
// reach it, so the header route decides and the answer is exact. (Under
// the default route the split between versions depends on which
// connection is ready first, which a loaded machine makes arbitrary.)
func TestTargets(t *testing.T) {
	m := startMesh(t, headerRouting)
	targets := []string{
		"xds:///greeter:7070",
		"xds:///greeter.default:7070",
		"xds:///greeter.default.svc:7070",
		fqdnTarget,
	}
	clients := make([]*client, len(targets))
	for i, target := range targets {
		clients[i] = m.startClient(clientConfig{
			Targets:     []string{target},
			Max:         40,
			MaxDuration: time.Minute,
			Metadata:    []map[string]string{{"x-trellis-canary": "yes"}, {}},
		})
	}
	var wg sync.WaitGroup
	results := make([][]record, len(targets))
	for i, c := range clients {
		wg.Go(func() {
			select {
			case <-c.done:
			case <-time.After(startupTimeout + exitTimeout):
			}
			results[i] = c.stop()
		})
	}
	wg.Wait()
	for i, target := range targets {
		got := count(results[i])
		t.Logf("%s: %v", target, got)
		checkNoFailures(t, target, got)
		if got.n != 40 {
			t.Errorf("%s: client made %d RPCs, want 40", target, got.n)
		}
		for _, r := range results[i] {
			want := "v1"
			if r.Seq%2 == 0 {
				want = "v2"
			}
			if r.Err == "" && r.Version != want {
				t.Errorf("%s: RPC %d answered by %q, want %s", target, r.Seq, r.Version, want)
				break
			}
		}
	}
	m.checkNoNACKs()
}

// TestOneClientManyTargets calls several services from one process, as an
// application does: each new channel adds names to the xDS subscription
// the process already holds, and must still get its resources.
func TestOneClientManyTargets(t *testing.T) {
	m := startMesh(t, headerRouting)
	targets := []string{"xds:///greeter:7070", "xds:///greeter-v2:7071", fqdnTarget}
	c := m.startClient(clientConfig{Targets: targets, Max: 90, MaxDuration: time.Minute})
	c.waitReady()
	byTarget := make([][]record, len(targets))
	for _, r := range c.finish() {
		byTarget[r.Target] = append(byTarget[r.Target], r)
	}
	for i, want := range []string{"v1", "v2", "v1"} {
		got := count(byTarget[i])
		t.Logf("%s: %v", targets[i], got)
		checkNoFailures(t, targets[i], got)
		if got.n != 30 || got.versions[want] != got.n {
			t.Errorf("%s: want all of 30 RPCs on %s, got %v", targets[i], want, got)
		}
	}
	m.checkNoNACKs()
}

// TestOtherNamespace calls greeter from another namespace by the name
// Kubernetes DNS resolves there; the routing of greeter's own namespace
// applies. (That the bare name does not resolve from there is left to
// translate's tests: grpc-go only gives up on a listener it never
// received after a 15s timer.)
func TestOtherNamespace(t *testing.T) {
	m := startMesh(t, headerRouting)
	c := m.startClient(clientConfig{
		Targets:     []string{"xds:///greeter.default:7070"},
		Max:         40,
		MaxDuration: time.Minute,
		Metadata:    []map[string]string{{"x-trellis-canary": "yes"}, {}},
		Namespace:   "other",
	})
	c.waitReady()
	var canary, plain []record
	for _, r := range c.finish() {
		if r.Seq%2 == 0 {
			canary = append(canary, r)
		} else {
			plain = append(plain, r)
		}
	}
	for _, tc := range []struct {
		name string
		recs []record
		want string
	}{
		{"x-trellis-canary: yes", canary, "v2"},
		{"no header", plain, "v1"},
	} {
		got := count(tc.recs)
		t.Logf("from namespace other, %s: %v", tc.name, got)
		checkNoFailures(t, tc.name, got)
		if got.n != 20 || got.versions[tc.want] != got.n {
			t.Errorf("from namespace other, %s: want all of 20 RPCs on %s, got %v", tc.name, tc.want, got)
		}
	}
	m.checkNoNACKs()
}
