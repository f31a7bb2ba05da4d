package registry

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const reviewsPods = `
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: bookinfo
  labels: {app: reviews}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports:
  - name: http-web
    port: 9080
    targetPort: web
  - name: grpc
    port: 9090
    appProtocol: http
  - name: metrics
    port: 15090
    targetPort: 9100
  - name: dns
    port: 53
    protocol: UDP
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1
  namespace: bookinfo
  labels: {app: reviews, version: v1, istio-locality: eu-west.zone-a}
spec:
  serviceAccountName: bookinfo-reviews
  containers:
  - name: app
    image: reviews
    ports:
    - name: web
      containerPort: 8080
status:
  podIP: 10.244.0.20
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v2
  namespace: bookinfo
  labels: {app: reviews, version: v2}
spec:
  containers:
  - name: app
    image: reviews
    ports:
    - name: web
      containerPort: 8081
status:
  podIP: 10.244.0.3
  conditions:
  - type: Ready
    status: "False"
---
# No container port named web: not an endpoint of 9080, still one of the others.
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v3
  namespace: bookinfo
  labels: {app: reviews, version: v3}
spec:
  containers:
  - name: app
    image: reviews
status:
  podIP: 10.244.0.100
---
# No IP yet.
apiVersion: v1
kind: Pod
metadata:
  name: reviews-pending
  namespace: bookinfo
  labels: {app: reviews}
spec:
  containers:
  - name: app
    image: reviews
---
# Other namespace: never selected.
apiVersion: v1
kind: Pod
metadata:
  name: reviews-elsewhere
  namespace: other
  labels: {app: reviews}
spec:
  containers:
  - name: app
    image: reviews
status:
  podIP: 10.244.9.9
---
# A Deployment is not a pod: no endpoints from it.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews
  namespace: bookinfo
spec:
  selector:
    matchLabels: {app: reviews}
  template:
    metadata:
      labels: {app: reviews}
    spec:
      containers:
      - name: app
        image: reviews
`

func TestServicePods(t *testing.T) {
	r := build(t, reviewsPods)
	v1 := map[string]string{"app": "reviews", "version": "v1", "istio-locality": "eu-west.zone-a"}
	v2 := map[string]string{"app": "reviews", "version": "v2"}
	v3 := map[string]string{"app": "reviews", "version": "v3"}
	pod := func(ip string, port uint32, labels map[string]string, sa, loc string, ready bool, name string) *Instance {
		return &Instance{Address: ip, Port: port, Labels: labels, Namespace: "bookinfo", ServiceAccount: sa, Locality: loc, Ready: ready, Workload: name, WorkloadName: name}
	}
	want := &Service{
		Hostname:  "reviews.bookinfo.svc.cluster.local",
		Name:      "reviews",
		Namespace: "bookinfo",
		Ports: []Port{
			{Name: "http-web", Port: 9080, Protocol: HTTP},
			{Name: "grpc", Port: 9090, Protocol: HTTP}, // appProtocol wins over the name
			{Name: "metrics", Port: 15090, Protocol: Unsupported},
		},
		Addresses:  []string{"10.96.0.10"},
		Labels:     map[string]string{"app": "reviews"},
		Resolution: ResolutionStatic,
		Instances: map[uint32][]*Instance{
			9080: {
				pod("10.244.0.3", 8081, v2, "default", "", false, "reviews-v2"),
				pod("10.244.0.20", 8080, v1, "bookinfo-reviews", "eu-west/zone-a", true, "reviews-v1"),
			},
			9090: {
				pod("10.244.0.3", 9090, v2, "default", "", false, "reviews-v2"),
				pod("10.244.0.20", 9090, v1, "bookinfo-reviews", "eu-west/zone-a", true, "reviews-v1"),
				pod("10.244.0.100", 9090, v3, "default", "", true, "reviews-v3"),
			},
			15090: {
				pod("10.244.0.3", 9100, v2, "default", "", false, "reviews-v2"),
				pod("10.244.0.20", 9100, v1, "bookinfo-reviews", "eu-west/zone-a", true, "reviews-v1"),
				pod("10.244.0.100", 9100, v3, "default", "", true, "reviews-v3"),
			},
		},
	}
	diff(t, []*Service{want}, r.Services())
}

func TestServiceEndpointSlice(t *testing.T) {
	r := build(t, `
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.11
  selector: {app: ratings}
  ports:
  - {name: http, port: 9080, targetPort: web}
  - {port: 9999, name: tcp-admin, targetPort: 7000}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ratings-abc
  namespace: bookinfo
  labels: {kubernetes.io/service-name: ratings}
addressType: IPv4
ports:
- {name: http, port: 8080}
- {name: tcp-admin, port: 7000}
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: ratings-1, namespace: bookinfo}
- addresses: [10.244.1.4]
  conditions: {ready: false}
  targetRef: {kind: Pod, name: ratings-gone, namespace: bookinfo}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ratings-def
  namespace: bookinfo
  labels: {kubernetes.io/service-name: ratings}
addressType: IPv4
ports:
- {name: http, port: 8080}
endpoints:
- addresses: [10.244.2.1]
---
# The slices are authoritative: this pod matches the selector but is no
# endpoint since no slice lists it.
apiVersion: v1
kind: Pod
metadata:
  name: ratings-1
  namespace: bookinfo
  labels: {app: ratings, version: v1}
spec:
  serviceAccountName: ratings
  containers:
  - name: app
    image: ratings
status:
  podIP: 10.244.1.5
---
apiVersion: v1
kind: Pod
metadata:
  name: ratings-unlisted
  namespace: bookinfo
  labels: {app: ratings}
spec:
  containers:
  - name: app
    image: ratings
status:
  podIP: 10.244.7.7
`)
	pod := map[string]string{"app": "ratings", "version": "v1"}
	want := &Service{
		Hostname:   "ratings.bookinfo.svc.cluster.local",
		Name:       "ratings",
		Namespace:  "bookinfo",
		Ports:      []Port{{Name: "http", Port: 9080, Protocol: HTTP}, {Name: "tcp-admin", Port: 9999, Protocol: TCP}},
		Addresses:  []string{"10.96.0.11"},
		Resolution: ResolutionStatic,
		Instances: map[uint32][]*Instance{
			9080: {
				{Address: "10.244.1.4", Port: 8080, Namespace: "bookinfo", Ready: false, Workload: "ratings-gone"},
				{Address: "10.244.1.5", Port: 8080, Labels: pod, Namespace: "bookinfo", ServiceAccount: "ratings", Ready: true, Workload: "ratings-1", WorkloadName: "ratings-1"},
				{Address: "10.244.2.1", Port: 8080, Namespace: "bookinfo", Ready: true},
			},
			9999: {
				{Address: "10.244.1.4", Port: 7000, Namespace: "bookinfo", Ready: false, Workload: "ratings-gone"},
				{Address: "10.244.1.5", Port: 7000, Labels: pod, Namespace: "bookinfo", ServiceAccount: "ratings", Ready: true, Workload: "ratings-1", WorkloadName: "ratings-1"},
			},
		},
	}
	diff(t, want, mustLookup(t, r, "ratings", "bookinfo"))
}

func TestHeadlessAndExternalName(t *testing.T) {
	r := build(t, `
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec:
  clusterIP: None
  selector: {app: db}
  ports:
  - {name: tcp, port: 5432}
  - {name: mongo, port: 27017}
  - {name: cache, port: 6379, appProtocol: redis}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: data
  labels: {app: db}
spec:
  containers:
  - name: db
    image: postgres
status:
  podIP: 10.244.3.1
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: data}
spec:
  type: ExternalName
  externalName: db.legacy.example.com
  ports:
  - {name: https, port: 443}
`)
	inst := func(port uint32) *Instance {
		return &Instance{Address: "10.244.3.1", Port: port, Labels: map[string]string{"app": "db"}, Namespace: "data", ServiceAccount: "default", Ready: true, Workload: "db-0", WorkloadName: "db-0"}
	}
	want := []*Service{
		{
			Hostname:   "db.data.svc.cluster.local",
			Name:       "db",
			Namespace:  "data",
			Ports:      []Port{{Name: "tcp", Port: 5432, Protocol: TCP}, {Name: "mongo", Port: 27017, Protocol: Mongo}, {Name: "cache", Port: 6379, Protocol: Redis}},
			Headless:   true,
			Resolution: ResolutionNone,
			Instances:  map[uint32][]*Instance{5432: {inst(5432)}, 27017: {inst(27017)}, 6379: {inst(6379)}},
		},
		{
			Hostname:     "legacy.data.svc.cluster.local",
			Name:         "legacy",
			Namespace:    "data",
			Ports:        []Port{{Name: "https", Port: 443, Protocol: HTTPS}},
			Resolution:   ResolutionDNS,
			MeshExternal: true,
			Instances:    map[uint32][]*Instance{443: {{Address: "db.legacy.example.com", Port: 443, Namespace: "data", Ready: true}}},
		},
	}
	diff(t, want, r.Services())
}

func TestServiceWorkloadEntries(t *testing.T) {
	r := build(t, `
apiVersion: v1
kind: Service
metadata: {name: details, namespace: vm}
spec:
  selector: {app: details}
  ports:
  - {name: http, port: 9080, targetPort: 8080}
  - {name: grpc-api, port: 9090, targetPort: api}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: details-vm-1, namespace: vm}
spec:
  address: 192.168.0.10
  labels: {app: details, version: v1}
  serviceAccount: details
  weight: 3
  locality: us-east1/us-east1-b
  ports: {http: 18080, api: 19090}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: details-vm-2, namespace: vm}
spec:
  address: 192.168.0.9
  labels: {app: details, version: v2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-vm, namespace: vm}
spec:
  address: 192.168.0.11
  labels: {app: other}
`)
	v1 := map[string]string{"app": "details", "version": "v1"}
	v2 := map[string]string{"app": "details", "version": "v2"}
	want := &Service{
		Hostname:   "details.vm.svc.cluster.local",
		Name:       "details",
		Namespace:  "vm",
		Ports:      []Port{{Name: "http", Port: 9080, Protocol: HTTP}, {Name: "grpc-api", Port: 9090, Protocol: GRPC}},
		Resolution: ResolutionStatic,
		Instances: map[uint32][]*Instance{
			9080: {
				// No ports map entry: the integer target port.
				{Address: "192.168.0.9", Port: 8080, Labels: v2, Namespace: "vm", Ready: true, Workload: "details-vm-2", WorkloadName: "details-vm-2"},
				// ports[http] overrides the target port.
				{Address: "192.168.0.10", Port: 18080, Labels: v1, Namespace: "vm", ServiceAccount: "details", Weight: 3, Locality: "us-east1/us-east1-b", Ready: true, Workload: "details-vm-1", WorkloadName: "details-vm-1"},
			},
			// The named target port resolves through the ports map; vm-2
			// does not declare it and is no endpoint of this port.
			9090: {
				{Address: "192.168.0.10", Port: 19090, Labels: v1, Namespace: "vm", ServiceAccount: "details", Weight: 3, Locality: "us-east1/us-east1-b", Ready: true, Workload: "details-vm-1", WorkloadName: "details-vm-1"},
			},
		},
	}
	diff(t, []*Service{want}, r.Services())
}

func TestKubeProtocol(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name string
		app  *string
		port int32
		want Protocol
	}{
		{"http", nil, 80, HTTP},
		{"http-web", nil, 80, HTTP},
		{"HTTP2-x", nil, 80, HTTP2},
		{"httpweb", nil, 80, Unsupported},
		{"grpc", nil, 80, GRPC},
		{"grpc-web", nil, 80, HTTP2},
		{"grpc-web-ui", nil, 80, HTTP2},
		{"grpc-api", nil, 80, GRPC},
		{"tcp", nil, 80, TCP},
		{"tls-x", nil, 80, TLS},
		{"https", nil, 80, HTTPS},
		{"mongo", nil, 80, Mongo},
		{"redis", nil, 80, Redis},
		{"mysql", nil, 80, MySQL},
		{"", nil, 80, Unsupported},
		{"web", nil, 80, Unsupported},
		{"", nil, 3306, TCP},
		{"web", str("http"), 80, HTTP},
		{"tcp", str("grpc"), 80, GRPC},
		{"http", str("kubernetes.io/h2c"), 80, HTTP2},
		{"x", str("kubernetes.io/ws"), 80, HTTP},
		{"x", str("kubernetes.io/wss"), 80, HTTPS},
		{"http", str("example.com/custom"), 80, Unsupported},
	}
	for _, tt := range tests {
		p := corev1.ServicePort{Name: tt.name, AppProtocol: tt.app, Port: tt.port}
		if got := kubeProtocol(p); got != tt.want {
			t.Errorf("kubeProtocol(name %q, appProtocol %v, port %d) = %s, want %s", tt.name, ptrString(tt.app), tt.port, got, tt.want)
		}
	}
}
