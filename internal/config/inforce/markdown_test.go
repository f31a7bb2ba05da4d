package inforce

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/config.md's support matrix from the table")

const (
	configDoc   = "../../../docs/config.md"
	matrixBegin = "<!-- BEGIN in-force matrix -->\n"
	matrixEnd   = "<!-- END in-force matrix -->\n"
)

// TestDocMatrixMatchesTable keeps docs/config.md's support matrix equal to
// the table, so the docs say only what is in force.
func TestDocMatrixMatchesTable(t *testing.T) {
	b, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, matrixBegin), strings.Index(doc, matrixEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q section", configDoc, strings.TrimSpace(matrixBegin), strings.TrimSpace(matrixEnd))
	}
	want := doc[:i+len(matrixBegin)] + Markdown() + doc[j:]
	if doc == want {
		return
	}
	if *update {
		if err := os.WriteFile(configDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's support matrix differs from the in-force table: run go test ./internal/config/inforce -update", configDoc)
}
