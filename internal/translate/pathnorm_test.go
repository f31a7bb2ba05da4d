package translate_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// TestPathNormalization: MeshConfig pathNormalization reaches every
// connection manager of a sidecar, inbound and outbound, as Istio sets
// normalize_path, merge_slashes and path_with_escaped_slashes_action, and
// the proxy's decoder reads them back.
func TestPathNormalization(t *testing.T) {
	keep, fwd := xdsresource.EscapedSlashesKeep, xdsresource.EscapedSlashesForward
	for _, tc := range []struct {
		setting string // "" for no MeshConfig
		want    xdsresource.PathNormalization
	}{
		{"", xdsresource.PathNormalization{Normalize: true, EscapedSlashes: keep}},
		{"DEFAULT", xdsresource.PathNormalization{Normalize: true, EscapedSlashes: keep}},
		{"BASE", xdsresource.PathNormalization{Normalize: true, EscapedSlashes: keep}},
		{"NONE", xdsresource.PathNormalization{EscapedSlashes: keep}},
		{"MERGE_SLASHES", xdsresource.PathNormalization{Normalize: true, MergeSlashes: true, EscapedSlashes: keep}},
		{"DECODE_AND_MERGE_SLASHES", xdsresource.PathNormalization{Normalize: true, MergeSlashes: true, EscapedSlashes: fwd}},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			var extra []string
			if tc.setting != "" {
				extra = append(extra, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    pathNormalization:\n      normalization: "+tc.setting+"\n")
			}
			r := translate.ForProxy(world(t, "testdata/mesh", extra...), sidecarProxy, nil)
			inbound, outbound := 0, 0
			for _, l := range r.Listeners {
				b, err := proto.Marshal(l)
				if err != nil {
					t.Fatal(err)
				}
				dl, err := xdsresource.DecodeListener(b)
				if err != nil {
					t.Fatalf("listener %s: %v", l.Name, err)
				}
				for _, fc := range dl.FilterChains {
					if fc.HTTP == nil {
						continue
					}
					if dl.Name == "virtualInbound" {
						inbound++
					} else {
						outbound++
					}
					if fc.HTTP.Paths != tc.want {
						t.Errorf("listener %s chain %q: %+v, want %+v", dl.Name, fc.Name, fc.HTTP.Paths, tc.want)
					}
				}
			}
			if inbound == 0 || outbound == 0 {
				t.Errorf("%d inbound and %d outbound connection managers, want some of each", inbound, outbound)
			}
		})
	}
}
