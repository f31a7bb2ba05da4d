package meshtest_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

func reviews(base string, subset string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec: {address: %[1]s.2, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2}
spec: {address: %[1]s.3, labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: %[2]s}}]
`, base, subset)
}

// Two versions of reviews behind sidecars and a client sidecar, all to v1;
// a GET from the client reaches v1 and its app saw the request; once the
// VirtualService is rewritten to v2 and WaitSynced returns, the next GET
// reaches v2.
func TestMeshRoutesAndFollowsEdits(t *testing.T) {
	const base = "127.77.200"
	m := meshtest.New(t, reviews(base, "v1"))
	m.Backend(base+".2:9080", "v1", nil)
	m.Backend(base+".3:9080", "v2", nil)
	m.Sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"})
	m.Sidecar("reviews-v2", base+".3", map[string]string{"app": "reviews", "version": "v2"})
	sleep := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	m.WaitSynced()

	c := sleep.Client()
	defer c.CloseIdleConnections()
	resp, body := meshtest.Get(t, c, "http://reviews:9080/a?b=c", map[string]string{"X-Request-Id": "r1"})
	if resp.StatusCode != 200 || body != "v1" {
		t.Fatalf("GET reviews: %d %q, want 200 from v1", resp.StatusCode, body)
	}
	for h, want := range map[string]string{"X-Seen-Path": "/a?b=c", "X-Seen-Host": "reviews:9080", "X-Seen-Request-Id": "r1"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if m.Pod("sleep") != sleep {
		t.Errorf("Pod(sleep) is not the sidecar Sidecar returned")
	}

	before := m.ControlPlane().Store.Snapshot().Version
	m.Write("mesh.yaml", strings.Replace(m.Read("mesh.yaml"), "subset: v1}}]", "subset: v2}}]", 1))
	meshtest.Eventually(t, 10*time.Second, func() string {
		if m.ControlPlane().Store.Snapshot().Version == before {
			return "the control plane did not read the edit"
		}
		return ""
	})
	// Once every sidecar has ACKed the edit, the very next request follows it.
	m.WaitSynced()
	if _, body := meshtest.Get(t, c, "http://reviews:9080/", nil); body != "v2" {
		t.Errorf("after WaitSynced reviews answers from %s, want v2", body)
	}
}

// A control plane restarted on the same address: the sidecar reconnects
// and WaitSynced sees it in sync with the new control plane.
func TestMeshRestartsTheControlPlane(t *testing.T) {
	const base = "127.77.201"
	m := meshtest.New(t, reviews(base, "v1"))
	m.Backend(base+".2:9080", "v1", nil)
	m.Sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"})
	m.WaitSynced()
	addr := m.XDSAddr()
	old := m.ControlPlane()
	if err := m.StopControlPlane(); err != nil {
		t.Fatal(err)
	}
	lis := listenAgain(t, addr)
	m.StartControlPlane(lis)
	if m.ControlPlane() == old {
		t.Fatal("ControlPlane is still the stopped one")
	}
	m.WaitSynced()
}

// A client that rejects what the control plane sends: the mesh counts the
// NACK, names the client and the reason, and fails the test at its end
// unless the test allowed NACKs.
func TestMeshFailsTheTestOnANACK(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allowed=%v", allow), func(t *testing.T) {
			rec := &recorder{TB: t}
			m := meshtest.New(rec, reviews("127.77.202", "v1"))
			if allow {
				m.AllowNACKs("this test sends one")
			}
			meshtest.NACKClusters(t, m.XDSAddr(), "sidecar~127.77.202.9~nacker.default~default.svc.cluster.local")
			meshtest.Eventually(t, 10*time.Second, func() string {
				if n := m.NACKs(); n != 1 {
					return fmt.Sprintf("the mesh counted %d NACKs, want 1", n)
				}
				return ""
			})
			rec.runCleanups()
			got := strings.Join(rec.errors, "\n")
			if allow {
				if got != "" {
					t.Errorf("with NACKs allowed the mesh still failed the test: %s", got)
				}
				return
			}
			for _, want := range []string{"NACKed 1 response", "nacker", "cannot use this cluster"} {
				if !strings.Contains(got, want) {
					t.Errorf("the mesh's failure lacks %q:\n%s", want, got)
				}
			}
		})
	}
}

// listenAgain listens on addr once the stopped control plane has let it
// go.
func listenAgain(t *testing.T, addr string) net.Listener {
	t.Helper()
	var lis net.Listener
	meshtest.Eventually(t, 5*time.Second, func() string {
		var err error
		if lis, err = net.Listen("tcp", addr); err != nil {
			return err.Error()
		}
		return ""
	})
	return lis
}

// recorder is a testing.TB whose failures and cleanups the test inspects
// instead of suffering.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errors   []string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) { r.Error(fmt.Sprintf(format, args...)) }

func (r *recorder) Error(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprint(args...))
}

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errors) > 0
}

// Logf keeps the failing mesh's control plane log out of the real test.
func (r *recorder) Logf(string, ...any) {}

func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recorder) runCleanups() {
	r.mu.Lock()
	fs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
