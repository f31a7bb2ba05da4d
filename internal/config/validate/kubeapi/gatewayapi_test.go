package kubeapi_test

import (
	"fmt"
	"strings"
	"testing"
)

func gwHTTPRoute(spec string) string {
	return kubeDoc("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\nspec:\n", spec, 2)
}

func gwGRPCRoute(spec string) string {
	return kubeDoc("apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata:\n  name: g\nspec:\n", spec, 2)
}

func gwGateway(spec string) string {
	return kubeDoc("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n", spec, 2)
}

// gwRules renders n rules with m path matches each.
func gwRules(n, m int) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := 0; i < n; i++ {
		b.WriteString("- matches:\n")
		for j := 0; j < m; j++ {
			fmt.Fprintf(&b, "  - path:\n      value: /p%d\n", j)
		}
	}
	return b.String()
}

const (
	routeErr = "x.yaml#1 HTTPRoute default/r: "
	grpcErr  = "x.yaml#1 GRPCRoute default/g: "
	gwErr    = "x.yaml#1 Gateway default/gw: "
	splitErr = "x.yaml#1 TrafficSplit default/reviews-split: "
)

func TestHTTPRoute(t *testing.T) {
	kubeRun(t, []kubeCase{
		{"realistic mesh route", gwHTTPRoute(`
parentRefs:
- group: ""
  kind: Service
  name: reviews
  port: 9080
rules:
- name: canary
  matches:
  - path:
      type: PathPrefix
      value: /reviews
    headers:
    - name: x-canary
      value: "true"
    - type: RegularExpression
      name: User-Agent
      value: ".*Firefox.*"
    queryParams:
    - name: debug
      value: "1"
    method: GET
  filters:
  - type: RequestHeaderModifier
    requestHeaderModifier:
      set:
      - name: x-route
        value: canary
      add:
      - name: x-trace
        value: "on"
      remove: [x-internal]
  - type: ResponseHeaderModifier
    responseHeaderModifier:
      remove: [server]
  - type: RequestMirror
    requestMirror:
      backendRef:
        name: reviews-shadow
        port: 9080
      fraction:
        numerator: 1
        denominator: 10
  backendRefs:
  - name: reviews-v1
    port: 9080
    weight: 90
  - name: reviews-v2
    namespace: canary
    port: 9080
    weight: 10
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-version
          value: v2
  timeouts:
    request: 10s
    backendRequest: 2s
  retry:
    codes: [500, 502, 503]
    attempts: 3
    backoff: 100ms
- matches:
  - path:
      type: Exact
      value: /login
  - path:
      type: RegularExpression
      value: ^/api/v[0-9]+/.*$
  backendRefs:
  - name: auth
    port: 8080
`), nil},
		{"gateway route with redirect and rewrite", gwHTTPRoute(`
parentRefs:
- name: public
  sectionName: https
- name: public
  sectionName: http
- group: core
  kind: Service
  name: web
hostnames: [example.com, "*.example.org"]
rules:
- filters:
  - type: RequestRedirect
    requestRedirect:
      scheme: https
      hostname: www.example.com
      port: 443
      statusCode: 301
      path:
        type: ReplaceFullPath
        replaceFullPath: /new
- matches:
  - path:
      type: PathPrefix
      value: /old
  filters:
  - type: URLRewrite
    urlRewrite:
      hostname: internal.example.com
      path:
        type: ReplacePrefixMatch
        replacePrefixMatch: /new
  - type: CORS
    cors:
      allowOrigins: ["https://*.example.com"]
      allowMethods: [GET, POST]
      allowHeaders: [x-user]
      maxAge: 60
  backendRefs:
  - name: web
    port: 80
  sessionPersistence:
    sessionName: sticky
    absoluteTimeout: 1h
    type: Cookie
    cookieConfig:
      lifetimeType: Permanent
`), nil},
		{"parent refs", gwHTTPRoute(`
useDefaultGateways: Some
parentRefs:
- group: apps
  kind: Deployment
  name: web
- kind: Service
  name: 1web
  namespace: Shop
  sectionName: Http_1
  port: 0
- kind: Service
  group: ""
  name: api
  port: 80
- kind: Service
  group: ""
  name: api
  port: 80
- name: ""
`), []string{
			routeErr + `spec.useDefaultGateways: "Some" is not a scope: use All or None`,
			routeErr + `spec.parentRefs[0]: cannot attach to kind "Deployment" in group "apps": use a Service (group "", kind Service) for mesh routing or a Gateway (group gateway.networking.k8s.io, the default)`,
			routeErr + `spec.parentRefs[1].group: required for kind Service: set group: "" (left out, it defaults to gateway.networking.k8s.io)`,
			routeErr + `spec.parentRefs[1].namespace: "Shop" is not a valid namespace: ` + dns1123Msg,
			routeErr + `spec.parentRefs[1].sectionName: "Http_1" is not a valid name: ` + subdomainMsg,
			routeErr + "spec.parentRefs[1].port: must be between 1 and 65535",
			routeErr + "spec.parentRefs[3]: duplicate parentRef: spec.parentRefs[2] already attaches to this parent; give each entry a distinct sectionName or port",
			routeErr + "spec.parentRefs[4].name: required",
		}},
		{"service parent name", gwHTTPRoute(`
parentRefs:
- group: ""
  kind: Service
  name: 1web
`), []string{routeErr + `spec.parentRefs[0].name: "1web" is not a valid Service name: ` + dns1035Msg}},
		{"hostnames", gwHTTPRoute(`
hostnames: [10.0.0.1, Example.com, "*", "a.*.com", ""]
`), []string{
			routeErr + `spec.hostnames[0]: "10.0.0.1" is an IP address: use a hostname`,
			routeErr + `spec.hostnames[1]: "Example.com" is not a valid hostname: ` + subdomainMsg,
			routeErr + `spec.hostnames[2]: "*" is not a valid hostname: ` + subdomainMsg,
			routeErr + `spec.hostnames[3]: "a.*.com" is not a valid hostname: ` + subdomainMsg,
			routeErr + "spec.hostnames[4]: required",
		}},
		{"too many hostnames", gwHTTPRoute("hostnames: [" + strings.TrimSuffix(strings.Repeat("a.com,", 17), ",") + "]\n"),
			[]string{routeErr + "spec.hostnames: must have at most 16 items, not 17"}},
		{"too many rules", gwHTTPRoute(gwRules(17, 1)), []string{routeErr + "spec.rules: must have at most 16 items, not 17"}},
		{"too many matches", gwHTTPRoute(gwRules(1, 65)), []string{routeErr + "spec.rules[0].matches: must have at most 64 items, not 65"}},
		{"too many matches in all", gwHTTPRoute(gwRules(3, 50)), []string{routeErr + "spec.rules: have 150 matches in all, over the 128 a route may hold: split the rules across several routes"}},
		{"path matches", gwHTTPRoute(`
rules:
- matches:
  - path:
      type: Exact
      value: login
  - path:
      value: /a//b/./c%2f#x
  - path:
      value: /a/..
  - path:
      type: Exact
      value: /a b
  - path:
      type: RegularExpression
      value: (a
  - path:
      type: Prefix
      value: /a
  - path:
      type: RegularExpression
      value: /(?=x)
`), []string{
			routeErr + `spec.rules[0].matches[0].path.value: "login" must be an absolute path starting with /`,
			routeErr + `spec.rules[0].matches[1].path.value: "/a//b/./c%2f#x" must not contain "//"`,
			routeErr + `spec.rules[0].matches[1].path.value: "/a//b/./c%2f#x" must not contain "/./"`,
			routeErr + `spec.rules[0].matches[1].path.value: "/a//b/./c%2f#x" must not contain "%2f"`,
			routeErr + `spec.rules[0].matches[1].path.value: "/a//b/./c%2f#x" must not contain "#"`,
			routeErr + `spec.rules[0].matches[1].path.value: "/a//b/./c%2f#x" has characters not allowed in a path: percent-encode them (e.g. space as %20)`,
			routeErr + `spec.rules[0].matches[2].path.value: "/a/.." must not end with "/.."`,
			routeErr + `spec.rules[0].matches[3].path.value: "/a b" has characters not allowed in a path: percent-encode them (e.g. space as %20)`,
			routeErr + "spec.rules[0].matches[4].path.value: \"(a\" is not a valid regular expression (RE2 syntax): error parsing regexp: missing closing ): `(a`",
			routeErr + `spec.rules[0].matches[5].path.type: "Prefix" is not a path match type: use Exact, PathPrefix or RegularExpression`,
			routeErr + "spec.rules[0].matches[6].path.value: \"/(?=x)\" is not a valid regular expression (RE2 syntax): error parsing regexp: invalid or unsupported Perl syntax: `(?=`",
		}},
		{"long path", gwHTTPRoute("rules:\n- matches:\n  - path:\n      value: /" + strings.Repeat("a", 1024) + "\n"),
			[]string{routeErr + "spec.rules[0].matches[0].path.value: must be at most 1024 characters"}},
		{"header, query and method matches", gwHTTPRoute(`
rules:
- matches:
  - headers:
    - name: X-User
      value: a
    - name: x-user
      value: b
    - name: "bad header"
      value: c
    - name: x-re
      type: RegularExpression
      value: "[a"
    - name: x-t
      type: Prefix
      value: a
    - name: x-empty
      value: ""
    queryParams:
    - name: q
      value: a
    - name: q
      value: b
    - name: Q
      type: RegularExpression
      value: "*"
    method: get
`), []string{
			routeErr + `spec.rules[0].matches[0].headers[1].name: duplicate header "x-user": already used at spec.rules[0].matches[0].headers[0].name`,
			routeErr + "spec.rules[0].matches[0].headers[2].name: \"bad header\" is not a valid header name: use letters, digits and !#$%&'*+-.^_`|~",
			routeErr + "spec.rules[0].matches[0].headers[3].value: \"[a\" is not a valid regular expression (RE2 syntax): error parsing regexp: missing closing ]: `[a`",
			routeErr + `spec.rules[0].matches[0].headers[4].type: "Prefix" is not a match type: use Exact or RegularExpression`,
			routeErr + "spec.rules[0].matches[0].headers[5].value: required",
			routeErr + `spec.rules[0].matches[0].queryParams[1].name: duplicate query parameter "q": already used at spec.rules[0].matches[0].queryParams[0].name`,
			routeErr + "spec.rules[0].matches[0].queryParams[2].value: \"*\" is not a valid regular expression (RE2 syntax): error parsing regexp: missing argument to repetition operator: `*`",
			routeErr + `spec.rules[0].matches[0].method: "get" is not a method: use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH (upper case)`,
		}},
		{"filter unions", gwHTTPRoute(`
rules:
- filters:
  - requestHeaderModifier:
      set:
      - name: a
        value: b
  - type: Rewrite
  - type: RequestHeaderModifier
  - type: ResponseHeaderModifier
    requestHeaderModifier:
      remove: [a]
    responseHeaderModifier:
      remove: [b]
`), []string{
			routeErr + "spec.rules[0].filters[0].type: required: use one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, RequestRedirect, URLRewrite, CORS, ExternalAuth, ExtensionRef",
			routeErr + `spec.rules[0].filters[1].type: "Rewrite" is not a filter type: use one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, RequestRedirect, URLRewrite, CORS, ExternalAuth, ExtensionRef`,
			routeErr + "spec.rules[0].filters[2].requestHeaderModifier: required when type is RequestHeaderModifier",
			routeErr + "spec.rules[0].filters[3].requestHeaderModifier: must not be set when type is ResponseHeaderModifier: set type to RequestHeaderModifier or remove it",
		}},
		{"repeated and conflicting filters", gwHTTPRoute(`
rules:
- filters:
  - type: RequestHeaderModifier
    requestHeaderModifier:
      remove: [a]
  - type: RequestHeaderModifier
    requestHeaderModifier:
      remove: [b]
  - type: RequestRedirect
    requestRedirect:
      scheme: https
  - type: URLRewrite
    urlRewrite:
      hostname: a.com
  backendRefs:
  - name: web
    port: 80
`), []string{
			routeErr + "spec.rules[0].filters[1].type: RequestHeaderModifier filter cannot be repeated (first at spec.rules[0].filters[0]): merge them into one",
			routeErr + "spec.rules[0].filters[3]: URLRewrite cannot be combined with RequestRedirect (at spec.rules[0].filters[2]): the redirect answers the request, so keep one",
			routeErr + "spec.rules[0].filters[2]: RequestRedirect cannot be used with backendRefs: the redirect answers the request itself, so remove the redirect or the backendRefs",
		}},
		{"replace prefix needs one prefix match", gwHTTPRoute(`
rules:
- matches:
  - path:
      type: Exact
      value: /a
  filters:
  - type: URLRewrite
    urlRewrite:
      path:
        type: ReplacePrefixMatch
        replacePrefixMatch: /b
  backendRefs:
  - name: web
    port: 80
    filters:
    - type: RequestRedirect
      requestRedirect:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /c
- matches:
  - path:
      value: /a
  - path:
      value: /b
  filters:
  - type: RequestRedirect
    requestRedirect:
      path:
        type: ReplacePrefixMatch
        replacePrefixMatch: /c
`), []string{
			routeErr + "spec.rules[0].filters[0].urlRewrite.path: ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix: it replaces the prefix that matched",
			routeErr + "spec.rules[0].backendRefs[0].filters[0].requestRedirect.path: ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix: it replaces the prefix that matched",
			routeErr + "spec.rules[1].filters[0].requestRedirect.path: ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix: it replaces the prefix that matched",
		}},
		{"header modifier", gwHTTPRoute(`
rules:
- filters:
  - type: ResponseHeaderModifier
    responseHeaderModifier:
      set:
      - name: X-A
        value: "1"
      - name: x-b
        value: ""
      add:
      - name: x-a
        value: "2"
      - name: "x c"
        value: "3"
      remove: [X-B]
`), []string{
			routeErr + "spec.rules[0].filters[0].responseHeaderModifier.set[1].value: required",
			routeErr + `spec.rules[0].filters[0].responseHeaderModifier.add[0].name: header "x-a" already has an action at spec.rules[0].filters[0].responseHeaderModifier.set[0].name: give each header one of set, add or remove`,
			routeErr + "spec.rules[0].filters[0].responseHeaderModifier.add[1].name: \"x c\" is not a valid header name: use letters, digits and !#$%&'*+-.^_`|~",
			routeErr + `spec.rules[0].filters[0].responseHeaderModifier.remove[0]: header "X-B" already has an action at spec.rules[0].filters[0].responseHeaderModifier.set[1].name: give each header one of set, add or remove`,
		}},
		{"redirect fields", gwHTTPRoute(`
rules:
- filters:
  - type: RequestRedirect
    requestRedirect:
      scheme: ftp
      hostname: "*.example.com"
      port: 0
      statusCode: 200
      path:
        type: ReplaceFullPath
        replacePrefixMatch: /x
`), []string{
			routeErr + `spec.rules[0].filters[0].requestRedirect.scheme: "ftp" is not a scheme: use http or https`,
			routeErr + `spec.rules[0].filters[0].requestRedirect.hostname: "*.example.com" is not a valid hostname: ` + subdomainMsg,
			routeErr + "spec.rules[0].filters[0].requestRedirect.path.replaceFullPath: required when type is ReplaceFullPath",
			routeErr + "spec.rules[0].filters[0].requestRedirect.path.replacePrefixMatch: must not be set when type is ReplaceFullPath",
			routeErr + "spec.rules[0].filters[0].requestRedirect.port: must be between 1 and 65535",
			routeErr + "spec.rules[0].filters[0].requestRedirect.statusCode: 200 is not a redirect status: use 301, 302, 303, 307 or 308",
		}},
		{"path modifier types", gwHTTPRoute(`
rules:
- filters:
  - type: URLRewrite
    urlRewrite:
      path:
        replaceFullPath: /x
- filters:
  - type: URLRewrite
    urlRewrite:
      path:
        type: ReplaceAll
- filters:
  - type: URLRewrite
    urlRewrite:
      path:
        type: ReplacePrefixMatch
        replaceFullPath: /x
`), []string{
			routeErr + "spec.rules[0].filters[0].urlRewrite.path.type: required: use ReplaceFullPath or ReplacePrefixMatch",
			routeErr + `spec.rules[1].filters[0].urlRewrite.path.type: "ReplaceAll" is not a path modifier: use ReplaceFullPath or ReplacePrefixMatch`,
			routeErr + "spec.rules[2].filters[0].urlRewrite.path.replacePrefixMatch: required when type is ReplacePrefixMatch",
			routeErr + "spec.rules[2].filters[0].urlRewrite.path.replaceFullPath: must not be set when type is ReplacePrefixMatch",
		}},
		{"mirror", gwHTTPRoute(`
rules:
- filters:
  - type: RequestMirror
    requestMirror:
      backendRef:
        name: shadow
      percent: 101
      fraction:
        numerator: 5
        denominator: 4
- filters:
  - type: RequestMirror
    requestMirror:
      backendRef:
        name: shadow
        port: 80
      fraction:
        numerator: -1
        denominator: 0
`), []string{
			routeErr + "spec.rules[0].filters[0].requestMirror.backendRef.port: required for a Service backend: set the Service port to send to",
			routeErr + "spec.rules[0].filters[0].requestMirror: set percent or fraction, not both",
			routeErr + "spec.rules[0].filters[0].requestMirror.percent: must be between 0 and 100",
			routeErr + "spec.rules[0].filters[0].requestMirror.fraction.numerator: must not be more than the denominator (4)",
			routeErr + "spec.rules[1].filters[0].requestMirror.fraction.numerator: must be >= 0",
			routeErr + "spec.rules[1].filters[0].requestMirror.fraction.denominator: must be >= 1",
		}},
		{"cors", gwHTTPRoute(`
rules:
- filters:
  - type: CORS
    cors:
      allowOrigins: ["*", "ftp://a.com"]
      allowMethods: [GET, "*", FETCH]
      allowHeaders: ["bad header"]
      exposeHeaders: [x-ok]
      maxAge: -1
`), []string{
			routeErr + "spec.rules[0].filters[0].cors.allowOrigins[0]: * already allows everything: remove it or the other items",
			routeErr + `spec.rules[0].filters[0].cors.allowOrigins[1]: "ftp://a.com" is not an origin: use *, or scheme://host[:port] such as https://example.com or https://*.example.com`,
			routeErr + "spec.rules[0].filters[0].cors.allowMethods[1]: * already allows everything: remove it or the other items",
			routeErr + `spec.rules[0].filters[0].cors.allowMethods[2]: "FETCH" is not a method: use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH or *`,
			routeErr + "spec.rules[0].filters[0].cors.allowHeaders[0]: \"bad header\" is not a valid header name: use letters, digits and !#$%&'*+-.^_`|~",
			routeErr + "spec.rules[0].filters[0].cors.maxAge: must be >= 1",
		}},
		{"external auth and extension ref", gwHTTPRoute(`
rules:
- filters:
  - type: ExternalAuth
    externalAuth:
      backendRef:
        name: authz
        port: 9000
      http:
        path: /check
  - type: ExtensionRef
    extensionRef:
      group: Example.com
      kind: ""
      name: ""
- filters:
  - type: ExternalAuth
    externalAuth:
      protocol: GRPC
      backendRef:
        name: authz
        port: 9000
      http: {}
`), []string{
			routeErr + "spec.rules[0].filters[0].externalAuth.protocol: required: use HTTP or GRPC",
			routeErr + "spec.rules[0].filters[0].externalAuth.http: may only be set when protocol is HTTP",
			routeErr + `spec.rules[0].filters[1].extensionRef.group: "Example.com" is not a valid group: ` + subdomainMsg,
			routeErr + "spec.rules[0].filters[1].extensionRef.kind: required",
			routeErr + "spec.rules[0].filters[1].extensionRef.name: required",
			routeErr + "spec.rules[1].filters[0].externalAuth.grpc: required when protocol is GRPC",
			routeErr + "spec.rules[1].filters[0].externalAuth.http: may only be set when protocol is HTTP",
		}},
		{"backend refs", gwHTTPRoute(`
rules:
- backendRefs:
  - name: web
  - name: web
    port: 80
    weight: -1
  - name: web
    port: 70000
    weight: 1000001
  - group: multicluster.x-k8s.io
    kind: ServiceImport
    name: web
    port: 80
  - name: Web
    namespace: "-x"
    port: 80
    weight: 0
`), []string{
			routeErr + "spec.rules[0].backendRefs[0].port: required for a Service backend: set the Service port to send to",
			routeErr + "spec.rules[0].backendRefs[1].weight: must be >= 0",
			routeErr + "spec.rules[0].backendRefs[2].port: must be between 1 and 65535",
			routeErr + "spec.rules[0].backendRefs[2].weight: must be at most 1000000",
			routeErr + `spec.rules[0].backendRefs[3]: cannot route to kind "ServiceImport" in group "multicluster.x-k8s.io": Trellis routes to Services (group "", kind Service)`,
			routeErr + `spec.rules[0].backendRefs[4].name: "Web" is not a valid Service name: ` + dns1035Msg,
			routeErr + `spec.rules[0].backendRefs[4].namespace: "-x" is not a valid namespace: ` + dns1123Msg,
		}},
		{"too many backend refs and filters", gwHTTPRoute("rules:\n- backendRefs:\n" + strings.Repeat("  - name: web\n    port: 80\n", 17) +
			"  filters:\n" + strings.Repeat("  - type: RequestMirror\n    requestMirror:\n      backendRef:\n        name: web\n        port: 80\n", 17)),
			[]string{
				routeErr + "spec.rules[0].filters: must have at most 16 items, not 17",
				routeErr + "spec.rules[0].backendRefs: must have at most 16 items, not 17",
			}},
		{"timeouts, retry and session persistence", gwHTTPRoute(`
rules:
- name: a
  timeouts:
    request: 1s
    backendRequest: 2s
  retry:
    codes: [200, 503]
    attempts: 0
    backoff: 1d
  sessionPersistence:
    sessionName: s
    type: Header
    cookieConfig:
      lifetimeType: Permanent
- name: a
  timeouts:
    request: 1.5s
  sessionPersistence:
    type: Query
    cookieConfig:
      lifetimeType: Forever
`), []string{
			routeErr + "spec.rules[0].timeouts.backendRequest: must not be longer than the request timeout (1s)",
			routeErr + "spec.rules[0].retry.codes[0]: 200 is not a retryable status code: use 400 to 599",
			routeErr + "spec.rules[0].retry.attempts: must be >= 1 (leave retry out to disable retries)",
			routeErr + `spec.rules[0].retry.backoff: "1d" is not a duration: use up to four number+unit parts with units h, m, s or ms, e.g. 1m30s or 500ms`,
			routeErr + "spec.rules[0].sessionPersistence.cookieConfig: may only be set when type is Cookie",
			routeErr + "spec.rules[0].sessionPersistence.absoluteTimeout: required when cookieConfig.lifetimeType is Permanent: it sets the cookie's lifetime",
			routeErr + `spec.rules[1].name: duplicate rule name "a": already used at spec.rules[0].name`,
			routeErr + `spec.rules[1].timeouts.request: "1.5s" is not a duration: use up to four number+unit parts with units h, m, s or ms, e.g. 1m30s or 500ms`,
			routeErr + `spec.rules[1].sessionPersistence.type: "Query" is not a session persistence type: use Cookie or Header`,
			routeErr + "spec.rules[1].sessionPersistence.cookieConfig: may only be set when type is Cookie",
			routeErr + `spec.rules[1].sessionPersistence.cookieConfig.lifetimeType: "Forever" is not a lifetime type: use Session or Permanent`,
		}},
		{"zero request timeout disables the bound", gwHTTPRoute(`
rules:
- timeouts:
    request: 0s
    backendRequest: 5s
`), nil},
	})
}

func TestGRPCRoute(t *testing.T) {
	kubeRun(t, []kubeCase{
		{"realistic grpc route", gwGRPCRoute(`
parentRefs:
- group: ""
  kind: Service
  name: greeter
  port: 50051
hostnames: [greeter.example.com]
rules:
- matches:
  - method:
      service: helloworld.Greeter
      method: SayHello
    headers:
    - name: x-canary
      value: "true"
  - method:
      type: RegularExpression
      service: ".*\\.Greeter"
  filters:
  - type: RequestHeaderModifier
    requestHeaderModifier:
      add:
      - name: x-route
        value: grpc
  backendRefs:
  - name: greeter-v2
    port: 50051
    weight: 1
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        remove: [x-debug]
- backendRefs:
  - name: greeter-v1
    port: 50051
`), nil},
		{"method matches", gwGRPCRoute(`
rules:
- matches:
  - method: {}
  - method:
      service: hello world
      method: Say.Hello
  - method:
      type: RegularExpression
      method: "(Say"
  - method:
      type: Prefix
      method: Say
  - headers:
    - name: X-A
      value: a
    - name: x-a
      value: b
    - name: x-b
      type: RegularExpression
      value: "+"
`), []string{
			grpcErr + "spec.rules[0].matches[0].method: must set service or method (or both)",
			grpcErr + `spec.rules[0].matches[1].method.service: "hello world" is not valid: use a package-qualified service such as helloworld.Greeter`,
			grpcErr + `spec.rules[0].matches[1].method.method: "Say.Hello" is not valid: use a method name such as SayHello`,
			grpcErr + "spec.rules[0].matches[2].method.method: \"(Say\" is not a valid regular expression (RE2 syntax): error parsing regexp: missing closing ): `(Say`",
			grpcErr + `spec.rules[0].matches[3].method.type: "Prefix" is not a match type: use Exact or RegularExpression`,
			grpcErr + `spec.rules[0].matches[4].headers[1].name: duplicate header "x-a": already used at spec.rules[0].matches[4].headers[0].name`,
			grpcErr + "spec.rules[0].matches[4].headers[2].value: \"+\" is not a valid regular expression (RE2 syntax): error parsing regexp: missing argument to repetition operator: `+`",
		}},
		{"filters and backends", gwGRPCRoute(`
rules:
- filters:
  - type: URLRewrite
  - type: ResponseHeaderModifier
    responseHeaderModifier:
      remove: [a]
  - type: ResponseHeaderModifier
    responseHeaderModifier:
      remove: [b]
  - type: RequestMirror
    requestHeaderModifier:
      remove: [c]
  backendRefs:
  - name: greeter
    weight: -5
`), []string{
			grpcErr + `spec.rules[0].filters[0].type: "URLRewrite" is not a filter type: use one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, ExtensionRef`,
			grpcErr + "spec.rules[0].filters[2].type: ResponseHeaderModifier filter cannot be repeated (first at spec.rules[0].filters[1]): merge them into one",
			grpcErr + "spec.rules[0].filters[3].requestHeaderModifier: must not be set when type is RequestMirror: set type to RequestHeaderModifier or remove it",
			grpcErr + "spec.rules[0].filters[3].requestMirror: required when type is RequestMirror",
			grpcErr + "spec.rules[0].backendRefs[0].port: required for a Service backend: set the Service port to send to",
			grpcErr + "spec.rules[0].backendRefs[0].weight: must be >= 0",
		}},
		{"limits", gwGRPCRoute("hostnames: [1.2.3.4]\nrules:\n" + strings.Repeat("- matches:\n"+strings.Repeat("  - method:\n      service: a.B\n", 50), 3)),
			[]string{
				grpcErr + `spec.hostnames[0]: "1.2.3.4" is an IP address: use a hostname`,
				grpcErr + "spec.rules: have 150 matches in all, over the 128 a route may hold: split the rules across several routes",
			}},
	})
}

func TestGatewayAPIGateway(t *testing.T) {
	kubeRun(t, []kubeCase{
		{"realistic gateway", gwGateway(`
gatewayClassName: trellis
listeners:
- name: http
  port: 80
  protocol: HTTP
  hostname: "*.example.com"
  allowedRoutes:
    namespaces:
      from: Selector
      selector:
        matchLabels:
          shared-gateway: "true"
    kinds:
    - kind: HTTPRoute
- name: https
  port: 443
  protocol: HTTPS
  hostname: "*.example.com"
  tls:
    certificateRefs:
    - name: example-cert
- name: passthrough
  port: 8443
  protocol: TLS
  tls:
    mode: Passthrough
- name: tcp
  port: 5432
  protocol: TCP
  allowedRoutes:
    namespaces:
      from: All
addresses:
- value: 192.0.2.10
- type: Hostname
  value: gw.example.com
- type: example.com/pool
  value: blue
`), nil},
		{"class and listeners required", gwGateway(`
listeners: []
`), []string{
			gwErr + "spec.gatewayClassName: required",
			gwErr + "spec.listeners: required: list at least one listener",
		}},
		{"listeners", gwGateway(`
gatewayClassName: trellis
listeners:
- name: web
  port: 80
  protocol: HTTP
  tls:
    certificateRefs:
    - name: c
- name: web
  port: 0
  protocol: ""
- name: Bad_Name
  port: 443
  protocol: HTTPS
  tls:
    mode: Passthrough
- name: tls
  port: 8443
  protocol: TLS
- name: tcp
  port: 5432
  protocol: TCP
  hostname: db.example.com
- name: term
  port: 9443
  protocol: HTTPS
  tls:
    mode: Terminate
- name: http-again
  port: 80
  protocol: HTTP
- name: odd
  port: 81
  protocol: "HTTP 2"
  hostname: 10.0.0.1
  tls:
    mode: Reencrypt
    certificateRefs:
    - name: ""
      namespace: Bad
`), []string{
			gwErr + "spec.listeners[0].tls: must not be set when protocol is HTTP: use HTTPS or TLS for TLS listeners",
			gwErr + `spec.listeners[1].name: duplicate listener name "web": already used at spec.listeners[0].name`,
			gwErr + "spec.listeners[1].port: must be between 1 and 65535",
			gwErr + "spec.listeners[1].protocol: required: use HTTP, HTTPS, TLS, TCP or UDP",
			gwErr + `spec.listeners[2].name: "Bad_Name" is not a valid name: ` + subdomainMsg,
			gwErr + "spec.listeners[2].tls.mode: must be Terminate when protocol is HTTPS (use protocol TLS for Passthrough)",
			gwErr + "spec.listeners[3].tls: required when protocol is TLS: set mode Passthrough or Terminate",
			gwErr + "spec.listeners[4].hostname: must not be set when protocol is TCP: TCP and UDP carry no hostname to match",
			gwErr + "spec.listeners[5].tls.certificateRefs: required when mode is Terminate: name the Secret holding the certificate",
			gwErr + `spec.listeners[6]: duplicate port/protocol/hostname "80/HTTP/": already used at spec.listeners[0]`,
			gwErr + `spec.listeners[7].protocol: "HTTP 2" is not a protocol: use HTTP, HTTPS, TLS, TCP or UDP`,
			gwErr + `spec.listeners[7].hostname: "10.0.0.1" is an IP address: use a hostname`,
			gwErr + `spec.listeners[7].tls.mode: "Reencrypt" is not a TLS mode: use Terminate or Passthrough`,
			gwErr + "spec.listeners[7].tls.certificateRefs[0].name: required",
			gwErr + `spec.listeners[7].tls.certificateRefs[0].namespace: "Bad" is not a valid namespace: ` + dns1123Msg,
		}},
		{"allowed routes", gwGateway(`
gatewayClassName: trellis
listeners:
- name: a
  port: 80
  protocol: HTTP
  allowedRoutes:
    namespaces:
      from: Selector
    kinds:
    - kind: ""
    - kind: 9Route
- name: b
  port: 81
  protocol: HTTP
  allowedRoutes:
    namespaces:
      from: Others
      selector:
        matchLabels:
          "bad key!": x
`), []string{
			gwErr + "spec.listeners[0].allowedRoutes.namespaces.selector: required when from is Selector",
			gwErr + "spec.listeners[0].allowedRoutes.kinds[0].kind: required",
			gwErr + `spec.listeners[0].allowedRoutes.kinds[1].kind: "9Route" is not a kind: use a name such as Service (letters, digits and -, starting with a letter)`,
			gwErr + `spec.listeners[1].allowedRoutes.namespaces.from: "Others" is not allowed: use All, Same or Selector`,
			gwErr + `spec.listeners[1].allowedRoutes.namespaces.selector.matchLabels[bad key!]: "bad key!" is not a valid label key: ` + nameMsg,
		}},
		{"addresses", gwGateway(`
gatewayClassName: trellis
listeners:
- name: a
  port: 80
  protocol: HTTP
addresses:
- value: 192.0.2.300
- type: IPAddress
  value: 192.0.2.1
- value: 192.0.2.1
- type: Hostname
  value: Bad_Host
- type: DNS
  value: x
`), []string{
			gwErr + `spec.addresses[0].value: "192.0.2.300" is not a valid IP address`,
			gwErr + `spec.addresses[2].value: duplicate address "192.0.2.1": already used at spec.addresses[1].value`,
			gwErr + `spec.addresses[3].value: "Bad_Host" is not a valid hostname: ` + subdomainMsg,
			gwErr + `spec.addresses[4].type: "DNS" is not an address type: use IPAddress, Hostname, NamedAddress or a domain-prefixed type such as example.com/custom`,
		}},
	})
}

func TestTrafficSplit(t *testing.T) {
	split := func(version, spec string) string {
		return kubeDoc("apiVersion: split.smi-spec.io/"+version+"\nkind: TrafficSplit\nmetadata:\n  name: reviews-split\nspec:\n", spec, 2)
	}
	kubeRun(t, []kubeCase{
		{"seed example (v1alpha1 quantities)", split("v1alpha1", `
service: reviews
backends:
- service: reviews-v1
  weight: 900m
- service: reviews-v2
  weight: 100m
`), nil},
		{"v1alpha2 integers, FQDN root, a zero weight", split("v1alpha2", `
service: reviews.default.svc.cluster.local
backends:
- service: reviews-v1
  weight: 100
- service: reviews-v2
  weight: 0
`), nil},
		{"service and backends required", split("v1alpha4", `
backends: []
`), []string{
			splitErr + "spec.service: required",
			splitErr + "spec.backends: required: list the backend Services and their weights",
		}},
		{"service names", split("v1alpha2", `
service: 1reviews.default
backends:
- service: Reviews_V1
  weight: 1
- weight: 1
`), []string{
			splitErr + `spec.service: "1reviews.default" is not a valid Service name: ` + dns1035Msg,
			splitErr + `spec.backends[0].service: "Reviews_V1" is not a valid Service name: ` + subdomainMsg,
			splitErr + "spec.backends[1].service: required",
		}},
		{"weights and duplicates", split("v1alpha2", `
service: reviews
backends:
- service: reviews-v1
  weight: -1
- service: reviews-v1
  weight: 5
`), []string{
			splitErr + "spec.backends[0].weight: must be >= 0",
			splitErr + `spec.backends[1].service: duplicate backend "reviews-v1": already used at spec.backends[0].service`,
		}},
		{"negative quantity", split("v1alpha1", `
service: reviews
backends:
- service: reviews-v1
  weight: -100m
`), []string{splitErr + "spec.backends[0].weight: must be >= 0"}},
		{"all weights zero", split("v1alpha3", `
service: reviews
backends:
- service: reviews-v1
  weight: 0
- service: reviews-v2
  weight: 0
`), []string{splitErr + "spec.backends: all weights are 0, so no backend would get traffic: give at least one backend a weight above 0"}},
		{"matches are not supported", split("v1alpha3", `
service: reviews
backends:
- service: reviews-v1
  weight: 1
matches:
- kind: HTTPRouteGroup
  name: canary-users
`), []string{splitErr + "spec.matches[0]: not supported: Trellis does not read HTTPRouteGroup objects, so the split would apply to all traffic; remove matches, or use an HTTPRoute with matches and weighted backendRefs"}},
	})
}
