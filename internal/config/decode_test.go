package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/api/split"
	"github.com/trellismesh/trellis/internal/config/field"
)

// Fixtures are complete, valid objects, so that they stay valid as the
// per-kind validators grow stricter.
const (
	svcReviews = `apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
`
	vsReviews = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
`
	nsShop = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
`
)

// parse returns what ParseFile found, as strings: object ids with their
// source, errors and warnings.
func parse(t *testing.T, name, data string) (objs, errs, warns []string) {
	t.Helper()
	f := ParseFile(name, []byte(data))
	if f.Path != name {
		t.Errorf("File.Path = %q, want %q", f.Path, name)
	}
	for _, o := range f.Objects {
		objs = append(objs, o.Source.String()+" "+o.ID())
	}
	for _, e := range f.Errors {
		errs = append(errs, e.Error())
	}
	for _, w := range f.Warnings {
		warns = append(warns, w.Error())
	}
	return objs, errs, warns
}

// parseErrs is parse for documents expected to yield only errors.
func parseErrs(t *testing.T, name, data string) []string {
	t.Helper()
	objs, errs, warns := parse(t, name, data)
	if len(objs) > 0 || len(warns) > 0 {
		t.Errorf("unexpected objects %q / warnings %q", objs, warns)
	}
	return errs
}

func TestMultiDocumentNumbering(t *testing.T) {
	bad := "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  selectr: {}\n  ports: [{port: 80}]\n"
	for _, tc := range []struct {
		name, data string
		objs, errs []string
	}{{
		name: "plain stream",
		data: svcReviews + "---\n" + bad + "---\n" + vsReviews,
		objs: []string{"m.yaml#1 Service default/reviews", "m.yaml#3 VirtualService default/reviews"},
		errs: []string{`m.yaml#2 Service default/bad: spec.selectr: unknown field (did you mean "selector"?)`},
	}, {
		name: "leading separator is not a document",
		data: "---\n" + bad + "---\n" + svcReviews,
		objs: []string{"m.yaml#2 Service default/reviews"},
		errs: []string{`m.yaml#1 Service default/bad: spec.selectr: unknown field (did you mean "selector"?)`},
	}, {
		name: "comment header then leading separator",
		data: "# my mesh\n---\n" + bad,
		errs: []string{`m.yaml#1 Service default/bad: spec.selectr: unknown field (did you mean "selector"?)`},
	}, {
		name: "empty documents still count",
		data: svcReviews + "---\n---\n# only a comment\n---\n" + bad + "---\n",
		objs: []string{"m.yaml#1 Service default/reviews"},
		errs: []string{`m.yaml#4 Service default/bad: spec.selectr: unknown field (did you mean "selector"?)`},
	}, {
		name: "separators with comments, CRLF and trailing spaces",
		data: strings.ReplaceAll(svcReviews+"--- # next\n"+nsShop+"---  \n"+bad, "\n", "\r\n"),
		objs: []string{"m.yaml#1 Service default/reviews", "m.yaml#2 Namespace shop"},
		errs: []string{`m.yaml#3 Service default/bad: spec.selectr: unknown field (did you mean "selector"?)`},
	}, {
		name: "document starting on its separator line",
		data: svcReviews + "--- {apiVersion: v1, kind: Namespace, metadata: {name: shop}}\n",
		objs: []string{"m.yaml#1 Service default/reviews", "m.yaml#2 Namespace shop"},
	}, {
		name: "indented --- inside a block scalar is content",
		data: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  text: |\n    a\n    ---\n    b\n",
		objs: []string{"m.yaml#1 ConfigMap default/notes"},
	}, {
		name: "null and scalar documents",
		data: "~\n---\nhello\n---\n- a\n",
		errs: []string{
			"m.yaml#2: a document must be an object with apiVersion and kind, not a string",
			"m.yaml#3: a document must be an object with apiVersion and kind, not a list",
		},
	}, {
		name: "YAML syntax error does not stop later documents",
		data: "apiVersion: v1\nkind: Service\nmetadata: name: x\n---\n" + svcReviews,
		objs: []string{"m.yaml#2 Service default/reviews"},
		errs: []string{"m.yaml#1: invalid YAML: yaml: line 3: mapping values are not allowed in this context"},
	}, {
		name: "YAML errors give file lines, not document lines",
		data: svcReviews + "---\n" + nsShop + "---\n# comment\napiVersion: v1\nkind: Namespace\nmetadata: name: x\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n",
		objs: []string{"m.yaml#1 Service default/reviews", "m.yaml#2 Namespace shop"},
		errs: []string{
			"m.yaml#3: invalid YAML: yaml: line 20: mapping values are not allowed in this context",
			"m.yaml#4: invalid YAML: yaml: unmarshal errors:\n  line 26: key \"name\" already set in map",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs, errs, warns := parse(t, "m.yaml", tc.data)
			if diff := cmp.Diff(tc.objs, objs); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.errs, errs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if len(warns) > 0 {
				t.Errorf("warnings: %q", warns)
			}
		})
	}
}

func TestEveryErrorIsReported(t *testing.T) {
	// Two bad documents, several problems each: all are reported, in
	// document then path order, each as a *Error naming its source.
	data := `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  htp: []
  http:
  - route:
    - destinaton:
        host: reviews
      weight: ten
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
  namespace: shop
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBN
    outlierDetection:
      interval: 5x
`
	f := ParseFile("reviews.yaml", []byte(data))
	var got []string
	for _, err := range f.Errors {
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("%v is %T, want *config.Error", err, err)
		}
		if ce.Source.File != "reviews.yaml" || ce.Source.Doc == 0 {
			t.Errorf("%v: source %+v does not locate the document", err, ce.Source)
		}
		got = append(got, err.Error())
	}
	want := []string{
		`reviews.yaml#1 VirtualService default/reviews: spec.htp: unknown field (did you mean "http"?)`,
		`reviews.yaml#1 VirtualService default/reviews: spec.http[0].route[0].destinaton: unknown field (did you mean "destination"?)`,
		`reviews.yaml#1 VirtualService default/reviews: spec.http[0].route[0].weight: must be an integer, not "ten"`,
		`reviews.yaml#2 DestinationRule shop/reviews: spec.trafficPolicy.loadBalancer.simple: unknown value "ROUND_ROBN": must be one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST`,
		`reviews.yaml#2 DestinationRule shop/reviews: spec.trafficPolicy.outlierDetection.interval: invalid duration "5x": use a number with a unit, such as "500ms" or "2s"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if len(f.Objects) != 0 {
		t.Errorf("invalid documents must not yield objects, got %d", len(f.Objects))
	}
}

func TestJSON(t *testing.T) {
	single := `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}`
	stream := `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b", "labelz": {}}}
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}`
	for _, tc := range []struct {
		name, file, data string
		objs, errs       []string
	}{{
		name: "single object",
		file: "ns.json", data: single,
		objs: []string{"ns.json#1 Namespace shop"},
	}, {
		name: "stream numbers documents",
		file: "ns.json", data: stream,
		objs: []string{"ns.json#1 Namespace a", "ns.json#3 Namespace c"},
		errs: []string{`ns.json#2 Namespace b: metadata.labelz: unknown field (did you mean "labels"?)`},
	}, {
		name: "extension is case-insensitive",
		file: "NS.JSON", data: single + single,
		objs: []string{"NS.JSON#1 Namespace shop", "NS.JSON#2 Namespace shop"},
	}, {
		name: "syntax error keeps earlier documents and says where",
		file: "ns.json", data: single + "\n\n{\"apiVersion\": }",
		objs: []string{"ns.json#1 Namespace shop"},
		errs: []string{"ns.json#2: invalid JSON at line 3: invalid character '}' looking for beginning of value"},
	}, {
		name: "duplicate keys are rejected",
		file: "ns.json", data: `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "name": "b"}}`,
		errs: []string{"ns.json#1: invalid YAML: yaml: unmarshal errors:\n  line 1: key \"name\" already set in map"},
	}, {
		name: "empty file",
		file: "ns.json", data: "  \n",
	}, {
		name: "top-level array is not a document",
		file: "ns.json", data: "[" + single + "]",
		errs: []string{"ns.json#1: a document must be an object with apiVersion and kind, not a list"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs, errs, _ := parse(t, tc.file, tc.data)
			if diff := cmp.Diff(tc.objs, objs); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.errs, errs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestList(t *testing.T) {
	data := `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: shop
- apiVersion: v1
  kind: Service
  metadata:
    name: reviews
  spec:
    selector: {app: reviews}
    ports:
    - port: 9080
      protocl: TCP
- apiVersion: networking.istio.io/v1alpha3
  kind: EnvoyFilter
  metadata:
    name: lua
---
apiVersion: v1
kind: List
items: 5
`
	objs, errs, warns := parse(t, "list.yaml", data)
	if diff := cmp.Diff([]string{"list.yaml#1.items[0] Namespace shop"}, objs); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	wantErrs := []string{
		`list.yaml#1.items[1] Service default/reviews: spec.ports[0].protocl: unknown field (did you mean "protocol"?)`,
		`list.yaml#2 List: items: must be a list of objects, not a number`,
	}
	if diff := cmp.Diff(wantErrs, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	wantWarns := []string{"list.yaml#1.items[2] EnvoyFilter default/lua: EnvoyFilter is not supported and is ignored: Trellis proxies are not Envoy; EnvoyFilter patches cannot apply"}
	if diff := cmp.Diff(wantWarns, warns); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

// TestStrictErrors pins the exact message for each kind of mistake users
// make; these strings are the product's UX.
func TestStrictErrors(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
	}{{
		name: "unknown top-level field on an Istio kind",
		data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspce: {}\n",
		want: []string{`x.yaml#1 VirtualService default/r: spce: unknown field (did you mean "spec"?)`},
	}, {
		name: "unknown top-level field on a Kubernetes kind",
		data: "apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspecs: {}\n",
		want: []string{`x.yaml#1 Service default/r: specs: unknown field (did you mean "spec"?)`},
	}, {
		name: "unknown metadata field",
		data: "apiVersion: v1\nkind: Namespace\nmetadata: {name: r, lables: {a: b}}\n",
		want: []string{`x.yaml#1 Namespace r: metadata.lables: unknown field (did you mean "labels"?)`},
	}, {
		name: "unknown field with nothing close",
		data: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  zzzzzzzz: 1\n",
		want: []string{`x.yaml#1 DestinationRule default/r: spec.zzzzzzzz: unknown field`},
	}, {
		name: "unknown field deep in a Deployment",
		data: `apiVersion: apps/v1
kind: Deployment
metadata: {name: r}
spec:
  selector: {matchLabels: {app: r}}
  template:
    metadata: {labels: {app: r}}
    spec:
      containers:
      - name: r
        image: r
        ports:
        - containerPort: 80
          protcol: TCP
`,
		want: []string{`x.yaml#1 Deployment default/r: spec.template.spec.containers[0].ports[0].protcol: unknown field (did you mean "protocol"?)`},
	}, {
		name: "unknown field inside a map value",
		data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - match:\n    - headers:\n        user: {exect: x}\n    route: [{destination: {host: r}}]\n",
		want: []string{`x.yaml#1 VirtualService default/r: spec.http[0].match[0].headers[user].exect: unknown field (did you mean "exact"?)`},
	}, {
		name: "snake_case proto names are accepted",
		data: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  traffic_policy:\n    load_balancer: {simple: RANDOM}\n  subsets:\n  - name: v1\n    labelz: {}\n",
		want: []string{`x.yaml#1 DestinationRule default/r: spec.subsets[0].labelz: unknown field (did you mean "labels"?)`},
	}, {
		name: "wrong types",
		data: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: r
  http:
  - route:
    - destination:
        host: 5
        port: {number: "eighty"}
    retries: {attempts: 1.5}
    mirrorPercentage: {value: high}
  exportTo: [true]
`,
		want: []string{
			`x.yaml#1 VirtualService default/r: spec.exportTo[0]: must be a string, not a boolean`,
			`x.yaml#1 VirtualService default/r: spec.hosts: must be a list, not a string`,
			`x.yaml#1 VirtualService default/r: spec.http[0].mirrorPercentage.value: must be a number, not a string`,
			`x.yaml#1 VirtualService default/r: spec.http[0].retries.attempts: must be an integer, not "1.5"`,
			`x.yaml#1 VirtualService default/r: spec.http[0].route[0].destination.host: must be a string, not a number`,
			`x.yaml#1 VirtualService default/r: spec.http[0].route[0].destination.port.number: must be an integer, not "eighty"`,
		},
	}, {
		name: "wrong types in a Kubernetes kind",
		data: "apiVersion: v1\nkind: Service\nmetadata: {name: r, labels: [a]}\nspec:\n  ports:\n  - port: http\n    targetPort: [1]\n  publishNotReadyAddresses: yes-please\n",
		want: []string{
			`x.yaml#1 Service default/r: metadata.labels: must be a map, not a list`,
			`x.yaml#1 Service default/r: spec.ports[0].port: must be an integer, not a string`,
			`x.yaml#1 Service default/r: spec.ports[0].targetPort: invalid value [1]: cannot unmarshal array into Go value of type int32`,
			`x.yaml#1 Service default/r: spec.publishNotReadyAddresses: must be true or false, not a string`,
		},
	}, {
		name: "integer out of range",
		data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, port: {number: -1}}\n      weight: 3000000000\n",
		want: []string{
			`x.yaml#1 VirtualService default/r: spec.http[0].route[0].destination.port.number: must be >= 0`,
			`x.yaml#1 VirtualService default/r: spec.http[0].route[0].weight: must be <= 2147483647`,
		},
	}, {
		name: "enum value",
		data: "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBN}\n",
		want: []string{`x.yaml#1 DestinationRule default/r: spec.trafficPolicy.loadBalancer.simple: unknown value "ROUND_ROBN": must be one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST`},
	}, {
		name: "enum value in security kind",
		data: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  mtls: {mode: STRIKT}\n",
		want: []string{`x.yaml#1 PeerAuthentication default/default: spec.mtls.mode: unknown value "STRIKT": must be one of UNSET, DISABLE, PERMISSIVE, STRICT`},
	}, {
		name: "oneof set twice",
		data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n    route: [{destination: {host: r}}]\n",
		want: []string{`x.yaml#1 VirtualService default/r: spec.http[0].match[0].uri.prefix: only one of exact and prefix may be set`},
	}, {
		name: "durations",
		data: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - timeout: 5x
  - timeout: -1s
  - timeout: 2
  - retries: {attempts: 2, perTryTimeout: 1d}
`,
		want: []string{
			`x.yaml#1 VirtualService default/r: spec.http[0].timeout: invalid duration "5x": use a number with a unit, such as "500ms" or "2s"`,
			`x.yaml#1 VirtualService default/r: spec.http[1].timeout: duration "-1s" must not be negative`,
			`x.yaml#1 VirtualService default/r: spec.http[2].timeout: must be a duration string such as "500ms" or "2s", not a number`,
			`x.yaml#1 VirtualService default/r: spec.http[3].retries.perTryTimeout: invalid duration "1d": use a number with a unit, such as "500ms" or "2s"`,
		},
	}, {
		name: "duplicate YAML keys",
		data: "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n",
		want: []string{"x.yaml#1: invalid YAML: yaml: unmarshal errors:\n  line 5: key \"name\" already set in map"},
	}, {
		name: "duplicate keys deep in spec",
		data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [a]\n  hosts: [b]\n",
		want: []string{"x.yaml#1: invalid YAML: yaml: unmarshal errors:\n  line 6: key \"hosts\" already set in map"},
	}, {
		name: "missing apiVersion",
		data: "kind: Service\nmetadata: {name: r}\n",
		want: []string{"x.yaml#1: apiVersion and kind are required"},
	}, {
		name: "missing kind",
		data: "apiVersion: v1\nmetadata: {name: r}\n",
		want: []string{"x.yaml#1: apiVersion and kind are required"},
	}, {
		name: "unknown kind",
		data: "apiVersion: networking.istio.io/v1\nkind: VirtualServise\nmetadata: {name: r}\n",
		want: []string{`x.yaml#1 VirtualServise default/r: unknown kind "VirtualServise" in apiVersion "networking.istio.io/v1": Trellis reads Kubernetes core, Istio, SMI TrafficSplit and Gateway API kinds (see docs/config.md)`},
	}, {
		name: "kind in the wrong group",
		data: "apiVersion: apps/v1\nkind: Service\nmetadata: {name: r}\n",
		want: []string{`x.yaml#1 Service default/r: unknown kind "Service" in apiVersion "apps/v1": Trellis reads Kubernetes core, Istio, SMI TrafficSplit and Gateway API kinds (see docs/config.md)`},
	}, {
		name: "apiVersion not served, Istio",
		data: "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: r}\n",
		want: []string{`x.yaml#1 VirtualService default/r: apiVersion "networking.istio.io/v2" is not served for VirtualService: use networking.istio.io/v1alpha3, networking.istio.io/v1beta1 or networking.istio.io/v1`},
	}, {
		name: "apiVersion not served, core",
		data: "apiVersion: v2\nkind: Service\nmetadata: {name: r}\n",
		want: []string{`x.yaml#1 Service default/r: apiVersion "v2" is not served for Service: use v1`},
	}, {
		name: "apiVersion not served, security",
		data: "apiVersion: security.istio.io/v1alpha3\nkind: PeerAuthentication\nmetadata: {name: r}\n",
		want: []string{`x.yaml#1 PeerAuthentication default/r: apiVersion "security.istio.io/v1alpha3" is not served for PeerAuthentication: use security.istio.io/v1beta1 or security.istio.io/v1`},
	}, {
		name: "missing name",
		data: "apiVersion: v1\nkind: Service\nmetadata: {namespace: shop}\nspec: {ports: [{port: 80}]}\n",
		want: []string{`x.yaml#1 Service shop/: metadata.name: required`},
	}, {
		name: "missing metadata",
		data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}]}]}\n",
		want: []string{`x.yaml#1 VirtualService default/: metadata.name: required`},
	}, {
		name: "generateName is not supported",
		data: "apiVersion: v1\nkind: Service\nmetadata: {generateName: r-}\nspec: {ports: [{port: 80}]}\n",
		want: []string{`x.yaml#1 Service default/: metadata.generateName: not supported: set metadata.name`},
	}, {
		name: "bad name",
		data: "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: My_SA}\n",
		want: []string{`x.yaml#1 ServiceAccount default/My_SA: metadata.name: "My_SA" is not a valid name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	}, {
		name: "bad namespace",
		data: "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: Shop.Front}\n",
		want: []string{`x.yaml#1 ServiceAccount Shop.Front/sa: metadata.namespace: "Shop.Front" is not a valid namespace: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
	}, {
		name: "cluster-scoped kind with a namespace",
		data: "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: default}\n",
		want: []string{`x.yaml#1 Namespace shop: metadata.namespace: Namespace is cluster-scoped and takes no namespace`},
	}, {
		name: "metadata of the wrong type",
		data: "apiVersion: v1\nkind: ServiceAccount\nmetadata: sa\n",
		want: []string{
			`x.yaml#1 ServiceAccount default/: metadata: must be an object, not a string`,
			`x.yaml#1 ServiceAccount default/: metadata.name: required`,
		},
	}, {
		name: "spec of the wrong type",
		data: "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: r}\nspec: [egress]\n",
		want: []string{`x.yaml#1 Sidecar default/r: spec: must be an object, not a list`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseErrs(t, "x.yaml", tc.data)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidDurations(t *testing.T) {
	data := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - timeout: 500ms
    retries: {attempts: 3, perTryTimeout: 1m30s}
    route:
    - destination: {host: r}
  - timeout: 0.5s
    route:
    - destination: {host: r}
`
	f := ParseFile("d.yaml", []byte(data))
	if len(f.Errors) > 0 || len(f.Objects) != 1 {
		t.Fatalf("errors %v, %d objects", f.Errors, len(f.Objects))
	}
	vs := f.Objects[0].Spec.(*networking.VirtualService)
	got := []time.Duration{vs.Http[0].Timeout.AsDuration(), vs.Http[0].Retries.PerTryTimeout.AsDuration(), vs.Http[1].Timeout.AsDuration()}
	want := []time.Duration{500 * time.Millisecond, 90 * time.Second, 500 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("durations (-want +got):\n%s", diff)
	}
}

func TestUnsupportedKindsWarn(t *testing.T) {
	data := `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: lua
  namespace: istio-system
spec:
  configPatches: []
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: auth
---
` + nsShop
	objs, errs, warns := parse(t, "w.yaml", data)
	if diff := cmp.Diff([]string{"w.yaml#3 Namespace shop"}, objs); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if len(errs) > 0 {
		t.Errorf("errors: %q", errs)
	}
	want := []string{
		"w.yaml#1 EnvoyFilter istio-system/lua: EnvoyFilter is not supported and is ignored: Trellis proxies are not Envoy; EnvoyFilter patches cannot apply",
		"w.yaml#2 WasmPlugin default/auth: WasmPlugin is not supported and is ignored: Trellis proxies do not run Wasm",
	}
	if diff := cmp.Diff(want, warns); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestObjectFields(t *testing.T) {
	data := `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
  labels: {team: books}
  annotations: {note: hi}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
`
	f := ParseFile("o.yaml", []byte(data))
	if len(f.Errors) > 0 {
		t.Fatal(f.Errors)
	}
	type obj struct {
		Source              Source
		APIVersion          string
		GroupKind           GroupKind
		Namespace, Name     string
		Labels, Annotations map[string]string
	}
	var got []obj
	for _, o := range f.Objects {
		got = append(got, obj{o.Source, o.APIVersion, o.GroupKind, o.Namespace, o.Name, o.Labels, o.Annotations})
	}
	want := []obj{
		{Source{File: "o.yaml", Doc: 1}, "networking.istio.io/v1alpha3", VirtualService, "default", "reviews", map[string]string{"team": "books"}, map[string]string{"note": "hi"}},
		{Source{File: "o.yaml", Doc: 2}, "v1", Namespace, "", "shop", nil, nil},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if _, ok := f.Objects[0].Spec.(*networking.VirtualService); !ok {
		t.Errorf("VirtualService spec is %T", f.Objects[0].Spec)
	}
	if got, want := f.Objects[0].Key().String(), "VirtualService default/reviews"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
}

func TestMeshConfig(t *testing.T) {
	cm := func(mesh string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n" + indent(mesh, "    ")
	}
	t.Run("valid", func(t *testing.T) {
		objs, errs, _ := parse(t, "mesh.yaml", cm("trustDomain: example.org\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n"))
		if len(errs) > 0 || len(objs) != 1 {
			t.Fatalf("objects %q, errors %q", objs, errs)
		}
	})
	t.Run("strict", func(t *testing.T) {
		got := parseErrs(t, "mesh.yaml", cm("foo: 1\ntrustDomain: 5\noutboundTrafficPolicy:\n  mode: ALLOW_NONE\n"))
		want := []string{
			`mesh.yaml#1 ConfigMap istio-system/istio: data[mesh].foo: unknown field`,
			`mesh.yaml#1 ConfigMap istio-system/istio: data[mesh].outboundTrafficPolicy.mode: unknown value "ALLOW_NONE": must be one of REGISTRY_ONLY, ALLOW_ANY, ALLOW_ANY_DYNAMIC_DNS`,
			`mesh.yaml#1 ConfigMap istio-system/istio: data[mesh].trustDomain: must be a string, not a number`,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
	})
	t.Run("invalid YAML", func(t *testing.T) {
		got := parseErrs(t, "mesh.yaml", cm("a: 1\na: 2\n"))
		want := []string{"mesh.yaml#1 ConfigMap istio-system/istio: data[mesh]: invalid YAML: yaml: unmarshal errors:\n  line 2: key \"a\" already set in map"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
	})
	t.Run("other ConfigMaps are not MeshConfig", func(t *testing.T) {
		data := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  mesh: |\n    foo: 1\n"
		if _, errs, _ := parse(t, "cm.yaml", data); len(errs) > 0 {
			t.Errorf("errors: %q", errs)
		}
	})
	t.Run("defaults are kept", func(t *testing.T) {
		mc, errs := ParseMeshConfig(field.NewPath("data").Key("mesh"), "enableAutoMtls: true\n")
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if mc.GetRootNamespace() != "istio-system" || mc.GetTrustDomain() != "cluster.local" || !mc.GetEnableAutoMtls().GetValue() {
			t.Errorf("got root %q, trust domain %q, autoMtls %v", mc.GetRootNamespace(), mc.GetTrustDomain(), mc.GetEnableAutoMtls())
		}
	})
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

func TestTrafficSplitWeights(t *testing.T) {
	for _, tc := range []struct {
		name, version, weights string
		want                   []int64
	}{
		{"v1alpha1 quantities", "v1alpha1", "900m 100m", []int64{900, 100}},
		{"v1alpha1 whole numbers", "v1alpha1", "1 3", []int64{1000, 3000}},
		{"v1alpha2 integers", "v1alpha2", "90 10", []int64{90000, 10000}},
		{"v1alpha4 integers", "v1alpha4", "1 0", []int64{1000, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := strings.Fields(tc.weights)
			data := fmt.Sprintf(`apiVersion: split.smi-spec.io/%s
kind: TrafficSplit
metadata:
  name: reviews-split
spec:
  service: reviews
  backends:
  - service: reviews-v1
    weight: %s
  - service: reviews-v2
    weight: %s
`, tc.version, w[0], w[1])
			f := ParseFile("split.yaml", []byte(data))
			if len(f.Errors) > 0 || len(f.Objects) != 1 {
				t.Fatalf("errors %v, %d objects", f.Errors, len(f.Objects))
			}
			ts := f.Objects[0].Spec.(*split.TrafficSplit)
			want := split.Spec{Service: "reviews", Backends: []split.Backend{{Service: "reviews-v1", WeightMilli: tc.want[0]}, {Service: "reviews-v2", WeightMilli: tc.want[1]}}}
			if diff := cmp.Diff(want, ts.Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		data := `apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: s}
spec:
  service: reviews
  backends:
  - service: a
    weight: lots
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: s}
spec:
  service: reviews
  backends:
  - service: a
    weight: 900m
  matches: []
`
		got := parseErrs(t, "split.yaml", data)
		want := []string{
			`split.yaml#1 TrafficSplit default/s: spec.backends[0].weight: invalid value "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`,
			`split.yaml#2 TrafficSplit default/s: spec.backends[0].weight: must be an integer, not a string`,
			`split.yaml#2 TrafficSplit default/s: spec.matches: unknown field`,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
	})
}
