package local

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// The default that local mode assumes is the proxy's own.
func TestProxyDrainDefault(t *testing.T) {
	if proxyDrainDuration != sidecar.DefaultDrainDuration {
		t.Fatalf("local mode assumes trellis-proxy drains for %s by default; it drains for %s", proxyDrainDuration, sidecar.DefaultDrainDuration)
	}
}

// A sidecar local mode starts gets MeshConfig defaultConfig's
// terminationDrainDuration and concurrency as its flags, and the time to
// drain before it is killed; without them it runs with the proxy's
// defaults and the former 10 s grace.
func TestSidecarTakesMeshDefaultConfig(t *testing.T) {
	const meshCM = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      terminationDrainDuration: 12s
      concurrency: 0
`
	for _, c := range []struct {
		name   string
		config string
		args   []string
		grace  time.Duration
	}{
		{"none", "", nil, 10 * time.Second},
		{"meshconfig", meshCM, []string{"--drain-duration=12s", "--concurrency=0"}, 17 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := testMeshWithConfig(t, c.config)
			w := &Workload{Namespace: "default", Name: "web", Pod: PodTemplate{Sidecar: true, ServiceAccount: "default"}}
			p := m.newPod(w, "web-0", netip.MustParseAddr("127.10.0.5"))
			if p.sidecar == nil {
				t.Fatal("no sidecar")
			}
			if d := cmp.Diff(append([]string{"/bin/trellis-proxy"}, c.args...), p.sidecar.argv); d != "" {
				t.Errorf("sidecar command (-want +got):\n%s", d)
			}
			if p.sidecarGrace != c.grace {
				t.Errorf("sidecar grace %s, want %s", p.sidecarGrace, c.grace)
			}
		})
	}
}

// testMeshWithConfig is a pod supervisor with just what newPod needs and a
// control plane reading config from a folder, as `trellis up` runs it.
func testMeshWithConfig(t *testing.T, config string) *supervisor {
	t.Helper()
	m := meshtest.New(t, config)
	state := t.TempDir()
	return &supervisor{dir: m.Dir(), stateDir: state, proxyPath: "/bin/trellis-proxy", mode: "explicit", xdsSocket: filepath.Join(state, "xds.sock"), cp: m.ControlPlane()}
}
