package translate

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/registry"
)

// Virtual IPs are domains too, IPv6 ones bracketed as in an authority.
func TestDomainsForBracketsIPv6(t *testing.T) {
	svc := &registry.Service{Hostname: "reviews.default.svc.cluster.local", Name: "reviews", Namespace: "default",
		Addresses: []string{"10.96.0.20", "fd00:96::20"}}
	got := domainsFor(svc, 9080, "other", true)
	want := []string{
		"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080",
		"reviews.default", "reviews.default:9080",
		"reviews.default.svc", "reviews.default.svc:9080",
		"10.96.0.20", "10.96.0.20:9080",
		"[fd00:96::20]", "[fd00:96::20]:9080",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("domains (-want +got):\n%s", diff)
	}
}
