package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// examplesDir is the repository's examples folder, relative to this
// package: its config folders hold copies of the user's examples (the cli
// package checks they still equal the originals), so a fresh clone has
// them.
const examplesDir = "../../examples"

// addSeeds adds every example config file and the package's own fixtures,
// in YAML and, where the content is JSON, as .json inputs.
func addSeeds(f *testing.F, add func(data []byte, json bool)) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join(examplesDir, "*", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	if len(paths) == 0 {
		f.Fatalf("no example configs in %s: the fuzz corpus would lack the user's examples", examplesDir)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(b, false)
	}
	for _, s := range []string{svcReviews, vsReviews, nsShop, svcReviews + "---\n" + vsReviews, "---\n--- {a: 1}\n...\n"} {
		add([]byte(s), false)
	}
	for _, s := range []string{
		`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}`,
		`{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}]} {"apiVersion": "v1"}`,
		`{"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit", "metadata": {"name": "s"}, "spec": {"service": "r", "backends": [{"service": "a", "weight": "900m"}]}}`,
		`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"}, "data": {"mesh": "trustDomain: x\n"}}`,
	} {
		add([]byte(s), true)
	}
}

// FuzzParseFile checks that no input makes the decoder panic and that every
// problem it reports is a located *Error.
func FuzzParseFile(f *testing.F) {
	addSeeds(f, func(data []byte, json bool) { f.Add(data, json) })
	f.Fuzz(func(t *testing.T, data []byte, json bool) {
		name := "fuzz.yaml"
		if json {
			name = "fuzz.json"
		}
		file := ParseFile(name, data)
		for _, list := range [][]error{file.Errors, file.Warnings} {
			for _, err := range list {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("%v is %T, want *config.Error", err, err)
				}
				if ce.Source.File == "" {
					t.Fatalf("%v has no file", err)
				}
				if err.Error() == "" {
					t.Fatal("empty error message")
				}
			}
		}
		for _, o := range file.Objects {
			if o.Source.File != name || o.Source.Doc < 1 || o.Name == "" || o.Spec == nil {
				t.Fatalf("object %+v is not fully identified", o)
			}
		}
	})
}

// FuzzSplitYAML checks the document splitter: no panic, no content lost
// (every non-separator line lands in a document) and lines in order.
func FuzzSplitYAML(f *testing.F) {
	addSeeds(f, func(data []byte, _ bool) { f.Add(data) })
	f.Fuzz(func(t *testing.T, data []byte) {
		docs := splitYAML(data)
		if len(docs) == 0 {
			t.Fatal("no documents: an empty stream is one empty document")
		}
		var joined []byte
		prevLine := 0
		for _, d := range docs {
			if d.line < 1 || d.line < prevLine {
				t.Fatalf("document line %d after %d", d.line, prevLine)
			}
			prevLine = d.line
			joined = append(joined, d.data...)
		}
		// Every byte of a document comes from the input: splitting only
		// removes separator lines (and the spaces around content that
		// starts on one).
		var kept []byte
		for _, line := range bytes.SplitAfter(data, []byte("\n")) {
			tr := bytes.TrimRight(line, " \t\r\n")
			if bytes.Equal(tr, []byte("---")) || bytes.HasPrefix(tr, []byte("--- ")) {
				if rest := bytes.TrimSpace(tr[3:]); len(rest) > 0 && rest[0] != '#' {
					kept = append(kept, rest...)
					kept = append(kept, '\n')
				}
				continue
			}
			kept = append(kept, line...)
		}
		if !bytes.HasSuffix(kept, joined) {
			t.Fatalf("documents %q are not the input %q without separators", joined, kept)
		}
	})
}
