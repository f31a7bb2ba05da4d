package registry

import "testing"

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
		return &Instance{Address: ip, Port: port, Labels: labels, Namespace: "bookinfo", ServiceAccount: sa, Locality: loc, Ready: ready, Workload: name}
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
