package store

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/config"
)

// Two files holding the same object with the same content are no
// conflict: the first file's copy is used and nothing is warned, as the
// analyzer accepts them. Copies that differ are still warned about.
func TestDuplicatesAcrossFiles(t *testing.T) {
	const sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}\n"
	var logs bytes.Buffer
	s := New(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	s.ApplyFile(config.ParseFile("b.yaml", []byte("# again\n"+strings.Replace(sa, "{name: web}", "{name: web, namespace: default}", 1))))
	s.ApplyFile(config.ParseFile("a.yaml", []byte(sa)))

	key := config.Key{GroupKind: config.ServiceAccount, Namespace: "default", Name: "web"}
	if got := s.Snapshot().Get(key).Source.File; got != "a.yaml" {
		t.Errorf("kept the copy in %s, want a.yaml's", got)
	}
	if n := len(s.Snapshot().OfKind(config.ServiceAccount)); n != 1 {
		t.Errorf("%d ServiceAccounts in the snapshot, want 1", n)
	}
	if logs.Len() > 0 {
		t.Errorf("identical copies were warned about:\n%s", logs.String())
	}

	s.ApplyFile(config.ParseFile("c.yaml", []byte(sa+"automountServiceAccountToken: false\n")))
	if got := logs.String(); !strings.Contains(got, "different content") || !strings.Contains(got, "ignored=c.yaml#1") {
		t.Errorf("no warning naming c.yaml's differing copy:\n%s", got)
	}
	if got := s.Snapshot().Get(key).Source.File; got != "a.yaml" {
		t.Errorf("kept the copy in %s after a differing one came, want a.yaml's", got)
	}
}
