package http1

import (
	"testing"

	"github.com/trellismesh/trellis/internal/testing/deptest"
)

// The wire layer (http1, netio) sits below the proxy's policy: it may
// import the standard library and itself, never the packages that decide
// what to do with a message, so a new protocol front end or a test can use
// it without the connection manager, the pools or xDS.
var wireDeps = deptest.Check{
	Roots: []string{
		"github.com/trellismesh/trellis/internal/proxy/http1",
		"github.com/trellismesh/trellis/internal/proxy/netio",
	},
	Env: []string{"GOOS=linux"},
	Allow: deptest.Rules{
		"github.com/trellismesh/trellis/internal/proxy/http1": "the HTTP/1.1 wire layer itself",
		"github.com/trellismesh/trellis/internal/proxy/netio": "raw I/O and byte replay, below every protocol",
	},
	Never: deptest.Rules{
		"github.com/trellismesh/trellis/internal/proxy/hcm":         "routing and header policy build on the wire layer, not the other way round",
		"github.com/trellismesh/trellis/internal/proxy/upstream":    "clusters, pools and circuit breakers build on the wire layer, not the other way round",
		"github.com/trellismesh/trellis/internal/proxy/router":      "route matching is policy",
		"github.com/trellismesh/trellis/internal/proxy/xdsresource": "xDS config is policy",
	},
}

func TestWireDependencies(t *testing.T) {
	wireDeps.Run(t)
}
