package registry

import "testing"

func TestServiceEntryStatic(t *testing.T) {
	r := build(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: payments
  namespace: shop
  labels: {team: pay}
spec:
  hosts: [payments.internal, pay.internal]
  addresses: [240.0.0.1]
  location: MESH_INTERNAL
  resolution: STATIC
  exportTo: [".", "billing"]
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  - {number: 443, name: https, protocol: HTTPS}
  endpoints:
  - address: 10.1.0.2
    labels: {version: v2}
    ports: {http: 9000}
    weight: 2
    locality: eu/eu-1
    serviceAccount: payments
  - address: 10.1.0.1
`)
	v2 := map[string]string{"version": "v2"}
	svc := func(host string) *Service {
		return &Service{
			Hostname:   host,
			Name:       "payments",
			Namespace:  "shop",
			Ports:      []Port{{Name: "http", Port: 80, Protocol: HTTP}, {Name: "https", Port: 443, Protocol: HTTPS}},
			Addresses:  []string{"240.0.0.1"},
			Labels:     map[string]string{"team": "pay"},
			ExportTo:   []string{".", "billing"},
			Resolution: ResolutionStatic,
			Instances: map[uint32][]*Instance{
				80: {
					{Address: "10.1.0.1", Port: 8080, Namespace: "shop", Ready: true},
					{Address: "10.1.0.2", Port: 9000, Labels: v2, Namespace: "shop", ServiceAccount: "payments", Weight: 2, Locality: "eu/eu-1", Ready: true},
				},
				443: {
					{Address: "10.1.0.1", Port: 443, Namespace: "shop", Ready: true},
					{Address: "10.1.0.2", Port: 443, Labels: v2, Namespace: "shop", ServiceAccount: "payments", Weight: 2, Locality: "eu/eu-1", Ready: true},
				},
			},
		}
	}
	diff(t, []*Service{svc("pay.internal"), svc("payments.internal")}, r.Services())
}

func TestServiceEntryDNSAndNone(t *testing.T) {
	r := build(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: google, namespace: egress}
spec:
  hosts: [www.google.com]
  resolution: DNS
  ports:
  - {number: 443, name: tls, protocol: TLS}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mirrors, namespace: egress}
spec:
  hosts: [mirror.example.org]
  resolution: DNS
  ports:
  - {number: 80, name: http, protocol: HTTP}
  endpoints:
  - address: eu.mirror.example.org
  - address: us.mirror.example.org
    ports: {http: 8080}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wildcard, namespace: egress}
spec:
  hosts: ["*.wikipedia.org"]
  resolution: NONE
  ports:
  - {number: 443, name: tls, protocol: TLS}
  - {number: 8000, name: other}
`)
	want := []*Service{
		{
			Hostname:     "*.wikipedia.org",
			Name:         "wildcard",
			Namespace:    "egress",
			Ports:        []Port{{Name: "tls", Port: 443, Protocol: TLS}, {Name: "other", Port: 8000, Protocol: Unsupported}},
			Resolution:   ResolutionNone,
			MeshExternal: true,
		},
		{
			Hostname:     "mirror.example.org",
			Name:         "mirrors",
			Namespace:    "egress",
			Ports:        []Port{{Name: "http", Port: 80, Protocol: HTTP}},
			Resolution:   ResolutionDNS,
			MeshExternal: true,
			Instances: map[uint32][]*Instance{80: {
				{Address: "eu.mirror.example.org", Port: 80, Namespace: "egress", Ready: true},
				{Address: "us.mirror.example.org", Port: 8080, Namespace: "egress", Ready: true},
			}},
		},
		{
			Hostname:     "www.google.com",
			Name:         "google",
			Namespace:    "egress",
			Ports:        []Port{{Name: "tls", Port: 443, Protocol: TLS}},
			Resolution:   ResolutionDNS,
			MeshExternal: true,
			// No endpoints: the proxy resolves the host itself.
			Instances: map[uint32][]*Instance{443: {{Address: "www.google.com", Port: 443, Namespace: "egress", Ready: true}}},
		},
	}
	diff(t, want, r.Services())
}

func TestServiceEntryWorkloadSelector(t *testing.T) {
	r := build(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mixed, namespace: apps}
spec:
  hosts: [mixed.apps.mesh]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector:
    labels: {app: mixed}
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: mixed-vm, namespace: apps}
spec:
  address: 172.16.0.5
  labels: {app: mixed, kind: vm}
  serviceAccount: mixed
  ports: {http: 18080}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: mixed-vm, namespace: elsewhere}
spec:
  address: 172.16.9.9
  labels: {app: mixed}
---
apiVersion: v1
kind: Pod
metadata:
  name: mixed-pod
  namespace: apps
  labels: {app: mixed, kind: pod}
spec:
  serviceAccountName: mixed
  containers:
  - name: app
    image: mixed
status:
  podIP: 10.244.5.5
---
# A container port named like the ServiceEntry port wins over targetPort.
apiVersion: v1
kind: Pod
metadata:
  name: mixed-named
  namespace: apps
  labels: {app: mixed, kind: pod}
spec:
  containers:
  - name: app
    image: mixed
    ports: [{name: http, containerPort: 7070}]
status:
  podIP: 10.244.5.6
`)
	want := &Service{
		Hostname:   "mixed.apps.mesh",
		Name:       "mixed",
		Namespace:  "apps",
		Ports:      []Port{{Name: "http", Port: 80, Protocol: HTTP}},
		Resolution: ResolutionStatic,
		Instances: map[uint32][]*Instance{80: {
			{Address: "10.244.5.5", Port: 8080, Labels: map[string]string{"app": "mixed", "kind": "pod"}, Namespace: "apps", ServiceAccount: "mixed", Ready: true, Workload: "mixed-pod", WorkloadName: "mixed-pod"},
			{Address: "10.244.5.6", Port: 7070, Labels: map[string]string{"app": "mixed", "kind": "pod"}, Namespace: "apps", ServiceAccount: "default", Ready: true, Workload: "mixed-named", WorkloadName: "mixed-named"},
			{Address: "172.16.0.5", Port: 18080, Labels: map[string]string{"app": "mixed", "kind": "vm"}, Namespace: "apps", ServiceAccount: "mixed", Ready: true, Workload: "mixed-vm", WorkloadName: "mixed-vm"},
		}},
	}
	diff(t, []*Service{want}, r.Services())
}

func TestDuplicateHostname(t *testing.T) {
	r := build(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a-dup, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local, extra.example.com]
  location: MESH_INTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b-dup, namespace: aaa}
spec:
  hosts: [extra.example.com]
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
`)
	if got := mustLookup(t, r, "reviews", "default"); got.Name != "reviews" || got.Ports[0].Port != 9080 {
		t.Errorf("the Kubernetes Service must win: got %+v", got)
	}
	// Among ServiceEntries the first by namespace, then name, wins.
	if got := mustLookup(t, r, "extra.example.com", "default"); got.Namespace != "aaa" {
		t.Errorf("extra.example.com from %s/%s, want aaa/b-dup", got.Namespace, got.Name)
	}
	diff(t, []string{"extra.example.com", "reviews.default.svc.cluster.local"}, hostnames(r.Services()))
	diff(t, []string{
		"ServiceEntry default/a-dup: host extra.example.com is already defined by ServiceEntry aaa/b-dup; ignored",
		"ServiceEntry default/a-dup: host reviews.default.svc.cluster.local is already defined by Service default/reviews; ignored",
	}, r.Conflicts())
}
