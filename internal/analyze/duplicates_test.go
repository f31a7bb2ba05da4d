package analyze

import (
	"testing"

	"github.com/trellismesh/trellis/internal/config"
)

const saWeb = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  labels: {app: web}
`

// The same object in two files, as manifest folders often have it, is
// what `kubectl apply -f DIR` accepts: no message, and the first file's
// copy is the one analysed. A third copy that differs is still an error.
func TestIdenticalDuplicatesAccepted(t *testing.T) {
	a := parse(t, "a.yaml", saWeb)
	b := parse(t, "b.yaml", "# the same account, spelt differently\nkind: ServiceAccount\napiVersion: v1\nmetadata: {namespace: default, labels: {app: web}, name: web}\n")
	check(t, run(b, a))

	w, _ := newWorld(append(b, a...))
	key := config.Key{GroupKind: config.ServiceAccount, Namespace: "default", Name: "web"}
	if got := w.keys[key].Source.File; got != "a.yaml" {
		t.Errorf("analysed the copy in %s, want a.yaml's", got)
	}
	if n := len(w.byKind[config.ServiceAccount]); n != 1 {
		t.Errorf("%d ServiceAccounts analysed, want 1", n)
	}

	c := parse(t, "c.yaml", saWeb+"automountServiceAccountToken: false\n")
	check(t, run(a, b, c),
		`Error [TRL0005] (ServiceAccount default/web c.yaml#1) metadata.name: ServiceAccount default/web is also defined at a.yaml#1; that definition is used and this one is ignored. Keep one.`,
	)
}
