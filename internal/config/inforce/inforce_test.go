package inforce

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func doc(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func paths(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Path+" ("+f.Entry.Status.String()+")")
	}
	return out
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		kind Kind
		doc  string
		want []string
	}{
		{"in force fields say nothing", VirtualService,
			`{"metadata":{"name":"r","labels":{"a":"b"}},"spec":{"hosts":["r"],"http":[{"match":[{"headers":{"end-user":{"exact":"x"}}}],"route":[{"destination":{"host":"r"}}],"timeout":"1s"}]}}`,
			nil},
		{"a subtree not in force is reported once, at its top", DestinationRule,
			`{"spec":{"host":"r","trafficPolicy":{"loadBalancer":{"simple":"ROUND_ROBIN"},"proxyProtocol":{"version":"V1"}},"subsets":[{"name":"a","trafficPolicy":{"proxyProtocol":{"version":"V2"}}}]}}`,
			[]string{"spec.subsets[0].trafficPolicy.proxyProtocol (not in force)", "spec.trafficPolicy.proxyProtocol (not in force)"}},
		{"retries are in force", VirtualService,
			`{"spec":{"http":[{"route":[{"destination":{"host":"r"}}]},{"retries":{"attempts":3,"perTryTimeout":"2s","retryOn":"5xx"}}]}}`, nil},
		{"retries turned off are in force", VirtualService,
			`{"spec":{"http":[{"retries":{"attempts":0}}]}}`, nil},
		{"snake_case field names as Istio's decoder takes them", VirtualService,
			`{"spec":{"http":[{"match":[{"stat_prefix":"x"}],"cors_policy":{"allow_origins":[{"exact":"x"}]}}]}}`,
			[]string{"spec.http[0].match[0].stat_prefix (not in force)"}},
		{"a value decides: gateways other than mesh are not in force", VirtualService,
			`{"spec":{"gateways":["mesh","ingress"]}}`,
			[]string{"spec.gateways[1] (not in force)"}},
		{"every mTLS mode is in force", PeerAuthentication,
			`{"spec":{"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"},"9090":{"mode":"PERMISSIVE"}}}}`, nil},
		{"a whole kind not in force, even with no spec", IstioGateway,
			`{"metadata":{"name":"ingress"}}`,
			[]string{" (not in force)"}},
		{"AuthorizationPolicy: enforced fields are not reported, experimental.envoy.filters.* is", AuthorizationPolicy,
			`{"spec":{"action":"CUSTOM","provider":{"name":"opa"},"rules":[{"from":[{"source":{"principals":["a/ns/b/sa/c"],"requestPrincipals":["*"],"trustDomains":["td"]}}],"to":[{"operation":{"paths":["/x"]}}],"when":[{"key":"request.auth.claims[iss]","values":["x"]},{"key":"source.ip","values":["10.0.0.1"]},{"key":"connection.sni","values":["a"]},{"key":"experimental.envoy.filters.network.mysql_proxy[db.table]","values":["a"]}]}]}}`,
			[]string{"spec.rules[0].when[3].key (not in force)"}},
		{"TLS modes and files are in force, Kubernetes secrets are not", DestinationRule,
			`{"spec":{"host":"r","trafficPolicy":{"tls":{"mode":"DISABLE"}},"subsets":[{"name":"v1","trafficPolicy":{"tls":{"mode":"SIMPLE","sni":"x","caCertificates":"/ca.pem","credentialName":"creds"},"outlierDetection":{"consecutive5xxErrors":1,"consecutiveErrors":1}}}]}}`,
			[]string{"spec.subsets[0].trafficPolicy.outlierDetection.consecutiveErrors (not in force)", "spec.subsets[0].trafficPolicy.tls.credentialName (not in force)"}},
		{"gateway parents are not in force, Service parents are", HTTPRoute,
			`{"spec":{"parentRefs":[{"name":"gw"},{"kind":"Service","name":"s","port":80}],"rules":[{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"m"}}}]}]}}`,
			[]string{"spec.parentRefs[0] (not in force)"}},
		{"pod runtime fields are the platform's and not reported", Deployment,
			`{"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"a","image":"x","command":["a"],"resources":{"limits":{"cpu":"1"}}}]}}},"status":{"replicas":1}}`,
			nil},
		{"MeshConfig fields not read are named", MeshConfig,
			`{"rootNamespace":"istio-system","enableTracing":true,"defaultConfig":{"concurrency":2,"proxyStatsMatcher":{"inclusionPrefixes":["a"]}}}`,
			[]string{"defaultConfig.proxyStatsMatcher (not in force)", "enableTracing (not in force)"}},
		{"authorization providers (with bodies) are in force, a tracing provider is not", MeshConfig,
			`{"extensionProviders":[{"name":"a","envoyExtAuthzGrpc":{"service":"x","port":9000,"includeRequestBodyInCheck":{"maxRequestBytes":8,"allowPartialMessage":true,"packAsBytes":true}}},{"name":"b","envoyExtAuthzHttp":{"service":"x","port":80,"includeRequestBodyInCheck":{"maxRequestBytes":8}}},{"name":"z","zipkin":{"service":"x","port":9411}}]}`,
			[]string{"extensionProviders[2].zipkin (not in force)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := paths(Check(tc.kind, doc(t, tc.doc), ""))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFindingText(t *testing.T) {
	fs := Check(DestinationRule, doc(t, `{"spec":{"trafficPolicy":{"proxyProtocol":{"version":"V1"}}}}`), "")
	if len(fs) != 1 {
		t.Fatalf("got %d findings, want 1", len(fs))
	}
	if got, want := fs[0].String(), "spec.trafficPolicy.proxyProtocol: PROXY protocol is not in force yet: no PROXY header is sent upstream"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if fs[0].Security() {
		t.Error("PROXY protocol is not a security policy")
	}
	ap := Check(AuthorizationPolicy, doc(t, `{"spec":{"targetRefs":[{"kind":"Gateway","name":"gw"}]}}`), "")
	if len(ap) != 1 || !ap[0].Security() {
		t.Errorf("an AuthorizationPolicy attached to a gateway must be a security finding, got %v", paths(ap))
	}
}

// Every reported row says what happens instead; a row without a note
// would print a bare path.
func TestReportedRowsHaveNotes(t *testing.T) {
	for _, e := range table {
		if e.Status.reported() && e.Note == "" {
			t.Errorf("%s %s: %s with no note", e.Kind, e.Path, e.Status)
		}
	}
}

func TestMeshConfigPrefix(t *testing.T) {
	fs := Check(MeshConfig, doc(t, `{"enableTracing":true}`), "data[mesh]")
	if len(fs) != 1 || fs[0].Path != "data[mesh].enableTracing" {
		t.Errorf("got %v", paths(fs))
	}
}

// Istio's annotations that Trellis does not read are named; others (and
// the ones it reads) are not.
func TestAnnotations(t *testing.T) {
	got := paths(Check(Deployment, doc(t, `{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}","sidecar.istio.io/inject":"true"}},
		"spec":{"template":{"metadata":{"annotations":{"proxy.istio.io/config":"{}","traffic.sidecar.istio.io/excludeOutboundPorts":"5432","sidecar.istio.io/inject":"false","sidecar.istio.io/rewriteAppHTTPProbers":"false","example.com/x":"y"}}}}}`), ""))
	want := []string{"spec.template.metadata.annotations[proxy.istio.io/config] (not in force)", "spec.template.metadata.annotations[traffic.sidecar.istio.io/excludeOutboundPorts] (not in force)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
}
