package validate_test

import "testing"

func TestSecurityPeerAuthentication(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid mesh-wide strict mTLS with a port exception", yaml: `
# valid mesh-wide strict mTLS with a port exception
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p, namespace: istio-system}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: STRICT}
  portLevelMtls: {"5432": {mode: DISABLE}}
`,
		},
		{name: "port level mTLS needs a selector", yaml: `
# port level mTLS needs a selector
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p}
spec:
  selector: {matchLabels: {}}
  portLevelMtls: {"0": {mode: PERMISSIVE}}
`,
			want: []string{
				`x.yaml#1 PeerAuthentication default/p: spec.selector.matchLabels: an empty selector selects every workload in the namespace: add labels, or remove the selector`,
				`x.yaml#1 PeerAuthentication default/p: spec.portLevelMtls: needs a selector: ports belong to workloads, so a mesh- or namespace-wide policy cannot set them (add selector.matchLabels)`,
				`x.yaml#1 PeerAuthentication default/p: spec.portLevelMtls[0]: port 0 must be in 1..65535`,
			}},
	})
}

func TestSecurityAuthorizationPolicy(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid policy with every source kind", yaml: `
# valid policy with every source kind
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/sleep", "*/ns/prod/*"], namespaces: ["prod-*"], ipBlocks: ["10.0.0.0/8"]}
    to:
    - operation:
        methods: [GET]
        paths: ["/api/*", "/items/{*}/detail"]
        ports: ["8080"]
        hosts: ["*.example.com"]
    when:
    - {key: "request.headers[x-env]", values: [prod]}
    - {key: "request.auth.claims[iss]", values: ["https://issuer"]}
    - {key: "request.auth.claims[realm][role]", values: [admin]}
    - {key: source.ip, notValues: ["10.1.0.0/16"]}
    - {key: destination.port, values: ["80"]}
`,
			want: []string{
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[0].source.principals[1]: "*/ns/prod/*" has more than one "*": only one, at the start or the end, is allowed`,
			}},
		{name: "bad principals, attributes and operations", yaml: `
# bad principals, attributes and operations
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  rules:
  - from:
    - source: {principals: ["spiffe://cluster.local/ns/default/sa/sleep", "default/sleep", "a*b", ""], serviceAccounts: [x], ipBlocks: ["10.0.0/8"]}
    - source: {}
    to:
    - operation:
        methods: [get]
        ports: ["0"]
        paths: ["/a/{**}/{*}"]
    when:
    - {key: "request.headers", values: [a]}
    - {key: "destination.labels[app]", values: [a]}
    - {key: source.nope, values: [a]}
    - {key: source.principal}
`,
			want: []string{
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[0].source.serviceAccounts: cannot be combined with principals or namespaces: use one way to name the caller`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[0].source.principals[0]: principal "spiffe://cluster.local/ns/default/sa/sleep" must not start with spiffe://: write "cluster.local/ns/default/sa/sleep"`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[0].source.principals[1]: principal "default/sleep" must look like <trust-domain>/ns/<namespace>/sa/<service-account>, e.g. cluster.local/ns/default/sa/sleep`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[0].source.principals[2]: "a*b" has "*" in the middle: it is only allowed at the start or the end`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[0].source.principals[3]: must not be empty`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[0].source.ipBlocks[0]: "10.0.0/8" is not a valid CIDR block (such as 10.0.0.0/16)`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[1].source: empty source: set principals, namespaces, ipBlocks or another field, or remove from`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].to[0].operation.ports[0]: "0" is not a port number in 1..65535`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].to[0].operation.methods[0]: HTTP methods are case-sensitive: write "GET"`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].to[0].operation.paths[0]: path "/a/{**}/{*}": {**} must be the last template segment`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].when[0].key: "request.headers" needs a key in brackets, e.g. request.headers[x-user] or request.auth.claims[iss]`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].when[1].key: "destination.labels[app]" is not supported: use spec.selector`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].when[2].key: unknown attribute "source.nope": use request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<claim>], destination.ip, destination.port, connection.sni or experimental.envoy.filters.*`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].when[3]: set values or notValues for key "source.principal"`,
			}},
		{name: "provider needs CUSTOM", yaml: `
# provider needs CUSTOM
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  action: DENY
  provider: {name: ext}
`,
			want: []string{
				`x.yaml#1 AuthorizationPolicy default/a: spec.provider: only CUSTOM policies take a provider: set action: CUSTOM, or remove provider`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules: a DENY policy without rules never applies: add an empty rule {} to deny every request`,
			}},
		{name: "CUSTOM needs rules and a provider name, and some attributes do not work with it", yaml: `
# CUSTOM needs rules and a provider name, and some attributes do not work with it
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  action: CUSTOM
  provider: {name: ""}
  rules:
  - from: [{source: {namespaces: [prod]}}]
    when: [{key: request.auth.principal, values: [x]}]
`,
			want: []string{
				`x.yaml#1 AuthorizationPolicy default/a: spec.provider.name: required`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].from[0].source.namespaces: not supported with action CUSTOM (only ipBlocks and remoteIpBlocks are)`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].when[0].key: "request.auth.principal" is not supported with action CUSTOM`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules[0].when[0].values[0]: request principal "x" must be "<issuer>/<subject>", e.g. "https://accounts.example.com/alice"`,
			}},
		{name: "CUSTOM without rules", yaml: `
# CUSTOM without rules
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  action: CUSTOM
  provider: {name: ext}
`,
			want: []string{
				`x.yaml#1 AuthorizationPolicy default/a: spec.rules: a CUSTOM policy without rules never applies: add an empty rule {} to apply it to every request`,
			}},
		{name: "allow nothing is fine", yaml: `
# allow nothing is fine
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {}
`,
		},
		{name: "selector and targetRef conflict", yaml: `
# selector and targetRef conflict
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  selector: {matchLabels: {app: "*"}}
  targetRef: {kind: Deployment, name: web, namespace: other}
  rules: [{}]
`,
			want: []string{
				`x.yaml#1 AuthorizationPolicy default/a: spec: only one of selector, targetRef and targetRefs may be set`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.selector.matchLabels[app]: wildcards are not supported in labels: app=*`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.targetRef.namespace: cross-namespace references are not supported: remove namespace and put the policy in the target's namespace`,
				`x.yaml#1 AuthorizationPolicy default/a: spec.targetRef.kind: cannot target Deployment (group ""): use a Service, ServiceEntry (networking.istio.io), Gateway or GatewayClass (gateway.networking.k8s.io)`,
			}},
	})
}

func TestSecurityRequestAuthentication(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid jwt rule", yaml: `
# valid jwt rule
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules:
  - issuer: https://accounts.example.com
    jwksUri: https://accounts.example.com/.well-known/jwks.json
    fromHeaders: [{name: x-jwt, prefix: "Bearer "}]
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    timeout: 5s
`,
		},
		{name: "bad jwt rules", yaml: `
# bad jwt rules
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r}
spec:
  jwtRules:
  - audiences: [""]
    jwksUri: "ftp://x/keys"
    jwks: '{"keys":[{"kty":"RSA","d":"secret"}]}'
    fromHeaders: [{name: ""}]
    outputClaimToHeaders: [{header: "bad header", claim: ""}]
  - issuer: x
    jwks: "not json"
`,
			want: []string{
				`x.yaml#1 RequestAuthentication default/r: spec.jwtRules[0].audiences[0]: must not be empty`,
				`x.yaml#1 RequestAuthentication default/r: spec.jwtRules[0].jwksUri: "ftp://x/keys" must be an http:// or https:// URL`,
				`x.yaml#1 RequestAuthentication default/r: spec.jwtRules[0].jwks: key 0 contains private key material ("d"): publish only the public key`,
				`x.yaml#1 RequestAuthentication default/r: spec.jwtRules[0].fromHeaders[0].name: required`,
				`x.yaml#1 RequestAuthentication default/r: spec.jwtRules[0].outputClaimToHeaders[0].claim: required`,
				`x.yaml#1 RequestAuthentication default/r: spec.jwtRules[0].outputClaimToHeaders[0].header: "bad header" is not a valid header name (letters, digits, '-' and '_')`,
				`x.yaml#1 RequestAuthentication default/r: spec.jwtRules[1].jwks: is not JSON Web Key Set JSON: invalid character 'o' in literal null (expecting 'u')`,
			}},
	})
}

func TestSecurityTelemetry(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "valid telemetry", yaml: `
# valid telemetry
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 10
    customTags: {env: {literal: {value: prod}}}
  accessLogging: [{providers: [{name: envoy}]}]
`,
		},
		{name: "bad telemetry", yaml: `
# bad telemetry
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t}
spec:
  metrics:
  - providers: [{name: ""}]
    overrides:
    - match: {customMetric: ""}
      tagOverrides: {a: {operation: UPSERT}, b: {operation: REMOVE, value: x}}
  tracing:
  - randomSamplingPercentage: 101
    customTags: {t: {header: {name: ""}}}
  accessLogging: [{filter: {expression: " "}}]
`,
			want: []string{
				`x.yaml#1 Telemetry default/t: spec.metrics[0].providers[0].name: required`,
				`x.yaml#1 Telemetry default/t: spec.metrics[0].overrides[0].tagOverrides[a].value: required for operation UPSERT`,
				`x.yaml#1 Telemetry default/t: spec.metrics[0].overrides[0].tagOverrides[b].value: only UPSERT takes a value: remove it`,
				`x.yaml#1 Telemetry default/t: spec.metrics[0].overrides[0].match.customMetric: must not be empty`,
				`x.yaml#1 Telemetry default/t: spec.tracing[0].randomSamplingPercentage: 101 is not a percentage: must be in 0..100`,
				`x.yaml#1 Telemetry default/t: spec.tracing[0].customTags[t].header.name: must not be empty`,
				`x.yaml#1 Telemetry default/t: spec.accessLogging[0].filter.expression: must not be empty: write a CEL expression, or remove filter`,
			}},
	})
}

func TestSecurityConfigMap(t *testing.T) {
	runIstioCases(t, []istioCase{
		{name: "mesh config in the istio ConfigMap", yaml: `
# mesh config in the istio ConfigMap
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    rootNamespace: Bad_NS
    trustDomain: "bad domain"
    connectTimeout: 0.0005s
    defaultHttpRetryPolicy: {attempts: 0, retryOn: "5xx"}
    extensionProviders:
    - {name: ext, envoyExtAuthzHttp: {service: ext.foo.svc.cluster.local, port: 8000}}
    - {name: ext, envoyExtAuthzHttp: {service: ext.foo.svc.cluster.local, port: 8000}}
    defaultConfig: {proxyAdminPort: 70000, drainDuration: 1500ms}
`,
			want: []string{
				`x.yaml#1 ConfigMap istio-system/istio: data[mesh].rootNamespace: "Bad_NS" is not a valid namespace name (lowercase letters, digits and '-', at most 63)`,
				`x.yaml#1 ConfigMap istio-system/istio: data[mesh].trustDomain: "bad domain" is not a valid trust domain: use a DNS name such as cluster.local`,
				`x.yaml#1 ConfigMap istio-system/istio: data[mesh].connectTimeout: must be at least 1ms, got 500µs`,
				`x.yaml#1 ConfigMap istio-system/istio: data[mesh].defaultHttpRetryPolicy.attempts: attempts 0 disables retries, but perTryTimeout, retryOn or retryRemoteLocalities is set: set attempts > 0, or remove them`,
				`x.yaml#1 ConfigMap istio-system/istio: data[mesh].extensionProviders[1].name: provider "ext" is already defined in extensionProviders[0]: names must be unique`,
				`x.yaml#1 ConfigMap istio-system/istio: data[mesh].defaultConfig.proxyAdminPort: port 70000 must be in 1..65535`,
				`x.yaml#1 ConfigMap istio-system/istio: data[mesh].defaultConfig.drainDuration: must be a whole number of seconds`,
			}},
		{name: "valid mesh config", yaml: `
# valid mesh config
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    rootNamespace: istio-system
    trustDomain: example.org
    connectTimeout: 5s
    defaultHttpRetryPolicy: {attempts: 2, retryOn: "connect-failure,refused-stream"}
    extensionProviders:
    - {name: otel, opentelemetry: {service: otel.observability.svc.cluster.local, port: 4317}}
`,
		},
	})
}
