package main

import (
	"testing"

	"github.com/trellismesh/trellis/internal/testing/deptest"
)

// The sidecar must stay small (RSS ≤ 20 MB idle, docs/performance.md,
// "Sidecar"), so what it links is a list, not whatever an import drags in.
// To add a dependency, add an allow rule below with the one-line reason
// the proxy needs it; the test names any package that is on neither list,
// with who imports it, and any rule that no longer matches a package.
//
// The rules hold for the binary and for every package under
// internal/proxy, linked yet or not.
var proxyDeps = deptest.Check{
	Roots: []string{".", "github.com/trellismesh/trellis/internal/proxy/..."},
	// The sidecar runs on Linux; listing for Linux keeps the answer the
	// same on a developer's Mac.
	Env: []string{"GOOS=linux"},
	Allow: deptest.Rules{
		"github.com/trellismesh/trellis/cmd/trellis-proxy":            "the binary itself",
		"github.com/trellismesh/trellis/internal/proxy/...":           "the sidecar's own packages; what they import is what this list checks",
		"github.com/trellismesh/trellis/internal/dnsserver":           "DNS sockets and framing shared with the mesh resolver, so the two cannot drift; standard library only",
		"github.com/trellismesh/trellis/internal/telemetry/tracing":   "the sidecar's spans: W3C/B3 propagation, sampling, OTLP encoded by hand with protowire and sent over grpcwire or net/http",
		"github.com/trellismesh/trellis/internal/telemetry/metrics":   "Istio's standard metrics: interned series, Prometheus text written directly, x-envoy-peer-metadata in protowire; standard library and protowire only",
		"github.com/trellismesh/trellis/internal/telemetry/accesslog": "the access log: Istio's TEXT and JSON lines, buffered file writers; standard library only",

		"golang.org/x/sys/unix":             "socket calls the standard library lacks: SO_ORIGINAL_DST (origdst), a non-blocking MSG_PEEK liveness check of pooled connections (upstream)",
		"golang.org/x/net/dns/dnsmessage":   "DNS message parsing for the DNS proxy (the standard library's copy is internal)",
		"golang.org/x/net/http/httpguts":    "header name and value validity exactly as net/http checks them (hcm's HTTP/2 header limits)",
		"golang.org/x/net/http2/hpack":      "decodes HTTP/2 header blocks so hcm can enforce header limits on them (h2limits.go)",
		"golang.org/x/net/idna":             "imported by httpguts, not by the proxy",
		"golang.org/x/text/secure/bidirule": "imported by idna, not by the proxy",
		"golang.org/x/text/transform":       "imported by idna, not by the proxy",
		"golang.org/x/text/unicode/bidi":    "imported by idna, not by the proxy",
		"golang.org/x/text/unicode/norm":    "imported by idna, not by the proxy",

		"google.golang.org/protobuf/encoding/protowire": "xDS is decoded straight from wire bytes (xdsresource); ADS messages (xdsclient), the CA's CreateCertificate request (certs) and OTLP spans (telemetry/tracing) are encoded by hand",
		"google.golang.org/protobuf/internal/errors":    "imported by protowire, not by the proxy",
		"google.golang.org/protobuf/internal/detrand":   "imported by protowire, not by the proxy",
	},
	Never: deptest.Rules{
		"github.com/envoyproxy/...":              "go-control-plane's generated types: with grpc ~18 MB of RSS before serving anything; xdsresource decodes the fields the proxy honours itself",
		"google.golang.org/grpc/...":             "grpc: grpcwire frames the ADS stream and the CA call itself over net/http's HTTP/2",
		"google.golang.org/genproto/...":         "generated Google API types, which only go-control-plane needs",
		"google.golang.org/protobuf/proto":       "protobuf's reflection runtime: protowire is all the decoder needs",
		"google.golang.org/protobuf/reflect/...": "protobuf's reflection runtime: protowire is all the decoder needs",
		"google.golang.org/protobuf/types/...":   "generated well-known types (Any, Duration, Struct): xdsresource reads them from the wire",
		"k8s.io/...":                             "Kubernetes: the control plane reads the API server, the proxy only xDS",
		"sigs.k8s.io/...":                        "Kubernetes (Gateway API, controller-runtime): the control plane's, never the proxy's",
		"istio.io/...":                           "Istio's API types: the control plane translates them, the proxy sees only xDS",

		"github.com/trellismesh/trellis/internal/redirect": "installs the nftables capture (nftables, netlink); trellis up does that (as a pod's init step would); the proxy only reads its result (internal/proxy/origdst)",
		"github.com/google/nftables/...":                   "nftables is the capture installer's (internal/redirect), not the proxy's",
		"github.com/mdlayher/...":                          "netlink, which only nftables needs",

		"github.com/trellismesh/trellis/internal/analyze/...":      "control-plane code",
		"github.com/trellismesh/trellis/internal/cli/...":          "control-plane code (the trellis command)",
		"github.com/trellismesh/trellis/internal/config/...":       "control-plane code",
		"github.com/trellismesh/trellis/internal/controlplane/...": "control-plane code",
		"github.com/trellismesh/trellis/internal/demo/...":         "control-plane code (trellis demo)",
		"github.com/trellismesh/trellis/internal/local/...":        "control-plane code (trellis up's node side)",
		"github.com/trellismesh/trellis/internal/registry/...":     "control-plane code",
		"github.com/trellismesh/trellis/internal/store/...":        "control-plane code",
		"github.com/trellismesh/trellis/internal/translate/...":    "control-plane code",
		"github.com/trellismesh/trellis/internal/watch/...":        "control-plane code",
		"github.com/trellismesh/trellis/internal/xds/...":          "control-plane code (the ADS server)",

		"testing": "test code has no place in the sidecar; helpers go in internal/testing",
		"github.com/trellismesh/trellis/internal/testing/...": "test harnesses, for tests only",
	},
}

func TestDependencies(t *testing.T) {
	proxyDeps.Run(t)
}
