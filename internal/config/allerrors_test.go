package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config/field"
)

// A value the schema walk rejects no longer hides the object's other
// errors: it is treated as unset, the rest is decoded and validated, and
// every error comes in one pass, in the object's order, with no echo of
// the ones already reported. The object stays rejected.
func TestEveryErrorOfAnObject(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
	}{{
		name: "a bad duration and a bad weight",
		data: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - retries: {attempts: 3, perTryTimeout: 2 seconds}
    route:
    - destination: {host: reviews, subset: v1}
      weight: -1
    - destination: {host: reviews, subset: v2}
      weight: 101
`,
		want: []string{
			`x.yaml#1 VirtualService default/reviews: spec.http[0].retries.perTryTimeout: invalid duration "2 seconds": use a number with a unit, such as "500ms" or "2s"`,
			`x.yaml#1 VirtualService default/reviews: spec.http[0].route[0].weight: must be >= 0`,
		},
	}, {
		// The misspelt destination is not also "required"; a bad list
		// element keeps the others' indexes.
		name: "a misspelt field and bad list elements",
		data: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews, 5, "Bad_Host!"]
  http:
  - route:
    - destinaton: {host: reviews}
`,
		want: []string{
			`x.yaml#1 VirtualService default/reviews: spec.hosts[1]: must be a string, not a number`,
			`x.yaml#1 VirtualService default/reviews: spec.hosts[2]: invalid host "Bad_Host!": "Bad_Host!" is not a valid DNS label (lowercase letters, digits and '-', at most 63)`,
			`x.yaml#1 VirtualService default/reviews: spec.http[0].route[0].destinaton: unknown field (did you mean "destination"?)`,
		},
	}, {
		// A removed weight would leave every weight 0: that is no error
		// of the user's.
		name: "a bad weight is not also all weights zero",
		data: `apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: s}
spec:
  service: reviews
  backends:
  - service: a
    weight: lots
  - service: Bad_Name
    weight: 0
`,
		want: []string{
			`x.yaml#1 TrafficSplit default/s: spec.backends[0].weight: must be an integer, not a string`,
			`x.yaml#1 TrafficSplit default/s: spec.backends[1].service: "Bad_Name" is not a valid Service name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
		},
	}, {
		name: "Kubernetes kind: wrong types beside a bad name",
		data: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: 5}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: Web_1
        image: web
        ports: [{containerPort: http}, {containerPort: 99999}]
`,
		want: []string{
			`x.yaml#1 Deployment default/web: metadata.labels[app]: must be a string, not a number`,
			`x.yaml#1 Deployment default/web: spec.template.spec.containers[0].name: "Web_1" is not a valid container name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			`x.yaml#1 Deployment default/web: spec.template.spec.containers[0].ports[0].containerPort: must be an integer, not a string`,
			`x.yaml#1 Deployment default/web: spec.template.spec.containers[0].ports[1].containerPort: must be between 1 and 65535`,
		},
	}, {
		// Unknown top-level fields and a spec of the wrong type go; the
		// rest is still checked.
		name: "spec of the wrong type beside a bad name",
		data: "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: My_Sidecar}\nspec: [egress]\n",
		want: []string{
			`x.yaml#1 Sidecar default/My_Sidecar: metadata.name: "My_Sidecar" is not a valid name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			`x.yaml#1 Sidecar default/My_Sidecar: spec: must be an object, not a list`,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseErrs(t, "x.yaml", tc.data)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// Removing a rejected value never changes what a valid object decodes to,
// and a second object in the file is unaffected by the first's errors.
func TestSchemaErrorsLeaveOtherObjectsAlone(t *testing.T) {
	data := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad}
spec:
  hosts: [bad]
  http:
  - timeout: soon
    route: [{destination: {host: bad}, weight: -5}]
---
` + vsReviews
	objs, errs, _ := parse(t, "x.yaml", data)
	if diff := cmp.Diff([]string{"x.yaml#2 VirtualService default/reviews"}, objs); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	want := []string{
		`x.yaml#1 VirtualService default/bad: spec.http[0].route[0].weight: must be >= 0`,
		`x.yaml#1 VirtualService default/bad: spec.http[0].timeout: invalid duration "soon": use a number with a unit, such as "500ms" or "2s"`,
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestNotCoveredAncestors(t *testing.T) {
	schema := fieldList("spec.http[0].retries.perTryTimeout")
	verrs := fieldList(
		"spec.http[0].retries", // exact ancestor: dropped
		"spec.http[0]",         // exact ancestor: dropped
		"spec.http",            // the enclosing list: dropped
		"spec",                 // top level: kept
		"spec.http[0].route[0].weight",
		"spec.http[1]",
		"spec.http[0].retries.perTryTimeout", // the reported path: dropped
	)
	var got []string
	for _, e := range notCovered(verrs, schema) {
		got = append(got, e.Path)
	}
	want := []string{"spec", "spec.http[0].route[0].weight", "spec.http[1]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}

func fieldList(paths ...string) field.List {
	var l field.List
	for _, p := range paths {
		l = append(l, &field.Error{Path: p, Detail: "bad"})
	}
	return l
}
