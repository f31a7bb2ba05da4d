// Package proxy_test guards what the sidecar links. The proxy must stay
// small (RSS ≤ 20 MB idle): go-control-plane's generated types plus grpc
// alone cost ~18 MB, and nothing of the control plane, Kubernetes or Istio
// belongs in it.
package proxy_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

func TestProxyDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.CommandContext(context.Background(), "go", "list", "-deps", "-f", "{{.ImportPath}}", "./...", "github.com/trellismesh/trellis/cmd/trellis-proxy").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/envoyproxy/",
		"google.golang.org/grpc",
		"google.golang.org/genproto",
		"google.golang.org/protobuf/types/",
		"k8s.io/",
		"sigs.k8s.io/",
		"istio.io/",
		"github.com/trellismesh/trellis/internal/xds",
		"github.com/trellismesh/trellis/internal/translate",
		"github.com/trellismesh/trellis/internal/config",
		"github.com/trellismesh/trellis/internal/store",
		"github.com/trellismesh/trellis/internal/registry",
		"github.com/trellismesh/trellis/internal/controlplane",
	}
	var seen int
	for _, p := range strings.Fields(string(out)) {
		seen++
		for _, bad := range forbidden {
			if strings.HasPrefix(p, bad) {
				t.Errorf("the proxy's packages link %s", p)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("go list found only %d packages: %s", seen, out)
	}
}
