package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/uptest"
	"github.com/trellismesh/trellis/internal/xds"
)

// `trellis proxy-status` against a real `trellis up`: one row per pod
// with a sidecar, named pod.namespace, SYNCED for every type, and the
// control plane replica that serves it; -o json is /debug/syncz.
func TestProxyStatusUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	m := uptest.Start(t, dashboardDir)
	st, err := local.ReadState(m.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range st.Pods {
		if p.Sidecar != nil {
			want = append(want, p.Name+"."+p.Namespace)
		}
	}
	sort.Strings(want)
	if len(want) < 2 {
		t.Fatalf("pods with sidecars = %v, want at least sleep and ratings", want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var errOut string
		var code int
		out, errOut, code = m.Trellis(ctx, "proxy-status")
		problem := ""
		if code != 0 {
			problem = fmt.Sprintf("exit %d: %s", code, errOut)
		} else {
			var got []string
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if f := strings.Fields(lines[0]); !cmp.Equal(f, []string{"NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"}) {
				t.Fatalf("header = %q", lines[0])
			}
			for _, l := range lines[1:] {
				f := strings.Fields(l)
				if len(f) != 8 || f[1] != "local" || strings.Join(f[2:6], " ") != "SYNCED SYNCED SYNCED SYNCED" || f[6] == "" {
					problem = "row not SYNCED in local: " + l
				}
				got = append(got, f[0])
			}
			sort.Strings(got)
			if d := cmp.Diff(want, got); d != "" && problem == "" {
				problem = "proxies (-want +got):\n" + d
			}
		}
		if problem == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trellis proxy-status: %s\n%s", problem, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	js, errOut, code := m.Trellis(ctx, "proxy-status", "-o", "json")
	if code != 0 {
		t.Fatalf("proxy-status -o json: exit %d: %s", code, errOut)
	}
	var sz controlplane.Syncz
	if err := json.Unmarshal([]byte(js), &sz); err != nil {
		t.Fatalf("proxy-status -o json is not /debug/syncz: %v\n%s", err, js)
	}
	if len(sz.Proxies) != len(want) || sz.ControlPlane == "" {
		t.Errorf("-o json: %d proxies from %q, want %d from a named replica", len(sz.Proxies), sz.ControlPlane, len(want))
	}
	if !strings.Contains(out, sz.ControlPlane) {
		t.Errorf("table does not name the replica %q:\n%s", sz.ControlPlane, out)
	}
}

// A NACK shows as STALE with the proxy's error after the table; a
// non-sidecar node id is shown whole.
func TestPrintProxyStatusNACK(t *testing.T) {
	sz := &controlplane.Syncz{ControlPlane: "cp-1", Proxies: []xds.ProxySync{{
		Node: "sidecar~10.0.0.1~sleep-1.default~default.svc.cluster.local", Version: 7,
		CDS: xds.TypeSync{State: xds.Stale, NACK: "bad cluster"}, LDS: xds.TypeSync{State: xds.Synced},
		EDS: xds.TypeSync{State: xds.NotSent}, RDS: xds.TypeSync{State: xds.Synced},
	}, {Node: "grpc-client", CDS: xds.TypeSync{State: xds.Synced}, LDS: xds.TypeSync{State: xds.NotSent}, EDS: xds.TypeSync{State: xds.NotSent}, RDS: xds.TypeSync{State: xds.NotSent}}}}
	var b bytes.Buffer
	if err := printProxyStatus(&b, sz, "local"); err != nil {
		t.Fatal(err)
	}
	want := `NAME              CLUSTER   CDS      LDS        EDS        RDS        ISTIOD   VERSION
sleep-1.default   local     STALE    SYNCED     NOT SENT   SYNCED     cp-1     7
grpc-client       local     SYNCED   NOT SENT   NOT SENT   NOT SENT   cp-1     0
sleep-1.default CDS rejected: bad cluster
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
}

// --xds-debug reads a `trellis controlplane`'s monitoring address: no
// proxies connected, the header and nothing else; a wrong address says so.
func TestProxyStatusXDSDebug(t *testing.T) {
	mon := freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Execute(ctx, []string{"controlplane", "--config", t.TempDir(), "--xds-address", freeLoopbackAddr(t),
			"--secure-xds-address", "", "--ca-dir", "", "--monitoring-addr", mon, "--log-level", "error"}, &bytes.Buffer{}, &stderr)
	}()
	var out, errOut bytes.Buffer
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out.Reset()
		errOut.Reset()
		if Execute(context.Background(), []string{"proxy-status", "--xds-debug", mon}, &out, &errOut) == 0 {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("controlplane exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy-status --xds-debug %s: %s", mon, errOut.String())
		}
	}
	if f := strings.Fields(out.String()); !cmp.Equal(f, []string{"NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"}) {
		t.Errorf("with no proxies, output = %q, want the header only", out.String())
	}
	errOut.Reset()
	if code := Execute(context.Background(), []string{"proxy-status", "--xds-debug", "http://" + freeLoopbackAddr(t)}, &bytes.Buffer{}, &errOut); code == 0 || !strings.Contains(errOut.String(), "cannot reach the control plane's monitoring server") {
		t.Errorf("unreachable --xds-debug: exit %d, %q", code, errOut.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("controlplane exit %d: %s", code, stderr.String())
	}
}
