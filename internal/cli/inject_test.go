package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var updateInject = flag.Bool("update-inject", false, "rewrite testdata/inject/*.golden")

// runInject runs `trellis inject` with args and stdin, as a user would.
func runInject(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newInjectCmd()
	root.SilenceErrors, root.SilenceUsage = true, true
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	return out.String(), err
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "inject", name)
	if *updateInject {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update-inject to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestInjectDeploymentGolden(t *testing.T) {
	for _, tc := range []struct {
		native string
		golden string
	}{{"true", "deployment.native.golden"}, {"false", "deployment.classic.golden"}} {
		t.Run(tc.golden, func(t *testing.T) {
			out, err := runInject(t, "", "-f", "testdata/inject/deployment.yaml", "--native-sidecars="+tc.native)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, out)
			// Idempotent: a second pass is byte for byte the first.
			again, err := runInject(t, out, "-f", "-", "--native-sidecars="+tc.native)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(out, again); diff != "" {
				t.Errorf("second injection changed the output (-first +second):\n%s", diff)
			}
		})
	}
}

func TestInjectMultiDocumentEndToEnd(t *testing.T) {
	in, err := os.ReadFile("testdata/inject/multi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runInject(t, string(in)) // stdin is the default
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "multi.golden", out)

	docs := strings.Split(out, "\n---\n")
	inDocs := strings.Split(string(in), "\n---\n")
	if len(docs) != len(inDocs) {
		t.Fatalf("got %d documents, want %d", len(docs), len(inDocs))
	}
	// The Service (comments and all) and the opted-out DaemonSet pass
	// through byte for byte; the rest are injected, in order.
	for _, i := range []int{0, 4} {
		if docs[i] != inDocs[i] {
			t.Errorf("document %d changed:\n%s", i, docs[i])
		}
	}
	for i, want := range map[int]int{1: 1, 2: 1, 3: 1} {
		if got := strings.Count(docs[i], "name: trellis-proxy"); got != want {
			t.Errorf("document %d has %d trellis-proxy containers, want %d:\n%s", i, got, want, docs[i])
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(docs[i]), &m); err != nil {
			t.Errorf("document %d is not YAML: %v", i, err)
		}
	}
}

func TestInjectErrorsNameDocumentAndPath(t *testing.T) {
	in := `apiVersion: v1
kind: Service
metadata: {name: a}
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    template:
      metadata:
        annotations:
          traffic.sidecar.istio.io/excludeInboundPorts: "x"
      spec:
        containers: [{name: web, image: w}]
`
	_, err := runInject(t, in)
	want := `document 1: items[0]: Deployment "web": spec.template.metadata.annotations["traffic.sidecar.istio.io/excludeInboundPorts"]: "x" is not a port (1-65535)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
}

func TestInjectPassesThroughUnchangedStream(t *testing.T) {
	in := "---\n# only config\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x   # note\ndata: {a: b}\n---\n"
	out, err := runInject(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("output differs from input:\n%q\nwant\n%q", out, in)
	}
}

func TestInjectEveryKindRoundTrips(t *testing.T) {
	podSpec := "containers: [{name: app, image: a}]"
	tmpl := "template: {metadata: {labels: {app: a}}, spec: {" + podSpec + "}}"
	for kind, doc := range map[string]string{
		"Pod":         "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {" + podSpec + "}\n",
		"Deployment":  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {" + tmpl + "}\n",
		"StatefulSet": "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {" + tmpl + "}\n",
		"DaemonSet":   "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec: {" + tmpl + "}\n",
		"ReplicaSet":  "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: x}\nspec: {" + tmpl + "}\n",
		"Job":         "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec: {" + tmpl + "}\n",
		"CronJob":     "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\nspec: {schedule: '* * * * *', jobTemplate: {spec: {" + tmpl + "}}}\n",
		"DeploymentList": "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: x}\n  spec: {" + tmpl + "}\n" +
			"- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: y}\n  spec: {" + tmpl + "}\n",
	} {
		t.Run(kind, func(t *testing.T) {
			out, err := runInject(t, doc)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if kind == "DeploymentList" {
				want = 2
			}
			if got := strings.Count(out, "name: trellis-proxy\n"); got != want {
				t.Errorf("%d trellis-proxy containers, want %d:\n%s", got, want, out)
			}
			var in, back map[string]any
			if err := yaml.Unmarshal([]byte(doc), &in); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal([]byte(out), &back); err != nil {
				t.Fatalf("output is not YAML: %v\n%s", err, out)
			}
			// Everything outside the pod template is as it was (a Pod's metadata is its template's).
			if diff := cmp.Diff(in["apiVersion"], back["apiVersion"]); diff != "" || in["kind"] != back["kind"] || kind != "Pod" && !cmp.Equal(in["metadata"], back["metadata"]) {
				t.Errorf("object header changed:\n%s", out)
			}
			again, err := runInject(t, out)
			if err != nil || again != out {
				t.Errorf("second injection changed %s (err %v)", kind, err)
			}
		})
	}
}

func TestInjectIsATrellisCommand(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetArgs([]string{"inject", "-f", "testdata/inject/deployment.yaml"})
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "name: trellis-proxy\n") {
		t.Errorf("trellis inject did not inject:\n%s", out.String())
	}
}
