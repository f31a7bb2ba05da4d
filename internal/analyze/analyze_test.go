package analyze

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config"
)

// seedDir holds the repository's copies of the user's examples (the cli
// package's TestExamplesKeepSeedsUnchanged checks they still equal the
// originals), so the tests run on a fresh clone. The seed folder's
// phase2/permissive.yaml conflicts with strict.yaml by design, so its copy
// sits in a folder of its own.
const (
	seedDir       = "../../examples/config"
	seedPhase2Dir = "../../examples/config-phase2"
)

// parse decodes YAML documents as if each were its own file, so messages
// name them by the file given.
func parse(t *testing.T, name, data string) []*config.Object {
	t.Helper()
	f := config.ParseFile(name, []byte(data))
	for _, err := range append(f.Errors, f.Warnings...) {
		if config.IsNotInForce(err) {
			continue // the in-force table's business, tested in internal/config
		}
		t.Fatalf("%s: %v", name, err)
	}
	return f.Objects
}

func load(t *testing.T, paths ...string) []*config.Object {
	t.Helper()
	var objs []*config.Object
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, parse(t, filepath.Base(p), string(data))...)
	}
	return objs
}

func run(objs ...[]*config.Object) []string {
	var all []*config.Object
	for _, o := range objs {
		all = append(all, o...)
	}
	out := []string{}
	for _, m := range Run(all) {
		out = append(out, m.String())
	}
	return out
}

func check(t *testing.T, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

func seed(t *testing.T, names ...string) []*config.Object {
	t.Helper()
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(seedDir, n))
	}
	return load(t, paths...)
}

var allSeeds = []string{"reviews-vs.yaml", "reviews-dr.yaml", "payment-policy.yaml", "payment-retries.yaml", "split.yaml", "strict.yaml"}

const splitAndVS = "host reviews.default.svc.cluster.local has more than one routing config (TrafficSplit default/reviews-split, VirtualService default/reviews): each describes all of the host's traffic, so keep one of them"

// The user's examples, with the workloads they assume, have no Error: the
// only finding is that reviews is routed both by the VirtualService and by
// the SMI TrafficSplit, which the user should know.
func TestSeedExamples(t *testing.T) {
	got := run(seed(t, allSeeds...), load(t, "testdata/seed-workloads.yaml"))
	check(t, got,
		"Warning [TRL0001] (VirtualService default/reviews reviews-vs.yaml#1) spec.hosts[0]: "+splitAndVS,
		"Warning [TRL0001] (TrafficSplit default/reviews-split split.yaml#1) spec.service: "+splitAndVS,
	)
}

func TestSeedExamplesWithoutDestinationRule(t *testing.T) {
	got := run(seed(t, "reviews-vs.yaml", "payment-policy.yaml", "payment-retries.yaml", "strict.yaml"),
		load(t, "testdata/seed-workloads.yaml"))
	check(t, got,
		`Error [IST0101] (VirtualService default/reviews reviews-vs.yaml#1) spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v2"`,
		`Error [IST0101] (VirtualService default/reviews reviews-vs.yaml#1) spec.http[1].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v1"`,
		`Error [IST0101] (VirtualService default/reviews reviews-vs.yaml#1) spec.http[1].route[1].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v2"`,
	)
}

// Without the workloads, what the examples reference is reported.
func TestSeedExamplesAlone(t *testing.T) {
	got := run(seed(t, allSeeds...))
	check(t, got,
		`Error [IST0101] (TrafficSplit default/reviews-split split.yaml#1) spec.service: Referenced service not found: "reviews"`,
		`Warning [IST0127] (AuthorizationPolicy default/payment-policy payment-policy.yaml#1) spec.selector.matchLabels: No matching workloads for this resource with the following labels: app=payment-service`,
		`Warning [TRL0002] (AuthorizationPolicy default/payment-policy payment-policy.yaml#1) spec.rules[0].from[0].source.principals[0]: principal "cluster.local/ns/default/sa/checkout-service" names service account default/checkout-service, which no ServiceAccount defines and no workload runs as: no caller can have this identity`,
		`Warning [TRL0002] (AuthorizationPolicy default/payment-policy payment-policy.yaml#1) spec.rules[0].from[0].source.principals[1]: principal "cluster.local/ns/default/sa/refund-service" names service account default/refund-service, which no ServiceAccount defines and no workload runs as: no caller can have this identity`,
		`Warning [IST0174] (DestinationRule default/reviews reviews-dr.yaml#1) spec.host: The host reviews defined in the DestinationRule does not match any services in the mesh.`,
		"Warning [TRL0001] (VirtualService default/reviews reviews-vs.yaml#1) spec.hosts[0]: "+splitAndVS,
		"Warning [TRL0001] (TrafficSplit default/reviews-split split.yaml#1) spec.service: "+splitAndVS,
		`Warning [TRL0006] (TrafficSplit default/reviews-split split.yaml#1) spec.backends[0].service: backend service "reviews-v1" does not exist yet: its share of reviews's traffic fails with 503 until a Service default/reviews-v1 does`,
		`Warning [TRL0006] (TrafficSplit default/reviews-split split.yaml#1) spec.backends[1].service: backend service "reviews-v2" does not exist yet: its share of reviews's traffic fails with 503 until a Service default/reviews-v2 does`,
	)
}

// phase2/permissive.yaml redefines strict.yaml's PeerAuthentication; the
// file that sorts first wins, as in the store.
func TestSeedPhase2Duplicate(t *testing.T) {
	got := run(seed(t, "strict.yaml"), load(t, filepath.Join(seedPhase2Dir, "permissive.yaml")))
	check(t, got,
		`Error [TRL0005] (PeerAuthentication istio-system/default strict.yaml#1) metadata.name: PeerAuthentication istio-system/default is also defined at permissive.yaml#1; that definition is used and this one is ignored. Keep one.`,
	)
}

// The same objects in any order give the same messages, in the same order.
func TestRunIsDeterministic(t *testing.T) {
	objs := append(seed(t, allSeeds...), parse(t, "sc.yaml", reviewsV1+`
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a, namespace: bookinfo}
spec:
  workloadSelector:
    labels: {app: reviews}
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b, namespace: bookinfo}
spec:
  workloadSelector:
    labels: {app: reviews}
  egress:
  - hosts: ["./*"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v0, namespace: bookinfo}
spec:
  selector:
    matchLabels: {app: reviews}
  template:
    metadata:
      labels: {app: reviews}
    spec:
      containers:
      - {name: reviews, image: reviews}
`)...)
	want := run(objs)
	if len(want) < 10 {
		t.Fatalf("expected a rich set of messages, got %d", len(want))
	}
	for i := range 5 {
		shuffled := append([]*config.Object(nil), objs...)
		rand.New(rand.NewPCG(uint64(i), 1)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		check(t, run(shuffled), want...)
	}
	// Errors come first.
	if got := Run(objs); got[0].Severity != Error || got[len(got)-1].Severity == Error {
		t.Errorf("not sorted by severity: first %v, last %v", got[0].Severity, got[len(got)-1].Severity)
	}
}

// Objects of one name but another kind or namespace are not duplicates.
func TestDuplicates(t *testing.T) {
	objs := parse(t, "a.yaml", `
apiVersion: v1
kind: ServiceAccount
metadata: {name: web}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: other}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: default, labels: {app: web}}
`)
	check(t, run(objs),
		`Error [TRL0005] (ServiceAccount default/web a.yaml#4) metadata.name: ServiceAccount default/web is also defined at a.yaml#1; that definition is used and this one is ignored. Keep one.`,
	)
}
