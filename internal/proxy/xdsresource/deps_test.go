package xdsresource_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/needs"
)

// TestLean keeps the decoder off go-control-plane, grpc and protobuf's
// generated and reflection packages: the sidecar's memory budget depends on
// it (see the package doc).
func TestLean(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		needs.Skip(t, "no go command")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/envoyproxy/", "google.golang.org/grpc", "google.golang.org/protobuf/types/", "google.golang.org/protobuf/proto", "google.golang.org/protobuf/reflect/"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("xdsresource links %s", pkg)
			}
		}
	}
}
