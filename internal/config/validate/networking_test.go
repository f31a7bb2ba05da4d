package validate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config"
)

// istioCase is one document and every error it must produce, in order.
type istioCase struct {
	name string
	yaml string
	want []string
}

func runIstioCases(t *testing.T, cases []istioCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := config.ParseFile("x.yaml", []byte(strings.TrimLeft(tc.yaml, "\n")))
			var got []string
			for _, e := range f.Errors {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if len(tc.want) == 0 && len(f.Objects) != 1 {
				t.Errorf("got %d objects, want 1", len(f.Objects))
			}
		})
	}
}

// The user's examples must load unchanged. They are read from the
// repository's copies (the cli package's TestExamplesKeepSeedsUnchanged
// checks those still equal the originals), so a fresh clone runs this;
// phase2's permissive.yaml conflicts with strict.yaml, so its copy has a
// folder of its own.
func TestSeedExamplesValidate(t *testing.T) {
	for _, dir := range []string{"../../../examples/config", "../../../examples/config-phase2"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no examples in %s", dir)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			f := config.ParseFile(name, data)
			for _, e := range f.Errors {
				t.Errorf("%v", e)
			}
			if len(f.Objects) == 0 {
				t.Errorf("%s: no objects", name)
			}
		}
	}
}

func TestVirtualService(t *testing.T) {
	const head = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
`
	const id = "x.yaml#1 VirtualService default/r: "
	runIstioCases(t, []istioCase{
		{name: "valid weighted routes", yaml: head + `
  hosts: [reviews, "*.example.com"]
  http:
  - match:
    - uri: {prefix: /api}
      headers:
        x-user: {exact: test}
        x-present: {}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 30
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 70
    timeout: 3s
    retries: {attempts: 2, perTryTimeout: 500ms, retryOn: "5xx,reset,503,unavailable"}
`},
		{name: "negative and all-zero weights", yaml: head + `
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: -1
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 0
    - destination: {host: reviews, subset: v2}
      weight: 0
`, want: []string{
			id + "spec.http[0].route[0].weight: must be >= 0",
			id + "spec.http[1].route: all weights are 0: give at least one destination a positive weight (weights are relative)",
		}},
		{name: "every problem reported", yaml: head + `
  hosts: ["", "foo*.example.com", "*"]
  http:
  - match:
    - uri: {}
      method: {prefix: ""}
      headers:
        x-a: {regex: "a("}
      port: 70000
      sourceLabels: {"app": "bad value!"}
    redirect: {uri: /x, redirectCode: 200}
    route:
    - destination: {host: reviews}
    timeout: 0s
    retries: {attempts: 3, perTryTimeout: 1500us, retryOn: "5xx,bogus,,999"}
    fault:
      abort: {httpStatus: 700, percentage: {value: 120}}
      delay: {percentage: {value: 10}}
    mirrorPercentage: {value: 150}
    corsPolicy: {allowMethods: [get], maxAge: 1500ms}
`, want: []string{
			id + "spec.hosts[0]: host must not be empty",
			id + `spec.hosts[1]: invalid host "foo*.example.com": a wildcard is only allowed as a leading "*.", as in "*.example.com"`,
			id + `spec.hosts[2]: "*" is only allowed for VirtualServices bound to gateways: name the hosts this applies to`,
			id + "spec.http[0].route: cannot have both route and redirect: keep one",
			id + "spec.http[0].fault: cannot have both fault and redirect",
			id + "spec.http[0].match[0].uri: empty match: set one of exact, prefix or regex",
			id + "spec.http[0].match[0].method.prefix: must not be empty",
			id + `spec.http[0].match[0].headers[x-a].regex: invalid RE2 regex "a(": error parsing regexp: missing closing ): ` + "`a(`" + ` (see https://github.com/google/re2/wiki/Syntax)`,
			id + "spec.http[0].match[0].port: port 70000 must be in 1..65535",
			id + `spec.http[0].match[0].sourceLabels[app]: invalid label value "bad value!": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
			id + `spec.http[0].corsPolicy.allowMethods[0]: "get" is not an HTTP method (use upper case, e.g. GET, POST, or *)`,
			id + "spec.http[0].corsPolicy.maxAge: browsers take whole seconds: use a whole number of seconds",
			id + "spec.http[0].fault.abort.percentage.value: 120 is not a percentage: must be in 0..100",
			id + "spec.http[0].fault.abort.httpStatus: HTTP status 700 must be in 200..599",
			id + "spec.http[0].fault.delay: set fixedDelay",
			id + "spec.http[0].mirrorPercentage.value: 150 is not a percentage: must be in 0..100",
			id + "spec.http[0].redirect.redirectCode: 200 is not a redirect code: use 3xx, such as 301",
			id + "spec.http[0].retries.perTryTimeout: must be a whole number of milliseconds, got 1.5ms",
			id + `spec.http[0].retries.retryOn: unknown retry policy "bogus": use Envoy's (5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, ...), gRPC's (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) or an HTTP status code`,
			id + `spec.http[0].retries.retryOn: "5xx,bogus,,999" has an empty entry: separate policies with single commas`,
			id + `spec.http[0].retries.retryOn: unknown retry policy "999": use Envoy's (5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, ...), gRPC's (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) or an HTTP status code`,
			id + "spec.http[0].timeout: must be at least 1ms, got 0s",
		}},
		{name: "route needs an action", yaml: head + `
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /}}]
`, want: []string{id + "spec.http[0]: needs route, redirect, directResponse or delegate"}},
		{name: "no routes", yaml: head + `
  hosts: [reviews]
`, want: []string{id + "spec: no routes: add http, tcp or tls routes"}},
		{name: "duplicate hosts", yaml: head + `
  hosts: ["*.example.com", a.example.com]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: a.example.com}}]
`, want: []string{id + `spec.hosts[1]: "a.example.com" overlaps hosts[0] "*.example.com": list each host once`}},
		{name: "delegate", yaml: head + `
  gateways: [gw]
  tcp:
  - route: [{destination: {host: a}}]
  http:
  - delegate: {name: other, namespace: "Bad_NS"}
    route: [{destination: {host: a}}]
`, want: []string{
			id + "spec.gateways: a VirtualService without hosts is a delegate and takes no gateways: add hosts, or remove gateways",
			id + "spec.tcp: a VirtualService without hosts is a delegate and supports only http routes: add hosts",
			id + "spec.http[0].delegate: a delegate VirtualService cannot delegate again",
			id + "spec.http[0].route: a route with delegate cannot also have route: the delegate VirtualService routes",
			id + `spec.http[0].delegate.namespace: "Bad_NS" is not a valid namespace name (lowercase letters, digits and '-', at most 63)`,
		}},
		{name: "headers, rewrite and mirrors", yaml: head + `
  hosts: [reviews]
  http:
  - headers:
      request:
        set: {":path": x, host: a.example.com}
        remove: [host]
      response:
        add: {x-ok: "100%"}
    rewrite: {authority: b.example.com, uriRegexRewrite: {match: "(", rewrite: ""}}
    mirror: {host: m}
    mirrors: [{destination: {host: "*"}, percentage: {value: -1}}]
    route: [{destination: {host: reviews}}]
`, want: []string{
			id + "spec.http[0].mirrors: cannot have both mirror and mirrors: move mirror into mirrors",
			id + `spec.http[0].headers.request.set[:path]: cannot change pseudo-header ":path"`,
			id + "spec.http[0].headers.request.remove[0]: cannot change the Host header here: use rewrite.authority",
			id + `spec.http[0].headers.response.add[x-ok]: header value "100%" has an unescaped %: write %% for a literal %, or %VARIABLE%`,
			id + `spec.http[0].mirrors[0].destination.host: "*" is not allowed here: name a host, or a wildcard such as "*.example.com"`,
			id + "spec.http[0].mirrors[0].percentage.value: -1 is not a percentage: must be in 0..100",
			id + `spec.http[0].rewrite.uriRegexRewrite.match: invalid RE2 regex "(": error parsing regexp: missing closing ): ` + "`(`" + ` (see https://github.com/google/re2/wiki/Syntax)`,
			id + "spec.http[0].rewrite.uriRegexRewrite.rewrite: required",
			id + `spec.http[0].headers.request.set[host]: the authority is already rewritten to "b.example.com": set it in one place only`,
		}},
		{name: "tls and tcp routes", yaml: head + `
  hosts: [a.example.com]
  tls:
  - match: [{sniHosts: [b.example.com], destinationSubnets: [10.0.0.1/8]}]
    route: [{destination: {host: a.example.com}}]
  tcp:
  - match: [{port: 0, destinationSubnets: ["not-an-ip"]}]
`, want: []string{
			id + `spec.tls[0].match[0].sniHosts[0]: SNI host "b.example.com" is not covered by any of the VirtualService hosts [a.example.com]`,
			id + `spec.tls[0].match[0].destinationSubnets[0]: CIDR "10.0.0.1/8" has host bits set: write 10.0.0.0/8`,
			id + `spec.tcp[0].match[0].destinationSubnets[0]: "not-an-ip" is not a valid IP address or CIDR block`,
			id + "spec.tcp[0].route: required",
		}},
		{name: "jwt claim routing needs a gateway", yaml: head + `
  hosts: [reviews]
  http:
  - match: [{headers: {"@request.auth.claims.group": {exact: admin}}}]
    route: [{destination: {host: reviews}}]
`, want: []string{id + "spec.http[0].match[0].headers[@request.auth.claims.group]: routing on JWT claims only works on gateways: add spec.gateways"}},
		{name: "export to", yaml: head + `
  hosts: [reviews]
  exportTo: [".", default, "~"]
  http:
  - route: [{destination: {host: reviews}}]
`, want: []string{
			id + `spec.exportTo[1]: duplicate: exportTo[0] already names namespace "default"`,
			id + `spec.exportTo[2]: "~" (visible to no one) is only allowed for ServiceEntry`,
			id + `spec.exportTo[2]: "~" cannot be combined with other entries`,
		}},
	})
}

func TestIstioDestinationRule(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "every problem reported", yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: "bad host"
  trafficPolicy:
    connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true, maxRetries: -1}, tcp: {connectTimeout: 0s}}
    outlierDetection: {interval: 0s, maxEjectionPercent: 150, consecutiveLocalOriginFailures: 3}
    loadBalancer: {consistentHash: {maglev: {tableSize: 100}, httpCookie: {ttl: 0s}}}
    tls: {mode: MUTUAL}
    portLevelSettings: [{port: {number: 80}}]
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1, labels: {version: v2}}
  - {name: V_2, trafficPolicy: {}}
`,
			want: []string{
				`x.yaml#1 DestinationRule default/d: spec.host: invalid host "bad host": "bad host" is not a valid DNS label (lowercase letters, digits and '-', at most 63)`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.outlierDetection.interval: must be at least 1ms, got 0s`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: only counts when splitExternalLocalOriginErrors is true: set it`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.outlierDetection.maxEjectionPercent: 150 is not a percentage: must be in 0..100`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.connectionPool.http.maxRetries: must be >= 0`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.connectionPool.http.useClientProtocol: cannot be true with h2UpgradePolicy UPGRADE: keep one`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.connectionPool.tcp.connectTimeout: must be at least 1ms, got 0s`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: required`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: 100 is not prime: Maglev needs a prime table size, such as 65537`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.tls.clientCertificate: required for MUTUAL: set it with privateKey, or use credentialName`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.tls.privateKey: required for MUTUAL: set it with clientCertificate, or use credentialName`,
				`x.yaml#1 DestinationRule default/d: spec.trafficPolicy.portLevelSettings[0]: set at least one of loadBalancer, connectionPool, outlierDetection and tls`,
				`x.yaml#1 DestinationRule default/d: spec.subsets[1].name: duplicate subset name "v1" (also subsets[0]): subset names must be unique`,
				`x.yaml#1 DestinationRule default/d: spec.subsets[2].name: "V_2" is not a valid subset name (lowercase letters, digits and '-', at most 63)`,
				`x.yaml#1 DestinationRule default/d: spec.subsets[2].trafficPolicy: empty trafficPolicy: set at least one field, or remove it`,
			}},
		{name: "valid locality weights and pools", yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST, localityLbSetting: {distribute: [{from: "us-west/*", to: {"us-west/*": 80, "us-east/*": 20}}]}}
    connectionPool: {tcp: {maxConnections: 100, connectTimeout: 30ms}, http: {http2MaxRequests: 1000}}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m}
    tls: {mode: ISTIO_MUTUAL}
`,
		},
		{name: "peak EWMA on the default and on LEAST_REQUEST", yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, annotations: {trellis.io/load-balancer: PEAK_EWMA}}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: LEAST_CONN}}]
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {localityLbSetting: {enabled: true}}}}
`,
		},
		{name: "peak EWMA with other load balancers", yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, annotations: {trellis.io/load-balancer: PEAK_EWMA}}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings: [{port: {number: 80}, loadBalancer: {consistentHash: {httpHeaderName: x-user}}}]
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
`,
			want: []string{
				`x.yaml#1 DestinationRule default/d: metadata.annotations[trellis.io/load-balancer]: PEAK_EWMA needs loadBalancer LEAST_REQUEST (or none), not ROUND_ROBIN`,
				`x.yaml#1 DestinationRule default/d: metadata.annotations[trellis.io/load-balancer]: PEAK_EWMA needs loadBalancer LEAST_REQUEST (or none), not consistentHash at spec.trafficPolicy.portLevelSettings[0].loadBalancer`,
				`x.yaml#1 DestinationRule default/d: metadata.annotations[trellis.io/load-balancer]: PEAK_EWMA needs loadBalancer LEAST_REQUEST (or none), not RANDOM at spec.subsets[0].trafficPolicy.loadBalancer`,
			}},
		{name: "unknown load balancer annotation", yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, annotations: {trellis.io/load-balancer: peak_ewma}}
spec: {host: reviews}
`,
			want: []string{
				`x.yaml#1 DestinationRule default/d: metadata.annotations[trellis.io/load-balancer]: unknown value "peak_ewma": must be PEAK_EWMA`,
			}},
	})
}

func TestIstioServiceEntry(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "ports, CIDRs and wildcard DNS hosts", yaml: `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: ["*.example.com", "a.example.com"]
  addresses: [10.0.0.0/8]
  resolution: DNS
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 80, name: http, protocol: TCP}
  - {number: 0, name: Bad, protocol: FOO}
`,
			want: []string{
				`x.yaml#1 ServiceEntry default/s: spec.addresses: CIDR addresses need resolution NONE or STATIC, not DNS`,
				`x.yaml#1 ServiceEntry default/s: spec.ports[1].number: port 80 is already defined in ports[0]`,
				`x.yaml#1 ServiceEntry default/s: spec.ports[1].name: port name "http" is already used by ports[0]`,
				`x.yaml#1 ServiceEntry default/s: spec.ports[2].number: port 0 must be in 1..65535`,
				`x.yaml#1 ServiceEntry default/s: spec.ports[2].name: invalid port name "Bad": use lowercase letters, digits and '-' (at most 63)`,
				`x.yaml#1 ServiceEntry default/s: spec.ports[2].protocol: unknown protocol "FOO": use one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, REDIS, MYSQL, HTTP_PROXY`,
				`x.yaml#1 ServiceEntry default/s: spec.hosts[0]: resolution DNS with no endpoints resolves the hosts themselves, so "*.example.com" must not be a wildcard: add endpoints, or use DYNAMIC_DNS`,
				`x.yaml#1 ServiceEntry default/s: spec.ports[1].protocol: several hosts share this port, but protocol "TCP" cannot tell them apart: use HTTP or TLS, one host per ServiceEntry, or resolution NONE`,
			}},
		{name: "STATIC needs IP endpoints on declared ports", yaml: `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [db.example.com]
  resolution: STATIC
  ports: [{number: 5432, name: pg, protocol: TCP}]
  endpoints:
  - address: db.internal
    ports: {other: 5432}
  - address: 10.1.2.3
`,
			want: []string{
				`x.yaml#1 ServiceEntry default/s: spec.endpoints[0].address: "db.internal" is not an IP address: resolution STATIC needs IP endpoints (use DNS for host names)`,
				`x.yaml#1 ServiceEntry default/s: spec.endpoints[0].ports[other]: port name "other" is not one of the ServiceEntry's ports`,
			}},
		{name: "STATIC needs endpoints", yaml: `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [db.example.com]
  resolution: STATIC
  ports: [{number: 5432, name: pg, protocol: TCP}]
`,
			want: []string{
				`x.yaml#1 ServiceEntry default/s: spec.endpoints: resolution STATIC needs endpoints (IP addresses) or a workloadSelector`,
			}},
		{name: "valid external TLS host", yaml: `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: TLS}]
`,
		},
	})
}

func TestIstioWorkloadEntry(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "bad address, port and label", yaml: `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: w}
spec:
  address: "not an address"
  ports: {http: 0}
  labels: {app: "a b"}
`,
			want: []string{
				`x.yaml#1 WorkloadEntry default/w: spec.address: "not an address" is neither an IP address nor a host name`,
				`x.yaml#1 WorkloadEntry default/w: spec.ports[http]: port 0 must be in 1..65535`,
				`x.yaml#1 WorkloadEntry default/w: spec.labels[app]: invalid label value "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
			}},
		{name: "valid VM", yaml: `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: w}
spec:
  address: 10.0.0.5
  ports: {http: 8080}
  labels: {app: vm}
  serviceAccount: vm-sa
`,
		},
	})
}

func TestIstioSidecar(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "selector, default endpoint, catch-all order and host format", yaml: `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sc}
spec:
  workloadSelector: {labels: {}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 10.0.0.1:8080
  egress:
  - hosts: ["./*"]
  - port: {number: 80, protocol: HTTP}
    hosts: [reviews, "Bad_NS/*", "istio-system/*.svc.cluster.local", "./short", "*/*"]
`,
			want: []string{
				`x.yaml#1 Sidecar default/sc: spec.workloadSelector.labels: an empty selector selects every workload in the namespace: add labels, or remove workloadSelector`,
				`x.yaml#1 Sidecar default/sc: spec.ingress[0].defaultEndpoint: "10.0.0.1:8080" must be 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix:///path`,
				`x.yaml#1 Sidecar default/sc: spec.egress[0]: the egress listener without a port catches everything else: move it to the end, and keep only one`,
				`x.yaml#1 Sidecar default/sc: spec.egress[1].hosts[0]: "reviews" must be "<namespace>/<host>", e.g. "./*", "istio-system/*" or "*/reviews"`,
				`x.yaml#1 Sidecar default/sc: spec.egress[1].hosts[1]: invalid namespace "Bad_NS" in "Bad_NS/*": use a namespace name, "*" (any) or "." (this one)`,
				`x.yaml#1 Sidecar default/sc: spec.egress[1].hosts[3]: short name "short" is not allowed here: use the full name, e.g. short.<namespace>.svc.cluster.local`,
			}},
		{name: "valid namespace-scoped egress", yaml: `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sc}
spec:
  egress:
  - hosts: ["./*", "istio-system/*", "~/*"]
`,
		},
		{name: "empty Sidecar", yaml: `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sc}
spec: {}
`,
			want: []string{
				`x.yaml#1 Sidecar default/sc: spec: empty Sidecar: set egress, ingress, outboundTrafficPolicy or inboundConnectionPool`,
			}},
	})
}

func TestIstioGateway(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "TLS settings, duplicate port names and host format", yaml: `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["bookinfo/*.example.com"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, serverCertificate: /c.pem}
  - port: {number: 80, name: http2, protocol: HTTP}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: c}
  - port: {number: 8080, protocol: FOO}
    hosts: ["Bad_NS/x.example.com", "short"]
`,
			want: []string{
				`x.yaml#1 Gateway default/gw: spec.servers[0].tls: required for protocol HTTPS: set tls.mode (SIMPLE with credentialName, PASSTHROUGH, ...)`,
				`x.yaml#1 Gateway default/gw: spec.servers[1].tls.caCertificates: required for MUTUAL: set it, or use credentialName`,
				`x.yaml#1 Gateway default/gw: spec.servers[1].tls.privateKey: required for MUTUAL TLS: set serverCertificate and privateKey, or credentialName`,
				`x.yaml#1 Gateway default/gw: spec.servers[1].port.name: port name "https" is already used by servers[0]: names must be unique`,
				`x.yaml#1 Gateway default/gw: spec.servers[2].tls: a plain-text HTTP server only takes tls.httpsRedirect: use protocol HTTPS to terminate TLS`,
				`x.yaml#1 Gateway default/gw: spec.servers[3].hosts[0]: invalid namespace "Bad_NS" in "Bad_NS/x.example.com": use a namespace name, "*" (any) or "." (this one)`,
				`x.yaml#1 Gateway default/gw: spec.servers[3].hosts[1]: short name "short" is not allowed here: use the full name, e.g. short.<namespace>.svc.cluster.local`,
				`x.yaml#1 Gateway default/gw: spec.servers[3].port.protocol: unknown protocol "FOO": use one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, REDIS, MYSQL, HTTP_PROXY`,
				`x.yaml#1 Gateway default/gw: spec.servers[3].port.name: required`,
			}},
		{name: "valid credential and HTTPS redirect", yaml: `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*.example.com"]
    tls: {mode: SIMPLE, credentialName: example-cert}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["./*"]
    tls: {httpsRedirect: true}
`,
		},
	})
}
