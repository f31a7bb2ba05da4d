package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Profiles are the named starting points of `trellis up --profile`.
//
// ProfileDefault is what `trellis up` has always done: the folder's
// config and nothing else. ProfileMinimal is the first adoption phase
// (docs/adoption.md): the same, plus a mesh-wide PERMISSIVE
// PeerAuthentication that says in config what the mesh does anyway, so
// that status, the dashboard and the in-force tables show the mesh's mTLS
// mode from the first minute. Neither adds routing, resilience or
// authorization, and neither hides anything the folder holds.
const (
	ProfileDefault = "default"
	ProfileMinimal = "minimal"
)

// Profiles lists the names --profile takes, in the order help shows them.
var Profiles = []string{ProfileDefault, ProfileMinimal}

// ProfilePeerAuthenticationName names the minimal profile's mesh-wide
// PeerAuthentication. Among mesh-wide policies the first by name is the
// one in force, and this name sorts after any a user is likely to give
// (istio-system/default in Istio's docs), so a user's mesh-wide policy
// wins over the profile's; namespace and workload policies win anyway.
const ProfilePeerAuthenticationName = "zz-trellis-profile-minimal"

// profileFileName is the profile's config in the state dir, served beside
// the user's folder.
const profileFileName = "profile.yaml"

// minimalProfileYAML is the minimal profile's config: mesh-wide
// PERMISSIVE, in the default root namespace.
const minimalProfileYAML = `# Written by trellis up --profile minimal: mesh-wide PERMISSIVE mTLS.
# Sidecars talk mTLS to each other and still accept plaintext; a
# PeerAuthentication of yours (mesh-wide, namespace or workload) wins.
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: ` + ProfilePeerAuthenticationName + `
  namespace: istio-system
spec:
  mtls:
    mode: PERMISSIVE
`

// ValidProfile checks a --profile value.
func ValidProfile(name string) error {
	for _, p := range Profiles {
		if name == p {
			return nil
		}
	}
	return fmt.Errorf("--profile %q: use one of %s", name, strings.Join(Profiles, ", "))
}

// profileConfigPaths writes the profile's config into the state dir and
// returns the paths the control plane serves beside the user's folder
// (none for the default profile). A previous run's file is removed first,
// so a mesh started without the profile never serves it.
func profileConfigPaths(profile, stateDir string) ([]string, error) {
	if profile == "" {
		profile = ProfileDefault
	}
	if err := ValidProfile(profile); err != nil {
		return nil, err
	}
	path := filepath.Join(stateDir, profileFileName)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("cannot remove the last run's profile config %s: %w", path, err)
	}
	if profile == ProfileDefault {
		return nil, nil
	}
	if err := os.WriteFile(path, []byte(minimalProfileYAML), 0o644); err != nil {
		return nil, fmt.Errorf("cannot write the %s profile's config to %s: %w", profile, path, err)
	}
	return []string{path}, nil
}
