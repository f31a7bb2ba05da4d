package config

import (
	"strings"
	"testing"
)

// one parses data, which must hold exactly one valid object.
func one(t *testing.T, data string) *Object {
	t.Helper()
	f := ParseFile("x.yaml", []byte(data))
	if len(f.Errors) > 0 || len(f.Objects) != 1 {
		t.Fatalf("want one valid object, got %d, errors %v", len(f.Objects), f.Errors)
	}
	return f.Objects[0]
}

func TestSameContent(t *testing.T) {
	const sa = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  labels: {app: web}
`
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: 100
`
	const deploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: web
        command: [web]
        resources: {limits: {cpu: "1"}}
`
	for _, c := range []struct {
		name string
		a, b string
		want bool
	}{
		{"the same text", sa, sa, true},
		{"formatting, key order, comments and the default namespace", sa, `# the web app's account
kind: ServiceAccount
apiVersion: v1
metadata: {labels: {"app": "web"}, namespace: default, name: web}
`, true},
		{"server-set metadata", sa, sa + "  uid: 0d6f4c3a-1b1e-4a43-9f57-d2d3f1a5e1c2\n  resourceVersion: \"42\"\n", true},
		{"another label value", sa, `apiVersion: v1
kind: ServiceAccount
metadata: {name: web, labels: {app: web2}}
`, false},
		{"an annotation more", sa, sa + "  annotations: {team: a}\n", false},
		{"other content", sa, sa + "automountServiceAccountToken: false\n", false},
		{"another namespace is another object", sa, `apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop, labels: {app: web}}
`, false},
		{"Istio: another API version, same spec", vs, `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  http:
  - route:
    - weight: 100
      destination: {host: reviews}
  hosts: [reviews]
`, true},
		{"Istio: another weight", vs, strings.Replace(vs, "weight: 100", "weight: 50", 1) + "    - destination: {host: ratings}\n      weight: 50\n", false},
		{"quantities compare by value", deploy, strings.Replace(deploy, `cpu: "1"`, `cpu: "1000m"`, 1), true},
		{"quantities that differ", deploy, strings.Replace(deploy, `cpu: "1"`, `cpu: "2"`, 1), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := one(t, c.a), one(t, c.b)
			if got := SameContent(a, b); got != c.want {
				t.Errorf("SameContent = %v, want %v", got, c.want)
			}
			if got := SameContent(b, a); got != c.want {
				t.Errorf("SameContent reversed = %v, want %v", got, c.want)
			}
		})
	}
}
