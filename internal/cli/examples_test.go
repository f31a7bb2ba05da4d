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

// TestExamplesKeepSeedsUnchanged checks that examples/config carries the
// user's examples byte for byte: they must work unchanged.
func TestExamplesKeepSeedsUnchanged(t *testing.T) {
	seeds, _ := filepath.Glob(filepath.Join(sharedDir, "seed-examples", "*.yaml"))
	if len(seeds) == 0 {
		t.Fatal("no seed examples found (the shared folder must sit beside the repo)")
	}
	for _, s := range seeds {
		want, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(repoRoot, "examples", "config", filepath.Base(s)))
		if err != nil {
			t.Errorf("examples/config lacks the seed example %s: %v", filepath.Base(s), err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("examples/config/%s differs from the seed example", filepath.Base(s))
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
