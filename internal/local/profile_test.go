package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/config"
	security "istio.io/api/security/v1beta1"
)

// TestProfileConfigPaths: minimal serves exactly one mesh-wide PERMISSIVE
// PeerAuthentication (no selector, root namespace), named after
// istio-system/default so a user's mesh-wide policy of that name is the
// one in force; default serves nothing and removes a previous run's file;
// an unknown profile is refused with the names that work.
func TestProfileConfigPaths(t *testing.T) {
	sd := t.TempDir()
	paths, err := profileConfigPaths(ProfileMinimal, sd)
	if err != nil || len(paths) != 1 {
		t.Fatalf("minimal: %v, %v", paths, err)
	}
	data, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	f := config.ParseFile(paths[0], data)
	if len(f.Errors) > 0 || len(f.Objects) != 1 {
		t.Fatalf("minimal profile's config: %d objects, errors %v", len(f.Objects), f.Errors)
	}
	o := f.Objects[0]
	pa, ok := o.Spec.(*security.PeerAuthentication)
	if !ok || o.Namespace != config.DefaultRootNamespace || o.Name != ProfilePeerAuthenticationName ||
		len(pa.GetSelector().GetMatchLabels()) != 0 || pa.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_PERMISSIVE {
		t.Errorf("minimal profile serves %s %s/%s %v, want a mesh-wide PERMISSIVE PeerAuthentication", o.Kind, o.Namespace, o.Name, o.Spec)
	}
	if "default" >= ProfilePeerAuthenticationName {
		t.Errorf("%q sorts before a user's istio-system/default, and would be the mesh-wide policy in force", ProfilePeerAuthenticationName)
	}

	paths, err = profileConfigPaths(ProfileDefault, sd)
	if err != nil || len(paths) != 0 {
		t.Fatalf("default: %v, %v", paths, err)
	}
	if _, err := os.Stat(filepath.Join(sd, profileFileName)); !os.IsNotExist(err) {
		t.Errorf("default left the minimal profile's file in the state dir: %v", err)
	}
	if paths, err := profileConfigPaths("", sd); err != nil || len(paths) != 0 {
		t.Errorf(`"" is default: %v, %v`, paths, err)
	}
	if _, err := profileConfigPaths("demo", sd); err == nil || !strings.Contains(err.Error(), "use one of default, minimal") {
		t.Errorf("unknown profile: %v", err)
	}
}
