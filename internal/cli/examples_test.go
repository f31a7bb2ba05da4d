package cli

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/analyze"
	"github.com/trellismesh/trellis/internal/config"
)

// repoRoot is the repository root, relative to this package.
const repoRoot = "../.."

// TestExamples loads every config file under examples/ and docs/ and
// requires it to be valid. Each folder is one config world: its files are
// analysed together and must raise no Error-level finding (a folder is how
// an example keeps deliberately conflicting variants apart).
func TestExamples(t *testing.T) {
	dirs := map[string]bool{}
	for _, top := range []string{"examples", "docs"} {
		root := filepath.Join(repoRoot, top)
		if _, err := os.Stat(root); os.IsNotExist(err) {
			continue
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && config.IsConfigFile(d.Name()) {
				dirs[filepath.Dir(p)] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !dirs[filepath.Join(repoRoot, "examples", "config")] {
		t.Fatal("examples/config has no config files")
	}
	for _, dir := range sortedKeys(dirs) {
		t.Run(filepath.ToSlash(strings.TrimPrefix(dir, repoRoot+string(filepath.Separator))), func(t *testing.T) {
			files, err := config.Load([]string{dir}, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				for _, e := range f.Errors {
					t.Error(e)
				}
				for _, w := range f.Warnings {
					// Fields not in force are reported, not refused;
					// TestSeedExamplesNotInForce pins which.
					if config.IsNotInForce(w) {
						t.Log(w)
						continue
					}
					t.Errorf("warning: %v", w)
				}
			}
			for _, m := range analyze.Run(config.Objects(files)) {
				if m.Severity == analyze.Error {
					t.Error(m.String())
				} else {
					t.Log(m.String())
				}
			}
		})
	}
}

// yamlBlock matches fenced YAML code blocks in Markdown.
var yamlBlock = regexp.MustCompile("(?ms)^```ya?ml[^\\n]*\\n(.*?)^```")

var hasAPIVersion = regexp.MustCompile(`(?m)^apiVersion:`)

// TestDocSnippets decodes every YAML block in docs/*.md and README.md that
// is a whole object (has an apiVersion). Snippets are fragments of a
// world, so they are not analysed together; a block meant to show an error
// is fenced as ```yaml invalid.
func TestDocSnippets(t *testing.T) {
	mds, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	mds = append(mds, filepath.Join(repoRoot, "README.md"))
	for _, md := range mds {
		data, err := os.ReadFile(md)
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		for _, m := range yamlBlock.FindAllSubmatchIndex(data, -1) {
			header := string(data[m[0] : bytes.IndexByte(data[m[0]:], '\n')+m[0]])
			block := data[m[2]:m[3]]
			if strings.Contains(header, "invalid") || !hasAPIVersion.Match(block) {
				continue
			}
			line := bytes.Count(data[:m[2]], []byte("\n")) + 1
			name := filepath.ToSlash(strings.TrimPrefix(md, repoRoot+string(filepath.Separator)))
			f := config.ParseFile(name+".yaml", block)
			for _, e := range f.Errors {
				t.Errorf("%s: block at line %d: %v", name, line, e)
			}
		}
	}
}

// sharedDir is the project's shared folder beside the repository, where
// the user's original examples live. A fresh clone has no such folder, so
// only TestExamplesKeepSeedsUnchanged reads it; every other test reads the
// repository's copies.
const sharedDir = "../../../shared"

// seedFiles are the user's examples at the top of the seed folder; each has
// a byte-for-byte copy in examples/config and in examples/shop.
var seedFiles = []string{"payment-policy.yaml", "payment-retries.yaml", "reviews-dr.yaml", "reviews-vs.yaml", "split.yaml", "strict.yaml"}

// seedCopies maps each YAML file of the seed folder (slash-separated,
// relative to it) to its copies in the repository, relative to the root.
// phase2/permissive.yaml conflicts with strict.yaml by design, so its copy
// sits in a folder of its own, as in the seed folder.
func seedCopies() map[string][]string {
	m := map[string][]string{"phase2/permissive.yaml": {"examples/config-phase2/permissive.yaml"}}
	for _, f := range seedFiles {
		m[f] = []string{"examples/config/" + f, "examples/shop/" + f}
	}
	return m
}

// TestSeedCopiesAgree checks, without the shared folder, that every copy of
// a seed example exists and that the copies of one example are identical,
// so examples/shop cannot drift from examples/config on a fresh clone.
func TestSeedCopiesAgree(t *testing.T) {
	for seed, copies := range seedCopies() {
		var first []byte
		for i, c := range copies {
			got, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(c)))
			if err != nil {
				t.Errorf("the copy of seed example %s: %v", seed, err)
				continue
			}
			if i == 0 {
				first = got
			} else if first != nil && !bytes.Equal(got, first) {
				t.Errorf("%s differs from %s: both are copies of seed example %s", c, copies[0], seed)
			}
		}
	}
}

// TestExamplesKeepSeedsUnchanged checks that the repository carries the
// user's examples byte for byte: they must work unchanged, and the other
// tests read these copies. It is the one test that reads the shared folder
// beside the repository; a clean clone (CI's included) has none, so it
// skips then.
func TestExamplesKeepSeedsUnchanged(t *testing.T) {
	seedDir := filepath.Join(sharedDir, "seed-examples")
	if _, err := os.Stat(seedDir); os.IsNotExist(err) {
		t.Skipf("no %s beside the repository (a fresh clone has none): nothing to compare the copies with", seedDir)
	} else if err != nil {
		t.Fatal(err)
	}
	copies := seedCopies()
	found := map[string]bool{}
	err := filepath.WalkDir(seedDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !config.IsConfigFile(d.Name()) {
			return err
		}
		rel, err := filepath.Rel(seedDir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		found[rel] = true
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if len(copies[rel]) == 0 {
			t.Errorf("seed example %s has no copy in the repository: copy it under examples/ and list it in seedCopies", rel)
		}
		for _, c := range copies[rel] {
			got, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(c)))
			if err != nil {
				t.Errorf("%s lacks the seed example %s: %v", c, rel, err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the seed example %s", c, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel := range copies {
		if !found[rel] {
			t.Errorf("seedCopies lists %s, which the seed folder %s does not have", rel, seedDir)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
