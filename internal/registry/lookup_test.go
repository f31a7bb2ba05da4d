package registry

import "testing"

const lookupWorld = `
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: other}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: other}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com, "*.example.com", "*.eu.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
`

func TestLookup(t *testing.T) {
	r := build(t, lookupWorld)
	tests := []struct {
		host, ns string
		want     string // Hostname; "" for nil
		fqdn     string
	}{
		{"reviews", "default", "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local"},
		{"reviews", "other", "reviews.other.svc.cluster.local", "reviews.other.svc.cluster.local"},
		{"reviews.other", "default", "reviews.other.svc.cluster.local", "reviews.other.svc.cluster.local"},
		{"reviews.other.svc", "default", "reviews.other.svc.cluster.local", "reviews.other.svc.cluster.local"},
		{"reviews.other.svc.cluster.local", "default", "reviews.other.svc.cluster.local", "reviews.other.svc.cluster.local"},
		{"reviews.other.svc.cluster.local.", "default", "reviews.other.svc.cluster.local", "reviews.other.svc.cluster.local"},
		{"Reviews.Other", "default", "reviews.other.svc.cluster.local", "reviews.other.svc.cluster.local"},
		// Short names only resolve in the client's namespace.
		{"ratings", "default", "", "ratings.default.svc.cluster.local"},
		{"ratings", "other", "ratings.other.svc.cluster.local", "ratings.other.svc.cluster.local"},
		{"ratings.default", "default", "", "ratings.default"},
		{"ratings.default.svc", "default", "", "ratings.default.svc.cluster.local"},
		// ServiceEntry hosts: exact first, then the most specific wildcard.
		{"api.example.com", "other", "api.example.com", "api.example.com"},
		{"web.example.com", "other", "*.example.com", "web.example.com"},
		{"a.b.example.com", "other", "*.example.com", "a.b.example.com"},
		{"web.eu.example.com", "other", "*.eu.example.com", "web.eu.example.com"},
		{"*.example.com", "other", "*.example.com", "*.example.com"},
		{"example.com", "other", "", "example.com"},
		{"example.org", "other", "", "example.org"},
		{"", "other", "", ""},
	}
	for _, tt := range tests {
		got := r.Lookup(tt.host, tt.ns)
		gotHost := ""
		if got != nil {
			gotHost = got.Hostname
		}
		if gotHost != tt.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", tt.host, tt.ns, gotHost, tt.want)
		}
		if got := r.FQDN(tt.host, tt.ns); got != tt.fqdn {
			t.Errorf("FQDN(%q, %q) = %q, want %q", tt.host, tt.ns, got, tt.fqdn)
		}
	}
}

func TestDomainSuffix(t *testing.T) {
	r := Build(parse(t, lookupWorld), "mesh.internal")
	s := mustLookup(t, r, "reviews.other", "default")
	if s.Hostname != "reviews.other.svc.mesh.internal" {
		t.Errorf("Hostname = %q", s.Hostname)
	}
	if got := r.FQDN("x", "ns"); got != "x.ns.svc.mesh.internal" {
		t.Errorf("FQDN = %q", got)
	}
}
