package validate_test

import (
	"strings"
	"testing"
)

// These cases check what validate accepts and refuses against Istio's
// documented constraints (istio.io reference pages for each kind) and
// what istioctl/istiod's pkg/config/validation accepts or refuses. The
// wording of each message is ours; whether a document is refused, and at
// which field, is Istio's.

const vsHead = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
spec:
  hosts: [reviews]
  http:
`

const vsID = "x.yaml#1 VirtualService default/r: "

// TestIstioDocsHTTPRedirect: HTTPRedirect (virtual-service reference):
// uri and prefixRewrite are alternatives ("Only one of uri or
// prefixRewrite can be set"), prefixRewrite "can only be used with a
// prefix match", redirectCode is a 3xx, scheme is http or https, and a
// redirect that changes nothing is refused by Istio's validateHTTPRedirect
// ("redirect must specify URI, authority, scheme, or port").
func TestIstioDocsHTTPRedirect(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid redirects", yaml: vsHead + `
  - match: [{uri: {prefix: /old}}]
    redirect: {prefixRewrite: /new, redirectCode: 308}
  - redirect: {authority: other.example.com, scheme: https, port: 8443}
  - redirect: {derivePort: FROM_PROTOCOL_DEFAULT, scheme: https}
`},
		{name: "uri and prefixRewrite together", yaml: vsHead + `
  - redirect: {uri: /a, prefixRewrite: /b}
`, want: []string{
			vsID + "spec.http[0].redirect: set only one of uri and prefixRewrite",
		}},
		{name: "prefixRewrite needs prefix matches", yaml: vsHead + `
  - match: [{uri: {prefix: /a}}, {uri: {exact: /b}}]
    redirect: {prefixRewrite: /c}
`, want: []string{
			vsID + "spec.http[0].redirect.prefixRewrite: needs every uri match to be a prefix match, but match[1].uri is not",
		}},
		{name: "prefixRewrite with a match that has no uri is fine", yaml: vsHead + `
  - match: [{headers: {x-a: {exact: b}}}]
    redirect: {prefixRewrite: /c}
`},
		{name: "empty redirect", yaml: vsHead + `
  - redirect: {redirectCode: 301}
`, want: []string{
			vsID + "spec.http[0].redirect: set at least one of uri, prefixRewrite, authority, scheme, port or derivePort",
		}},
		{name: "bad code, scheme and port", yaml: vsHead + `
  - redirect: {uri: /x, redirectCode: 400, scheme: ftp, port: 70000}
`, want: []string{
			vsID + "spec.http[0].redirect.redirectCode: 400 is not a redirect code: use 3xx, such as 301",
			vsID + `spec.http[0].redirect.scheme: must be "http" or "https", not "ftp"`,
			vsID + "spec.http[0].redirect.port: port 70000 must be in 1..65535",
		}},
		{name: "redirect excludes directResponse and rewrite", yaml: vsHead + `
  - redirect: {uri: /x}
    directResponse: {status: 200}
    rewrite: {uri: /y}
`, want: []string{
			vsID + "spec.http[0].directResponse: cannot have both directResponse and redirect: keep one",
			vsID + "spec.http[0].rewrite: cannot have both rewrite and redirect",
		}},
	})
}

// TestIstioDocsHTTPDirectResponse: HTTPDirectResponse "status: Specifies
// the HTTP response status to be returned" (Istio refuses codes outside
// 200..599) and bodies over 1MB are refused ("large direct_responses may
// impact control plane performance, must be less than 1MB"). A direct
// response cannot be combined with route, fault or rewrite.
func TestIstioDocsHTTPDirectResponse(t *testing.T) {
	big := strings.Repeat("a", 1<<20+1)
	runIstioCases(t, []istioCase{
		{name: "valid", yaml: vsHead + `
  - directResponse: {status: 503, body: {string: "unavailable"}}
`},
		{name: "1 MiB body is allowed", yaml: vsHead + `
  - directResponse: {status: 200, body: {string: "` + strings.Repeat("a", 1<<20) + `"}}
`},
		{name: "status out of range", yaml: vsHead + `
  - directResponse: {status: 100}
`, want: []string{
			vsID + "spec.http[0].directResponse.status: HTTP status 100 must be in 200..599",
		}},
		{name: "body over 1 MiB", yaml: vsHead + `
  - directResponse: {status: 200, body: {string: "` + big + `"}}
`, want: []string{
			vsID + "spec.http[0].directResponse.body: body is 1048577 bytes: at most 1 MiB is allowed",
		}},
		{name: "excludes route, fault and rewrite", yaml: vsHead + `
  - directResponse: {status: 200}
    route: [{destination: {host: reviews}}]
    fault: {abort: {httpStatus: 500}}
    rewrite: {uri: /x}
`, want: []string{
			vsID + "spec.http[0].route: cannot have both route and directResponse: keep one",
			vsID + "spec.http[0].fault: cannot have both fault and directResponse",
			vsID + "spec.http[0].rewrite: cannot have both rewrite and directResponse",
		}},
	})
}

// TestIstioDocsHTTPRewriteAndFault: HTTPRewrite "uri ... cannot be set if
// uriRegexRewrite is specified", and an empty rewrite is refused by Istio
// ("rewrite must specify at least one of URI, UriRegexRewrite, or
// authority"). HTTPFaultInjection: "abort and/or delay", delay's
// exponentialDelay and abort's http2Error are "not supported yet"; a gRPC
// abort takes a status name from grpc's statuscodes.md; percentage values
// are in 0..100.
func TestIstioDocsHTTPRewriteAndFault(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid rewrite and fault", yaml: vsHead + `
  - rewrite: {uriRegexRewrite: {match: "^/v1/(.*)", rewrite: '/v2/\1'}}
    fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 0.5}}
      delay: {fixedDelay: 5s, percentage: {value: 100}}
    route: [{destination: {host: reviews}}]
`},
		{name: "uri with uriRegexRewrite", yaml: vsHead + `
  - rewrite: {uri: /x, uriRegexRewrite: {match: "^/a", rewrite: /b}}
    route: [{destination: {host: reviews}}]
`, want: []string{
			vsID + "spec.http[0].rewrite: set only one of uri and uriRegexRewrite",
		}},
		{name: "empty fault", yaml: vsHead + `
  - fault: {}
    route: [{destination: {host: reviews}}]
`, want: []string{
			vsID + "spec.http[0].fault: set abort, delay or both",
		}},
		{name: "unsupported and unknown fault kinds", yaml: vsHead + `
  - fault:
      abort: {grpcStatus: NOPE}
      delay: {exponentialDelay: 1s}
    route: [{destination: {host: reviews}}]
  - fault:
      abort: {http2Error: CANCEL}
    route: [{destination: {host: reviews}}]
`, want: []string{
			vsID + `spec.http[0].fault.abort.grpcStatus: unknown gRPC status "NOPE": use a name such as UNAVAILABLE or NOT_FOUND`,
			vsID + "spec.http[0].fault.delay.exponentialDelay: not supported: use fixedDelay",
			vsID + "spec.http[1].fault.abort.http2Error: not supported: use httpStatus or grpcStatus",
		}},
		// Istio's validatePercentage for fault percentages: "neither 0.0,
		// nor in range [0.0001, 100.0]" (Envoy counts them per million).
		{name: "fault percentage below a millionth", yaml: vsHead + `
  - fault:
      abort: {httpStatus: 503, percentage: {value: 0.00001}}
      delay: {fixedDelay: 1s, percentage: {value: 0}}
    route: [{destination: {host: reviews}}]
`, want: []string{
			vsID + "spec.http[0].fault.abort.percentage.value: 1e-05 is too small: Envoy counts faults per million, so use 0 or at least 0.0001",
		}},
		{name: "fixed delay under 1ms", yaml: vsHead + `
  - fault: {delay: {fixedDelay: 0.5ms}}
    route: [{destination: {host: reviews}}]
`, want: []string{
			vsID + "spec.http[0].fault.delay.fixedDelay: must be at least 1ms, got 500µs",
		}},
	})
}

// TestIstioDocsCORSAndDestinations: CorsPolicy allowOrigins is a
// StringMatch with a non-empty value (Istio: "is not a valid match type
// for CORS allow origins"), allowMethods are upper-case method names,
// allowHeaders/exposeHeaders are header names or "*". Destination.host
// "*" is refused ("invalid destination host *") and subset is a DNS-1123
// label; port.number is a port.
func TestIstioDocsCORSAndDestinations(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid CORS", yaml: vsHead + `
  - corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: "https://.*\\.example\\.com"}]
      allowMethods: [GET, POST, "*"]
      allowHeaders: ["*", x-custom]
      exposeHeaders: [x-id]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: reviews}}]
`},
		{name: "bad CORS", yaml: vsHead + `
  - corsPolicy:
      allowOrigins: [{exact: ""}, {regex: "("}]
      allowHeaders: ["bad header"]
      exposeHeaders: [""]
    route: [{destination: {host: reviews}}]
`, want: []string{
			vsID + "spec.http[0].corsPolicy.allowOrigins[0]: set one of exact, prefix or regex to a non-empty origin",
			vsID + `spec.http[0].corsPolicy.allowOrigins[1].regex: invalid RE2 regex "(": error parsing regexp: missing closing ): ` + "`(`" + ` (see https://github.com/google/re2/wiki/Syntax)`,
			vsID + `spec.http[0].corsPolicy.allowHeaders[0]: "bad header" is not a valid HTTP header name`,
			vsID + "spec.http[0].corsPolicy.exposeHeaders[0]: header name must not be empty",
		}},
		{name: "bad destinations", yaml: vsHead + `
  - route:
    - destination: {host: "*"}
      weight: 50
    - destination: {host: reviews, subset: V1_bad, port: {number: 0}}
      weight: 50
`, want: []string{
			vsID + `spec.http[0].route[0].destination.host: "*" is not allowed here: name a host, or a wildcard such as "*.example.com"`,
			vsID + `spec.http[0].route[1].destination.subset: "V1_bad" is not a valid subset name (lowercase letters, digits and '-', at most 63)`,
			vsID + "spec.http[0].route[1].destination.port.number: port 0 must be in 1..65535",
		}},
	})
}

// TestIstioDocsHTTPMatch: HTTPMatchRequest (virtual-service reference):
// uri accepts prefix "" (matches everything, as in Envoy) while scheme,
// method and authority do not; sourceNamespace is a namespace name;
// withoutHeaders' regex "*" is a presence match, not RE2; header names
// follow RFC 7230 tokens.
func TestIstioDocsHTTPMatch(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid matches", yaml: vsHead + `
  - match:
    - uri: {prefix: ""}
      scheme: {exact: https}
      authority: {prefix: api.}
      withoutHeaders: {x-debug: {regex: "*"}}
      queryParams: {v: {regex: "^[0-9]+$"}}
      sourceNamespace: prod
    route: [{destination: {host: reviews}}]
`},
		{name: "bad matches", yaml: vsHead + `
  - match:
    - authority: {prefix: ""}
      scheme: {regex: ""}
      headers: {"bad header": {exact: x}}
      withoutHeaders: {x-a: {regex: "+"}}
      sourceNamespace: Prod
    route: [{destination: {host: reviews}}]
`, want: []string{
			vsID + "spec.http[0].match[0].scheme.regex: regex must not be empty",
			vsID + "spec.http[0].match[0].authority.prefix: must not be empty",
			vsID + `spec.http[0].match[0].headers[bad header]: "bad header" is not a valid HTTP header name`,
			vsID + `spec.http[0].match[0].withoutHeaders[x-a].regex: invalid RE2 regex "+": error parsing regexp: missing argument to repetition operator: ` + "`+`" + ` (see https://github.com/google/re2/wiki/Syntax)`,
			vsID + `spec.http[0].match[0].sourceNamespace: "Prod" is not a valid namespace name (lowercase letters, digits and '-', at most 63)`,
		}},
		// queryParams (virtual-service reference): "For a query parameter
		// like "?key=abc" or "?key=abx", the map key would be "key" and the
		// string match could be defined as prefix: "ab"." Istio's
		// validation also takes {} (translated as "present").
		{name: "query parameter prefix and presence", yaml: vsHead + `
  - match: [{queryParams: {key: {prefix: ab}, flag: {exact: ""}, any: {}}}]
    route: [{destination: {host: reviews}}]
`},
		{name: "regex over 1024 characters", yaml: vsHead + `
  - match: [{uri: {regex: "` + strings.Repeat("a", 1025) + `"}}]
    route: [{destination: {host: reviews}}]
`, want: []string{
			vsID + "spec.http[0].match[0].uri.regex: regex is 1025 characters long: at most 1024 are allowed",
		}},
	})
}

const drHead = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: reviews
  trafficPolicy:
`

const drID = "x.yaml#1 DestinationRule default/d: "

// TestIstioDocsLoadBalancer: LoadBalancerSettings (destination-rule
// reference). httpCookie needs a name; cookie attribute names are unique;
// Maglev's tableSize "must be prime" and below 5000011; the deprecated
// minimumRingSize cannot be combined with ringHash/maglev; only one of
// localityLbSetting and zoneAwareLbSetting; warmup.duration is required
// and aggression > 0.
func TestIstioDocsLoadBalancer(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid consistent hash and warmup", yaml: drHead + `
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, ttl: 0s, path: /}
        maglev: {tableSize: 65537}
      warmup: {duration: 30s, minimumPercent: 10, aggression: 1.5}
`},
		{name: "bad consistent hash", yaml: drHead + `
    loadBalancer:
      consistentHash:
        httpCookie: {name: "", attributes: [{name: SameSite, value: Strict}, {name: SameSite, value: Lax}, {name: ""}]}
        maglev: {tableSize: 65536}
`, want: []string{
			drID + "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: required",
			drID + `spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1].name: duplicate cookie attribute "SameSite"`,
			drID + "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[2].name: required",
			drID + "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: 65536 is not prime: Maglev needs a prime table size, such as 65537",
		}},
		{name: "maglev table size limit and minimumRingSize conflict", yaml: drHead + `
    loadBalancer:
      consistentHash:
        useSourceIp: true
        minimumRingSize: 1024
        maglev: {tableSize: 5000011}
`, want: []string{
			drID + "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: cannot be combined with ringHash or maglev: move it to ringHash.minimumRingSize",
			drID + "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: must be less than 5000011",
		}},
		{name: "warmup needs a duration and positive aggression", yaml: drHead + `
    loadBalancer:
      simple: ROUND_ROBIN
      warmup: {aggression: 0, minimumPercent: 150}
`, want: []string{
			drID + "spec.trafficPolicy.loadBalancer.warmup.duration: required",
			drID + "spec.trafficPolicy.loadBalancer.warmup.minimumPercent: 150 is not a percentage: must be in 0..100",
			drID + "spec.trafficPolicy.loadBalancer.warmup.aggression: must be > 0",
		}},
		{name: "locality and zone-aware together", yaml: drHead + `
    loadBalancer:
      localityLbSetting: {enabled: true}
      zoneAwareLbSetting: {}
`, want: []string{
			drID + "spec.trafficPolicy.loadBalancer: set only one of localityLbSetting and zoneAwareLbSetting",
		}},
	})
}

// TestIstioDocsLocalityLB: LocalityLoadBalancerSetting (destination-rule
// reference): "distribute ... weights must add up to 100", each weight in
// 1..100; "failover ... Only one of distribute, failover or
// failoverPriority can be set" (Istio refuses distribute with failover),
// failover names regions only (from != to, no "/" and no "*"), and
// failoverPriority may not use topology labels together with failover.
// Localities take one "*", at the end.
func TestIstioDocsLocalityLB(t *testing.T) {
	const lb = drHead + `
    outlierDetection: {consecutive5xxErrors: 5}
    loadBalancer:
      localityLbSetting:
`
	const p = drID + "spec.trafficPolicy.loadBalancer.localityLbSetting."
	runIstioCases(t, []istioCase{
		{name: "valid distribute", yaml: lb + `
        distribute:
        - from: us-west/zone1/*
          to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
`},
		{name: "valid failover", yaml: lb + `
        failover: [{from: us-east, to: eu-west}]
        failoverPriority: [topology.istio.io/network]
`},
		{name: "weights", yaml: lb + `
        distribute:
        - from: us-west/*
          to: {"us-west/zone1/*": 0, "us-west/zone2/*": 90}
`, want: []string{
			p + "distribute[0].to[us-west/zone1/*]: weight 0 must be in 1..100",
			p + "distribute[0].to: weights add up to 90: they must add up to 100",
		}},
		{name: "bad localities", yaml: lb + `
        distribute:
        - from: "us-west/*/zone"
          to: {"us-west//a": 100}
`, want: []string{
			p + `distribute[0].from: locality "us-west/*/zone" may only end with one "*"`,
			p + `distribute[0].to[us-west//a]: locality "us-west//a" has an empty region, zone or subzone`,
		}},
		// Istio's validateLocalities refuses "overlap with previous
		// specified ones". Its envoy translation (applyLocalityWeights)
		// takes the first distribute entry whose from matches the proxy,
		// so an entry covered by an earlier one never applies; the to
		// keys are a map, so two keys covering one endpoint give it
		// whichever weight comes first. Only the unambiguous direction is
		// refused for from: a specific entry before a general one is a
		// fallback, as Istio's own checks allow for "r/z/*" before "r/*".
		{name: "specific from before a general one is a fallback", yaml: lb + `
        distribute:
        - from: us-west/zone1/*
          to: {"us-west/zone1/*": 100}
        - from: us-west/*
          to: {"us-west/*": 100}
`},
		{name: "overlapping localities", yaml: lb + `
        distribute:
        - from: us-west/*
          to: {"us-west/zone1/*": 50, "us-west/*": 50}
        - from: us-west/zone1/*
          to: {"us-east": 100}
        - from: "*"
          to: {"*": 50, "eu/z": 50}
`, want: []string{
			p + `distribute[0].to[us-west/zone1/*]: locality "us-west/zone1/*" overlaps "us-west/*" in the same map: the endpoints in both would get either weight`,
			p + `distribute[1].from: locality "us-west/zone1/*" is covered by distribute[0].from "us-west/*", so this entry never applies: list specific localities first`,
			p + `distribute[2].to[eu/z]: locality "eu/z" overlaps "*" in the same map: the endpoints in both would get either weight`,
		}},
		{name: "distribute with failover", yaml: lb + `
        distribute:
        - from: us-west/*
          to: {"us-west/*": 100}
        failover: [{from: us-west, to: us-east}]
`, want: []string{
			p[:len(p)-1] + ": set only one of distribute and failover",
		}},
		{name: "bad failover", yaml: lb + `
        failover:
        - {from: us-west, to: us-west}
        - {from: us-west/zone1, to: "us-*"}
        failoverPriority: [topology.kubernetes.io/zone]
`, want: []string{
			p + `failoverPriority[0]: cannot use topology label "topology.kubernetes.io/zone" together with failover`,
			p + "failover[0]: from and to must be different regions",
			p + `failover[1]: failover names regions only (no "/")`,
			p + `failover[1]: failover regions cannot contain "*"`,
		}},
	})
}

// TestIstioDocsZoneAwareLB: ZoneAwareLoadBalancerSetting: region, zone and
// subzone routing are automatic, so failoverPriority must not name the
// topology labels; failover orders regions (from != to, no "/", no "*").
func TestIstioDocsZoneAwareLB(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "topology labels and bad failover", yaml: drHead + `
    loadBalancer:
      zoneAwareLbSetting:
        failoverPriority: [topology.kubernetes.io/region, topology.istio.io/network]
        failover: [{from: a, to: a}, {from: "a/b", to: "c*"}]
`, want: []string{
			drID + `spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failoverPriority[0]: "topology.kubernetes.io/region" is handled automatically by zone-aware load balancing: remove it`,
			drID + "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failover[0]: from and to must be different regions",
			drID + `spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failover[1]: failover names regions only (no "/")`,
			drID + `spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failover[1]: failover regions cannot contain "*"`,
		}},
	})
}

// TestIstioDocsClientTLS: ClientTLSSettings (destination-rule reference):
// for MUTUAL, clientCertificate and privateKey are "REQUIRED if mode is
// MUTUAL" unless credentialName brings them; with credentialName the file
// fields must be empty; insecureSkipVerify excludes caCertificates and
// subjectAltNames (and credentialName in SIMPLE); a configmap:// credential
// must be in the DestinationRule's namespace.
func TestIstioDocsClientTLS(t *testing.T) {
	const p = drID + "spec.trafficPolicy.tls."
	runIstioCases(t, []istioCase{
		{name: "valid", yaml: drHead + `
    tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, subjectAltNames: [reviews]}
`},
		{name: "valid credentialName", yaml: drHead + `
    tls: {mode: SIMPLE, credentialName: reviews-ca}
`},
		{name: "MUTUAL without files", yaml: drHead + `
    tls: {mode: MUTUAL}
`, want: []string{
			p + "clientCertificate: required for MUTUAL: set it with privateKey, or use credentialName",
			p + "privateKey: required for MUTUAL: set it with clientCertificate, or use credentialName",
		}},
		{name: "credentialName with files", yaml: drHead + `
    tls: {mode: MUTUAL, credentialName: c, clientCertificate: /c.pem}
`, want: []string{
			p + "credentialName: brings the certificates: remove clientCertificate, privateKey, caCertificates and caCrl",
		}},
		{name: "insecureSkipVerify with verification settings", yaml: drHead + `
    tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: /ca.pem}
`, want: []string{
			p + "insecureSkipVerify: skips verification, so caCertificates, credentialName and subjectAltNames cannot be set with it",
		}},
		{name: "insecureSkipVerify in MUTUAL allows credentialName", yaml: drHead + `
    tls: {mode: MUTUAL, insecureSkipVerify: true, credentialName: client}
`},
		{name: "configmap credential in another namespace", yaml: drHead + `
    tls: {mode: SIMPLE, credentialName: "configmap://other/ca"}
`, want: []string{
			p + "credentialName: a configmap:// credential must be in this namespace (default)",
		}},
	})
}

// TestIstioDocsConnectionPoolAndOutlier: ConnectionPoolSettings needs tcp
// or http, counts are non-negative, durations are >= 1ms (tcp idleTimeout
// 0s disables it), http2KeepAlive needs interval and timeout, and
// useClientProtocol conflicts with h2UpgradePolicy UPGRADE.
// OutlierDetection: consecutiveLocalOriginFailures needs
// splitExternalLocalOriginErrors; percents are in 0..100. TrafficPolicy:
// tunnel and proxyProtocol are exclusive; tunnel.protocol is CONNECT or
// POST; an empty trafficPolicy and a port-level policy with no settings
// are refused.
func TestIstioDocsConnectionPoolAndOutlier(t *testing.T) {
	const p = drID + "spec.trafficPolicy."
	runIstioCases(t, []istioCase{
		{name: "valid", yaml: drHead + `
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, idleTimeout: 0s, tcpKeepalive: {time: 7200s, interval: 75s}}
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 1, h2UpgradePolicy: UPGRADE, http2KeepAlive: {interval: 10s, timeout: 5s}}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 100}
`},
		{name: "bad connection pool", yaml: drHead + `
    connectionPool:
      tcp: {maxConnections: -1, connectTimeout: 0s, idleTimeout: 0.5ms}
      http: {http2MaxRequests: -1, maxRetries: -2, h2UpgradePolicy: UPGRADE, useClientProtocol: true, http2KeepAlive: {timeout: 1s}}
`, want: []string{
			p + "connectionPool.http.http2MaxRequests: must be >= 0",
			p + "connectionPool.http.maxRetries: must be >= 0",
			p + "connectionPool.http.useClientProtocol: cannot be true with h2UpgradePolicy UPGRADE: keep one",
			p + "connectionPool.http.http2KeepAlive.interval: required",
			p + "connectionPool.tcp.maxConnections: must be >= 0",
			p + "connectionPool.tcp.connectTimeout: must be at least 1ms, got 0s",
			p + "connectionPool.tcp.idleTimeout: must be at least 1ms, got 500µs",
		}},
		{name: "empty connection pool", yaml: drHead + `
    connectionPool: {}
`, want: []string{
			p + "connectionPool: empty connectionPool: set tcp or http, or remove it",
		}},
		{name: "bad outlier detection", yaml: drHead + `
    outlierDetection: {consecutiveLocalOriginFailures: 3, maxEjectionPercent: 101, minHealthPercent: -1, interval: 0s}
`, want: []string{
			p + "outlierDetection.interval: must be at least 1ms, got 0s",
			p + "outlierDetection.consecutiveLocalOriginFailures: only counts when splitExternalLocalOriginErrors is true: set it",
			p + "outlierDetection.maxEjectionPercent: 101 is not a percentage: must be in 0..100",
			p + "outlierDetection.minHealthPercent: -1 is not a percentage: must be in 0..100",
		}},
		{name: "tunnel with proxyProtocol, bad tunnel", yaml: drHead + `
    tunnel: {protocol: GET, targetHost: "not a host", targetPort: 0}
    proxyProtocol: {version: V1}
`, want: []string{
			p[:len(p)-1] + ": set only one of tunnel and proxyProtocol",
			p + `tunnel.protocol: must be "CONNECT" or "POST", not "GET"`,
			p + `tunnel.targetHost: "not a host" is neither a host name nor an IP address`,
			p + "tunnel.targetPort: port 0 must be in 1..65535",
		}},
		{name: "empty traffic policy", yaml: drHead + `    {}
`, want: []string{
			p[:len(p)-1] + ": empty trafficPolicy: set at least one field, or remove it",
		}},
		{name: "port-level policy without port or settings", yaml: drHead + `
    portLevelSettings:
    - port: {number: 80}
    - loadBalancer: {simple: RANDOM}
`, want: []string{
			p + "portLevelSettings[0]: set at least one of loadBalancer, connectionPool, outlierDetection and tls",
			p + "portLevelSettings[1].port: required",
		}},
		{name: "subset policy is checked too", yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {connectionPool: {http: {idleTimeout: 0s}}}
`, want: []string{
			drID + "spec.subsets[0].trafficPolicy.connectionPool.http.idleTimeout: must be at least 1ms, got 0s",
		}},
	})
}

const sidecarHead = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sc}
spec:
`

const scID = "x.yaml#1 Sidecar default/sc: "

// TestIstioDocsSidecarEgress: IstioEgressListener (sidecar reference):
// hosts are "namespace/dnsName" where namespace is a name, "*", "." or
// "~" and dnsName is an FQDN, optionally with a leading wildcard ("*",
// "*.example.com"); "the egress listener with empty port should be the
// last listener" and there is only one; port 0 is a Unix domain socket
// listener, which needs bind "unix://..." and captureMode DEFAULT or NONE;
// ports on IP listeners are unique; bind is an IP; targetPort "has no
// impact on Sidecars".
func TestIstioDocsSidecarEgress(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid hosts", yaml: sidecarHead + `
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.0.1
    hosts: ["./*", "*/reviews.default.svc.cluster.local", "prod/*.example.com", "~/*"]
  - port: {number: 0, protocol: HTTP}
    bind: unix:///var/run/app.sock
    captureMode: NONE
    hosts: ["istio-system/*"]
  - hosts: ["*/*"]
`},
		{name: "hosts", yaml: sidecarHead + `
  egress:
  - hosts: ["/reviews.example.com", "ns/", "ns/foo*.example.com", "*/10.0.0.1"]
`, want: []string{
			scID + `spec.egress[0].hosts[0]: "/reviews.example.com" must be "<namespace>/<host>" with both parts set`,
			scID + `spec.egress[0].hosts[1]: "ns/" must be "<namespace>/<host>" with both parts set`,
			scID + `spec.egress[0].hosts[2]: invalid host "foo*.example.com": a wildcard is only allowed as a leading "*.", as in "*.example.com"`,
			scID + `spec.egress[0].hosts[3]: host "10.0.0.1" is an IP address: use a host name`,
		}},
		{name: "two catch-all listeners", yaml: sidecarHead + `
  egress:
  - hosts: ["./*"]
  - hosts: ["istio-system/*"]
`, want: []string{
			scID + "spec.egress[0]: the egress listener without a port catches everything else: move it to the end, and keep only one",
		}},
		{name: "listeners need hosts", yaml: sidecarHead + `
  egress:
  - port: {number: 80, protocol: HTTP}
`, want: []string{
			scID + `spec.egress[0].hosts: required: list hosts as "<namespace>/<host>", e.g. "./*" or "istio-system/*"`,
		}},
		{name: "unix socket listeners", yaml: sidecarHead + `
  egress:
  - port: {number: 0, protocol: HTTP}
    bind: 127.0.0.1
    hosts: ["./*"]
  - port: {number: 0, protocol: HTTP}
    bind: unix://relative.sock
    captureMode: IPTABLES
    hosts: ["./*"]
  - port: {number: 0, protocol: TCP}
    bind: unix:///a.sock
    hosts: ["./*"]
  - port: {number: 0, protocol: TCP}
    bind: unix:///a.sock
    hosts: ["./*"]
`, want: []string{
			scID + "spec.egress[0].port.number: port 0 is only for a unix socket listener: set bind to unix:///path, or give a port in 1..65535",
			scID + `spec.egress[1].bind: "relative.sock" is not an absolute path to a socket file`,
			scID + "spec.egress[1].captureMode: must be DEFAULT or NONE for a unix socket listener",
			scID + `spec.egress[3].bind: unix socket "unix:///a.sock" is already used by egress[2]`,
		}},
		{name: "abstract unix socket", yaml: sidecarHead + `
  egress:
  - port: {number: 0, protocol: TCP}
    bind: unix://@abstract
    hosts: ["./*"]
`},
		{name: "ports, bind and targetPort", yaml: sidecarHead + `
  egress:
  - port: {number: 80, protocol: HTTP, targetPort: 8080}
    bind: localhost
    hosts: ["./*"]
  - port: {number: 80, protocol: http, name: Web}
    hosts: ["./*"]
`, want: []string{
			scID + "spec.egress[0].port.targetPort: has no effect on a Sidecar: remove it",
			scID + `spec.egress[0].bind: "localhost" is not a valid IP address`,
			scID + `spec.egress[1].port.name: invalid port name "Web": use lowercase letters, digits and '-' (at most 63)`,
			scID + "spec.egress[1].port.number: port 80 is already used by egress[0]",
		}},
	})
}

// TestIstioDocsSidecarIngressAndOutbound: IstioIngressListener: port is
// required and unique; defaultEndpoint is 127.0.0.1:PORT, 0.0.0.0:PORT,
// [::1]:PORT, [::]:PORT or unix:///path (":PORT" is accepted too); tls
// needs an HTTPS/TLS port, and ISTIO_MUTUAL/AUTO_PASSTHROUGH,
// credentialName and subjectAltNames are not supported there.
// OutboundTrafficPolicy: "egressProxy ... can only be set when mode is
// ALLOW_ANY", its host is an FQDN and its port is required.
func TestIstioDocsSidecarIngressAndOutbound(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid ingress", yaml: sidecarHead + `
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
  - port: {number: 9081, protocol: HTTP, name: http2}
    defaultEndpoint: "[::1]:8081"
  - port: {number: 9082, protocol: HTTP, name: http3}
    defaultEndpoint: ":8082"
  - port: {number: 9083, protocol: HTTP, name: http4}
    defaultEndpoint: unix:///var/run/app.sock
  - port: {number: 9443, protocol: HTTPS, name: https}
    defaultEndpoint: 127.0.0.1:8443
    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}
`},
		{name: "bad ingress", yaml: sidecarHead + `
  ingress:
  - defaultEndpoint: 127.0.0.1:8080
  - port: {number: 9080, protocol: HTTP}
    defaultEndpoint: "127.0.0.1:0"
    bind: not-ip
  - port: {number: 9080, protocol: HTTP}
    tls: {mode: ISTIO_MUTUAL, credentialName: c, subjectAltNames: [a]}
`, want: []string{
			scID + "spec.ingress[0].port: required",
			scID + `spec.ingress[1].bind: "not-ip" is not a valid IP address`,
			scID + `spec.ingress[1].defaultEndpoint: port "0" must be a number in 1..65535`,
			scID + "spec.ingress[2].port.number: port 9080 is already used by ingress[1]",
			scID + "spec.ingress[2].tls.subjectAltNames: not supported for sidecar ingress",
			scID + "spec.ingress[2].tls.credentialName: not supported for sidecar ingress: use serverCertificate and privateKey",
			scID + "spec.ingress[2].tls.mode: ISTIO_MUTUAL is not allowed for sidecar ingress",
			scID + `spec.ingress[2].tls: TLS settings need port protocol HTTPS or TLS, not "HTTP"`,
			// Istio's validateTLSOptions: "ISTIO_MUTUAL TLS cannot have associated credentialName".
			scID + "spec.ingress[2].tls.credentialName: ISTIO_MUTUAL uses the mesh certificates: remove credentialName",
		}},
		{name: "valid egress proxy", yaml: sidecarHead + `
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy: {host: egress.istio-system.svc.cluster.local, port: {number: 3128}}
`},
		{name: "egress proxy needs ALLOW_ANY, a host name and a port", yaml: sidecarHead + `
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
    egressProxy: {host: "*.example.com", subset: V1}
`, want: []string{
			scID + "spec.outboundTrafficPolicy.egressProxy: egressProxy needs mode ALLOW_ANY",
			scID + `spec.outboundTrafficPolicy.egressProxy.host: "*.example.com" is not a host name`,
			scID + "spec.outboundTrafficPolicy.egressProxy.port: required",
			scID + `spec.outboundTrafficPolicy.egressProxy.subset: "V1" is not a valid subset name`,
		}},
	})
}

const seHead = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
`

const seID = "x.yaml#1 ServiceEntry default/s: "

// TestIstioDocsServiceEntryResolution: ServiceEntry (service-entry
// reference): "*" is not a host; workloadSelector and endpoints are
// exclusive; NONE takes no endpoints; DNS_ROUND_ROBIN takes at most one
// endpoint ("there must only be 0 or 1 endpoint"); DNS endpoints are IPs
// or FQDNs; DYNAMIC_DNS needs wildcard hosts, no addresses, no endpoints
// and HTTP/TLS/GRPC/HTTP2 ports; endpoints' ports name the service's
// ports; a unix:// endpoint is an absolute socket path; addresses are IPs
// or CIDRs.
func TestIstioDocsServiceEntryResolution(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid DNS with endpoints and wildcard host", yaml: seHead + `
  hosts: ["*.example.com"]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
  endpoints: [{address: proxy.example.net}, {address: 10.0.0.7, ports: {tls: 8443}}]
`},
		{name: "valid DYNAMIC_DNS", yaml: seHead + `
  hosts: ["*.example.com"]
  location: MESH_EXTERNAL
  resolution: DYNAMIC_DNS
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 80, name: http, protocol: HTTP}]
`},
		{name: "valid unix socket endpoint", yaml: seHead + `
  hosts: [uds.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: "unix:///var/run/app.sock"}]
`},
		{name: "star host and selector with endpoints", yaml: seHead + `
  hosts: ["*"]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
`, want: []string{
			seID + "spec.endpoints: set only one of workloadSelector and endpoints",
			seID + `spec.hosts[0]: "*" is not allowed here: name a host, or a wildcard such as "*.example.com"`,
		}},
		{name: "NONE takes no endpoints", yaml: seHead + `
  hosts: [a.example.com]
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
`, want: []string{
			seID + "spec.endpoints: resolution NONE takes no endpoints: use STATIC or DNS, or remove them",
		}},
		{name: "DNS_ROUND_ROBIN takes one endpoint", yaml: seHead + `
  hosts: [a.example.com]
  resolution: DNS_ROUND_ROBIN
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: a1.example.com}, {address: "bad host!"}]
`, want: []string{
			seID + "spec.endpoints: resolution DNS_ROUND_ROBIN takes at most one endpoint: use DNS for several",
			seID + `spec.endpoints[1].address: "bad host!" is neither an IP address nor a host name`,
		}},
		{name: "DYNAMIC_DNS constraints", yaml: seHead + `
  hosts: [a.example.com]
  addresses: [10.0.0.1]
  resolution: DYNAMIC_DNS
  ports: [{number: 5432, name: pg, protocol: TCP}]
  endpoints: [{address: 10.0.0.2}]
`, want: []string{
			seID + `spec.hosts[0]: resolution DYNAMIC_DNS needs wildcard hosts such as "*.example.com"`,
			seID + "spec.addresses: resolution DYNAMIC_DNS takes no addresses: destinations come from the hosts",
			seID + "spec.endpoints: resolution DYNAMIC_DNS takes no endpoints: destinations come from the hosts",
			seID + "spec.ports[0].protocol: resolution DYNAMIC_DNS supports HTTP, HTTP2, GRPC and TLS ports only",
		}},
		{name: "bad unix endpoint and addresses", yaml: seHead + `
  hosts: [uds.example.com]
  addresses: ["300.1.1.1", "10.0.0.0/33"]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: http2, protocol: HTTP}]
  endpoints: [{address: "unix://relative/path.sock", ports: {http: 8080}}]
`, want: []string{
			seID + `spec.addresses[0]: "300.1.1.1" is not a valid IP address or CIDR block`,
			seID + `spec.addresses[1]: "10.0.0.0/33" is not a valid CIDR block (such as 10.0.0.0/16)`,
			seID + `spec.endpoints[0].address: "relative/path.sock" is not an absolute path to a socket file`,
			seID + "spec.endpoints[0].ports: a unix socket endpoint takes no ports",
			seID + "spec.endpoints[0].address: a unix socket endpoint needs a ServiceEntry with exactly one port",
		}},
		{name: "ports need names and valid target ports", yaml: seHead + `
  hosts: [a.example.com]
  resolution: DNS
  ports: [{number: 80, protocol: HTTP, targetPort: 70000}]
`, want: []string{
			seID + "spec.ports[0].name: required",
			seID + "spec.ports[0].targetPort: port 70000 must be in 1..65535",
		}},
	})
}

// TestIstioDocsAuthorizationSources: AuthorizationPolicy Source
// (authorization-policy reference): "serviceAccounts ... cannot be set
// with principals or namespaces"; principals are
// "<TRUST_DOMAIN>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>" with prefix/suffix
// "*" matching; values must not be empty; ipBlocks are IPs or CIDRs;
// Condition needs values or notValues.
func TestIstioDocsAuthorizationSources(t *testing.T) {
	const head = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  rules:
`
	const id = "x.yaml#1 AuthorizationPolicy default/a: "
	runIstioCases(t, []istioCase{
		{name: "valid service accounts", yaml: head + `
  - from: [{source: {serviceAccounts: [sleep, "other/curl"], ipBlocks: ["2001:db8::/32"]}}]
    to: [{operation: {notPaths: ["/admin/{**}"], notMethods: [DELETE]}}]
`},
		{name: "service accounts with principals", yaml: head + `
  - from: [{source: {serviceAccounts: [sleep], principals: ["cluster.local/ns/default/sa/x"]}}]
`, want: []string{
			id + "spec.rules[0].from[0].source.serviceAccounts: cannot be combined with principals or namespaces: use one way to name the caller",
		}},
		{name: "bad values", yaml: head + `
  - from:
    - source:
        namespaces: ["a*b", ""]
        serviceAccounts: ["a/b/c"]
        requestPrincipals: [issuer-only]
        notIpBlocks: [10.0.0.1/8]
    when:
    - key: request.headers[x-a]
    - key: source.namespace
      values: ["Bad_NS"]
`, want: []string{
			id + "spec.rules[0].from[0].source.serviceAccounts: cannot be combined with principals or namespaces: use one way to name the caller",
			id + `spec.rules[0].from[0].source.requestPrincipals[0]: request principal "issuer-only" must be "<issuer>/<subject>", e.g. "https://accounts.example.com/alice"`,
			id + `spec.rules[0].from[0].source.namespaces[0]: "a*b" has "*" in the middle: it is only allowed at the start or the end`,
			id + "spec.rules[0].from[0].source.namespaces[1]: must not be empty",
			id + `spec.rules[0].from[0].source.serviceAccounts[0]: "a/b/c" must be "<service-account>" or "<namespace>/<service-account>"`,
			id + `spec.rules[0].from[0].source.notIpBlocks[0]: CIDR "10.0.0.1/8" has host bits set: write 10.0.0.0/8`,
			id + `spec.rules[0].when[0]: set values or notValues for key "request.headers[x-a]"`,
			id + `spec.rules[0].when[1].values[0]: "Bad_NS" is not a valid namespace name`,
		}},
		{name: "paths", yaml: head + `
  - to:
    - operation:
        paths: ["/a/{*}/b/{**}", "/a/{**}/{*}", "/x{*}", "/a*b", "/{", ""]
`, want: []string{
			id + `spec.rules[0].to[0].operation.paths[1]: path "/a/{**}/{*}": {**} must be the last template segment`,
			id + `spec.rules[0].to[0].operation.paths[2]: path "/x{*}": segment "x{*}" mixes a template with text; a template segment must be exactly {*} or {**}`,
			id + `spec.rules[0].to[0].operation.paths[3]: "/a*b" has "*" in the middle: it is only allowed at the start or the end`,
			id + `spec.rules[0].to[0].operation.paths[4]: path "/{" has '{' or '}' outside a {*} or {**} template segment`,
			id + "spec.rules[0].to[0].operation.paths[5]: must not be empty",
		}},
	})
}

// TestIstioDocsExportTo: exportTo (virtual-service, destination-rule and
// service-entry references): "." is this namespace, "*" every namespace,
// "~" (no one) is for ServiceEntry only; "*" cannot be combined with
// other entries, "." and the namespace's own name are one entry, and a
// DestinationRule with a workloadSelector "can only be exported to its
// own namespace".
func TestIstioDocsExportTo(t *testing.T) {
	const dr = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
`
	runIstioCases(t, []istioCase{
		{name: "valid", yaml: dr + `  exportTo: [".", prod]
`},
		{name: "ServiceEntry to no one", yaml: seHead + `
  hosts: [a.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
  exportTo: ["~"]
`},
		{name: "star with others, dot and own name, bad name", yaml: dr + `  exportTo: ["*", ".", default, Bad_NS]
`, want: []string{
			drID + `spec.exportTo[2]: duplicate: exportTo[1] already names namespace "default"`,
			drID + `spec.exportTo[3]: "Bad_NS" is not ".", "*" or a namespace name`,
			drID + `spec.exportTo[0]: "*" cannot be combined with other entries`,
		}},
		{name: "selector rule exported elsewhere", yaml: dr + `  workloadSelector: {matchLabels: {app: web}}
  exportTo: [prod]
`, want: []string{
			drID + `spec.exportTo[0]: a DestinationRule with workloadSelector can only be exported to its own namespace (".")`,
		}},
	})
}
