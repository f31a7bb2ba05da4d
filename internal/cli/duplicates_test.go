package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A folder with the same ServiceAccount in two files validates, as
// `kubectl apply -f DIR` accepts it; two different definitions of one
// object still fail with TRL0005.
func TestValidateDuplicateObjects(t *testing.T) {
	const sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n  labels: {app: web}\n"
	t.Run("identical", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{
			"a.yaml": sa,
			"b.yaml": "# web's account, as the other manifest also has it\nkind: ServiceAccount\napiVersion: v1\nmetadata: {name: web, namespace: default, labels: {app: web}}\n",
		})
		code, out, errOut := validate(t, dir, false, ".")
		if code != 0 || errOut != "" {
			t.Errorf("exit %d, stderr:\n%s", code, errOut)
		}
		want := []string{"ok   a.yaml: 1 ServiceAccount", "ok   b.yaml: 1 ServiceAccount"}
		if diff := cmp.Diff(want, lines(out)); diff != "" {
			t.Errorf("stdout (-want +got):\n%s", diff)
		}
	})
	t.Run("different", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{
			"a.yaml": sa,
			"b.yaml": strings.Replace(sa, "{app: web}", "{app: web2}", 1),
		})
		code, _, errOut := validate(t, dir, false, ".")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		want := []string{
			"Error [TRL0005] (ServiceAccount default/web b.yaml#1) metadata.name: ServiceAccount default/web is also defined at a.yaml#1; that definition is used and this one is ignored. Keep one.",
			"validation failed: 1 analysis error",
		}
		if diff := cmp.Diff(want, lines(errOut)); diff != "" {
			t.Errorf("stderr (-want +got):\n%s", diff)
		}
	})
}
