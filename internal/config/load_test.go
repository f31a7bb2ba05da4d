package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeTree creates files (path → content) under a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFindFiles(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"b.yaml":              nsShop,
		"a.yml":               nsShop,
		"c.JSON":              `{}`,
		"README.md":           "# not config",
		"notes.txt":           "not config",
		"sub/d.yaml":          nsShop,
		"sub/deeper/e.json":   `{}`,
		".hidden/f.yaml":      nsShop,
		"sub/.git/config.yml": "x",
	})
	rel := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			r, err := filepath.Rel(dir, p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, filepath.ToSlash(r))
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		paths     []string
		recursive bool
		want      []string
	}{
		{"folder", []string{dir}, false, []string{"a.yml", "b.yaml", "c.JSON"}},
		{"recursive skips hidden folders", []string{dir}, true, []string{"a.yml", "b.yaml", "c.JSON", "sub/d.yaml", "sub/deeper/e.json"}},
		{"named file of any extension", []string{filepath.Join(dir, "notes.txt")}, false, []string{"notes.txt"}},
		{"named file in a hidden folder", []string{filepath.Join(dir, ".hidden", "f.yaml")}, false, []string{".hidden/f.yaml"}},
		{"hidden folder named explicitly", []string{filepath.Join(dir, ".hidden")}, false, []string{".hidden/f.yaml"}},
		{"order of arguments is kept, duplicates dropped", []string{filepath.Join(dir, "sub"), filepath.Join(dir, "b.yaml"), dir}, false, []string{"sub/d.yaml", "b.yaml", "a.yml", "c.JSON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FindFiles(tc.paths, tc.recursive)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, rel(got)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFindFilesMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := FindFiles([]string{missing}, false)
	if err == nil || !strings.HasPrefix(err.Error(), "cannot read "+missing+": ") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error naming %s", err, missing)
	}
	if _, err := Load([]string{missing}, true); err == nil {
		t.Error("Load of a missing path must fail")
	}
}

func TestLoad(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"mesh.yaml":     svcReviews + "---\n" + vsReviews,
		"bad.yaml":      "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad}\n",
		"sub/ns.json":   `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}`,
		"filter.yml":    "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f}\n",
		"ignored.txt":   "junk",
		".hidden/x.yml": "junk: [",
	})
	files, err := Load([]string{dir}, true)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Path                      string
		Objects, Errors, Warnings int
	}
	var got []summary
	for _, f := range files {
		r, _ := filepath.Rel(dir, f.Path)
		got = append(got, summary{filepath.ToSlash(r), len(f.Objects), len(f.Errors), len(f.Warnings)})
	}
	want := []summary{
		{"bad.yaml", 0, 1, 0},
		{"filter.yml", 0, 0, 1},
		{"mesh.yaml", 2, 0, 0},
		{"sub/ns.json", 1, 0, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	var ids []string
	for _, o := range Objects(files) {
		ids = append(ids, o.ID())
	}
	if diff := cmp.Diff([]string{"Service default/reviews", "VirtualService default/reviews", "Namespace shop"}, ids); diff != "" {
		t.Errorf("Objects (-want +got):\n%s", diff)
	}
	// Errors name the file as found, so users can open it.
	if got := files[0].Errors[0].Error(); !strings.HasPrefix(got, filepath.Join(dir, "bad.yaml")+"#1 Namespace Bad: metadata.name: ") {
		t.Errorf("error %q does not start with the file path", got)
	}
}

func TestIsConfigFile(t *testing.T) {
	for name, want := range map[string]bool{
		"a.yaml": true, "a.YML": true, "a.json": true, "a.yaml.bak": false, "yaml": false, "a.md": false,
	} {
		if got := IsConfigFile(name); got != want {
			t.Errorf("IsConfigFile(%q) = %v, want %v", name, got, want)
		}
	}
}
