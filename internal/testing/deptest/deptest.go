package deptest

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/needs"
)

// Rules map an import path, or a prefix ending in "/...", to one line
// saying why the package may (or must never) be linked. A map, so that a
// path listed twice does not compile.
type Rules map[string]string

// rule is one entry of Rules.
type rule struct{ Pkg, Why string }

// sorted returns the rules in path order, so messages come out the same
// every run.
func (rs Rules) sorted() []rule {
	out := make([]rule, 0, len(rs))
	for _, p := range slices.Sorted(maps.Keys(rs)) {
		out = append(out, rule{p, rs[p]})
	}
	return out
}

// Package is one node of the import graph, as go list -deps reports it.
type Package struct {
	ImportPath string
	Standard   bool
	Imports    []string
}

// Check is a dependency policy for the packages Roots and everything they
// import.
type Check struct {
	// Roots are go list patterns: the binary's main package, and any
	// packages that must keep to the same rules although the binary does
	// not link them yet.
	Roots []string
	// Env is added to go list's environment, e.g. GOOS=linux, so that the
	// answer does not depend on the machine the test runs on.
	Env   []string
	Allow Rules
	Never Rules
}

// Run lists the dependencies with the go command and reports every
// problem as a test error. Without a go command it skips (fails under
// CI=true, see needs).
func (c Check) Run(t testing.TB) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		needs.Skip(t, "deptest: no go command to list dependencies with: %v", err)
		return
	}
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}\t{{.Standard}}\t{{join .Imports \" \"}}"}, c.Roots...)
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), c.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deptest: go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	pkgs, err := parse(out)
	if err != nil {
		t.Fatal(err)
	}
	// A go list that found next to nothing means the roots are wrong, and
	// every package check below would pass vacuously.
	if len(pkgs) < len(c.Roots)+1 {
		t.Fatalf("deptest: go list found only %d packages for %v", len(pkgs), c.Roots)
	}
	for _, p := range c.Problems(pkgs) {
		t.Error(p)
	}
}

func parse(out []byte) ([]Package, error) {
	var pkgs []Package
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\n")
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("deptest: go list line %q: want path, standard and imports", line)
		}
		pkgs = append(pkgs, Package{ImportPath: f[0], Standard: f[1] == "true", Imports: strings.Fields(f[2])})
	}
	return pkgs, nil
}

// Problems returns what is wrong with pkgs under the rules, one message
// each, in a stable order: malformed rules, then linked packages the
// never list forbids, then packages on neither list, then stale allow
// rules. None means the dependencies keep to the rules.
func (c Check) Problems(pkgs []Package) []string {
	var probs []string
	allow, never := c.Allow.sorted(), c.Never.sorted()
	probs = append(probs, checkRules("Allow", allow)...)
	probs = append(probs, checkRules("Never", never)...)
	if len(probs) > 0 {
		return probs
	}

	importers := map[string][]string{}
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			importers[imp] = append(importers[imp], p.ImportPath)
		}
	}
	used := make([]bool, len(allow))
	var denied, unlisted []string
	for _, p := range pkgs {
		// Never rules hold for the standard library too ("testing" has
		// no place in a binary); the allowlist is for everything else.
		if r, ok := match(never, p.ImportPath); ok {
			denied = append(denied, fmt.Sprintf("%s is linked but must never be (rule %q: %s); %s", p.ImportPath, r.Pkg, r.Why, via(p.ImportPath, importers)))
			continue
		}
		if p.Standard {
			continue
		}
		i := slices.IndexFunc(allow, func(r rule) bool { return matches(r.Pkg, p.ImportPath) })
		if i < 0 {
			unlisted = append(unlisted, fmt.Sprintf("%s is linked but not on the allowlist; %s. Add a rule with the reason it belongs, or drop the import", p.ImportPath, via(p.ImportPath, importers)))
			continue
		}
		// Every rule that matches counts as used, so that an exact rule
		// under a prefix rule is not called stale.
		for j, r := range allow {
			if matches(r.Pkg, p.ImportPath) {
				used[j] = true
			}
		}
	}
	probs = append(probs, denied...)
	probs = append(probs, unlisted...)
	for i, r := range allow {
		if !used[i] {
			probs = append(probs, fmt.Sprintf("allow rule %q (%s) matches no package linked any more: remove it", r.Pkg, r.Why))
		}
	}
	return probs
}

// checkRules reports rules that cannot mean what their author wanted.
func checkRules(list string, rules []rule) []string {
	var probs []string
	for _, r := range rules {
		at := fmt.Sprintf("%s[%q]", list, r.Pkg)
		switch {
		case r.Pkg == "" || r.Pkg == "/...":
			probs = append(probs, fmt.Sprintf("%s: needs a package path", at))
		case strings.Contains(strings.TrimSuffix(r.Pkg, "/..."), "..."):
			probs = append(probs, fmt.Sprintf(`%s: "..." is only allowed as a final "/..."`, at))
		}
		if strings.TrimSpace(r.Why) == "" {
			probs = append(probs, fmt.Sprintf("%s: needs a reason", at))
		}
	}
	return probs
}

func match(rules []rule, path string) (rule, bool) {
	for _, r := range rules {
		if matches(r.Pkg, path) {
			return r, true
		}
	}
	return rule{}, false
}

func matches(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	return path == pattern
}

// via says who imports path, and one chain from a root down to it, so the
// failure names the import to remove.
func via(path string, importers map[string][]string) string {
	direct := importers[path]
	if len(direct) == 0 {
		return "it is a root"
	}
	// Walk up through importers to a package nothing imports (a root);
	// breadth first, so the chain is a shortest one.
	parent := map[string]string{path: ""}
	queue := []string{path}
	root := ""
	for len(queue) > 0 && root == "" {
		p := queue[0]
		queue = queue[1:]
		for _, imp := range importers[p] {
			if _, ok := parent[imp]; ok {
				continue
			}
			parent[imp] = p
			if len(importers[imp]) == 0 {
				root = imp
				break
			}
			queue = append(queue, imp)
		}
	}
	msg := "imported by " + strings.Join(direct, ", ")
	if root != "" {
		var chain []string
		for p := root; p != ""; p = parent[p] {
			chain = append(chain, p)
		}
		msg += " (" + strings.Join(chain, " → ") + ")"
	}
	return msg
}
