package deptest

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// graph is a small binary: cmd imports lib and fmt; lib imports ext/a/b,
// ext/c and testing.
var graph = []Package{
	{ImportPath: "fmt", Standard: true},
	{ImportPath: "testing", Standard: true, Imports: []string{"fmt"}},
	{ImportPath: "ext/a/b"},
	{ImportPath: "ext/c"},
	{ImportPath: "example.com/lib", Imports: []string{"ext/a/b", "ext/c", "fmt"}},
	{ImportPath: "example.com/cmd", Imports: []string{"example.com/lib", "fmt"}},
}

func without(pkgs []Package, path string) []Package {
	var out []Package
	for _, p := range pkgs {
		if p.ImportPath == path {
			continue
		}
		var imps []string
		for _, i := range p.Imports {
			if i != path {
				imps = append(imps, i)
			}
		}
		p.Imports = imps
		out = append(out, p)
	}
	return out
}

var allowAll = Rules{
	"example.com/...": "ours",
	"ext/a/...":       "a's tree",
	"ext/c":           "c alone",
}

// with returns a copy of rs with more rules.
func with(rs Rules, more Rules) Rules {
	out := maps.Clone(rs)
	maps.Copy(out, more)
	return out
}

func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pkgs  []Package
		allow Rules
		never Rules
		want  []string
	}{
		{
			name:  "every package allowed, every rule used",
			pkgs:  graph,
			allow: allowAll,
		},
		{
			name:  "a package on no list is named with who imports it",
			pkgs:  graph,
			allow: Rules{"example.com/...": "ours", "ext/a/...": "a's tree"},
			want:  []string{"ext/c is linked but not on the allowlist; imported by example.com/lib (example.com/cmd → example.com/lib → ext/c). Add a rule with the reason it belongs, or drop the import"},
		},
		{
			name:  "a prefix rule does not match a longer name that only starts the same",
			pkgs:  append([]Package{{ImportPath: "ext/abc"}}, graph...),
			allow: allowAll,
			want:  []string{"ext/abc is linked but not on the allowlist; it is a root. Add a rule with the reason it belongs, or drop the import"},
		},
		{
			name:  "an allow rule matching nothing is stale",
			pkgs:  without(graph, "ext/c"),
			allow: allowAll,
			want:  []string{`allow rule "ext/c" (c alone) matches no package linked any more: remove it`},
		},
		{
			name:  "a prefix rule matching nothing is stale",
			pkgs:  without(graph, "ext/a/b"),
			allow: allowAll,
			want:  []string{`allow rule "ext/a/..." (a's tree) matches no package linked any more: remove it`},
		},
		{
			name:  "an exact rule under a prefix rule is not stale",
			pkgs:  graph,
			allow: with(allowAll, Rules{"ext/a/b": "b itself"}),
		},
		{
			name:  "never wins over allow, with its reason",
			pkgs:  graph,
			allow: allowAll,
			never: Rules{"ext/a/...": "too big"},
			want: []string{
				`ext/a/b is linked but must never be (rule "ext/a/...": too big); imported by example.com/lib (example.com/cmd → example.com/lib → ext/a/b)`,
				`allow rule "ext/a/..." (a's tree) matches no package linked any more: remove it`,
			},
		},
		{
			name:  "never holds for the standard library",
			pkgs:  append(graph[:len(graph):len(graph)], Package{ImportPath: "example.com/tool", Imports: []string{"testing"}}),
			allow: allowAll,
			never: Rules{"testing": "test code only"},
			want:  []string{`testing is linked but must never be (rule "testing": test code only); imported by example.com/tool (example.com/tool → testing)`},
		},
		{
			name:  "rules without a path or a reason, or with an inner ..., are refused",
			pkgs:  graph,
			allow: with(allowAll, Rules{"ext/...c": "x", "example.com/cmd": " "}),
			never: Rules{"": "nothing", "/...": "everything"},
			want: []string{
				`Allow["example.com/cmd"]: needs a reason`,
				`Allow["ext/...c"]: "..." is only allowed as a final "/..."`,
				`Never[""]: needs a package path`,
				`Never["/..."]: needs a package path`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check{Allow: tc.allow, Never: tc.never}.Problems(tc.pkgs)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParse(t *testing.T) {
	got, err := parse([]byte("fmt\ttrue\terrors io\nexample.com/x\tfalse\t\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{{ImportPath: "fmt", Standard: true, Imports: []string{"errors", "io"}}, {ImportPath: "example.com/x"}}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("parse (-want +got):\n%s", diff)
	}
	if _, err := parse([]byte("fmt true")); err == nil || !strings.Contains(err.Error(), "want path, standard and imports") {
		t.Errorf("parse of a line without tabs = %v", err)
	}
}

// recorder catches what Run does to its test, instead of ending the real one.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

// Without a go command the check cannot run: a skip on a developer's
// machine, a failure in CI, where a skipped dependency check would let any
// import through.
func TestRunWithoutGo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		Check{Roots: []string{"."}, Allow: allowAll}.Run(r)
		if ci == "true" && !strings.Contains(r.failed, "no go command") {
			t.Errorf("CI=true: Run failed with %q, want a failure naming the missing go command", r.failed)
		}
		if ci == "" && (!strings.Contains(r.skipped, "no go command") || r.failed != "") {
			t.Errorf("CI unset: Run skipped with %q and failed with %q, want a skip", r.skipped, r.failed)
		}
	}
}
