package registry

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// bigWorld returns services Services in one namespace, each selecting
// entries WorkloadEntries: one namespace is the worst case for selector
// matching.
func bigWorld(services, entries int) string {
	var b strings.Builder
	for i := range services {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: svc-%d, namespace: big}
spec:
  clusterIP: 10.96.%d.%d
  selector: {app: svc-%d}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: grpc, port: 9090}]
`, i, i/250, i%250+1, i)
		for j := range entries {
			fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-%d-%d, namespace: big}
spec:
  address: 10.%d.%d.%d
  labels: {app: svc-%d, version: v%d, tier: backend}
  ports: {grpc: 19090}
`, i, j, 1+i/250, i%250, j+1, i, j%3)
		}
	}
	return b.String()
}

func BenchmarkBuild(b *testing.B) {
	objs := parse(b, bigWorld(1000, 10))
	b.ReportAllocs()
	for b.Loop() {
		r := Build(objs, "cluster.local")
		if n := len(r.Services()); n != 1000 {
			b.Fatalf("%d services", n)
		}
	}
}

func TestBuildIgnoresInputOrder(t *testing.T) {
	objs := parse(t, bigWorld(20, 5)+"---\n"+reviewsPods+"---\n"+sidecarWorld+"---\n"+exportWorld)
	want := Build(objs, "cluster.local")
	if got := mustLookup(t, want, "svc-0.big", "x").Instances[80]; len(got) != 5 {
		t.Fatalf("fixture selects no entries")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		rng.Shuffle(len(objs), func(i, j int) { objs[i], objs[j] = objs[j], objs[i] })
		got := Build(objs, "cluster.local")
		if d := cmp.Diff(want.Services(), got.Services()); d != "" {
			t.Fatalf("shuffled input changed the result (-want +got):\n%s", d)
		}
	}
}
