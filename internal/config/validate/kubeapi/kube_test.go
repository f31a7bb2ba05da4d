package kubeapi_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config"
)

// kubeCase is one document and every error it must produce; no errors
// means the document must parse into exactly one object.
type kubeCase struct {
	name string
	yaml string
	want []string
}

func kubeRun(t *testing.T, cases []kubeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := config.ParseFile("x.yaml", []byte(tc.yaml))
			var got []string
			for _, e := range f.Errors {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			// What is not in force is the in-force table's business
			// (internal/config/inforce); here only validation speaks.
			for _, w := range f.Warnings {
				if !config.IsNotInForce(w) {
					t.Errorf("unexpected warning: %v", w)
				}
			}
			if len(tc.want) == 0 && len(f.Objects) != 1 {
				t.Errorf("got %d objects, want 1", len(f.Objects))
			}
		})
	}
}

// kubeDoc puts body (written flush left, one leading newline) under a
// header, indented by indent spaces.
func kubeDoc(header, body string, indent int) string {
	body = strings.TrimPrefix(body, "\n")
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	b.WriteString(header)
	for _, line := range strings.SplitAfter(body, "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString(pad)
		}
		b.WriteString(line)
	}
	return b.String()
}

func kubeService(spec string) string {
	return kubeDoc("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n", spec, 2)
}

// kubePod wraps a pod spec in a Pod.
func kubePod(spec string) string {
	return kubeDoc("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n", spec, 2)
}

// kubeDeployment wraps a pod template spec in a Deployment selecting app: web.
func kubeDeployment(podSpec string) string {
	return kubeDoc(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
`, podSpec, 6)
}

func kubeSlice(body string) string {
	return kubeDoc("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s-abc\n  labels:\n    kubernetes.io/service-name: s\n", body, 0)
}

const (
	svcErr    = "x.yaml#1 Service default/s: "
	podErr    = "x.yaml#1 Pod default/p: "
	deployErr = "x.yaml#1 Deployment default/web: "
	sliceErr  = "x.yaml#1 EndpointSlice default/s-abc: "

	dns1035Msg   = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
	dns1123Msg   = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
	subdomainMsg = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
	nameMsg      = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)

func TestService(t *testing.T) {
	kubeRun(t, []kubeCase{
		{"realistic multi-port service", kubeService(`
selector:
  app: reviews
ports:
- name: http
  port: 9080
  targetPort: http-web
  appProtocol: http
- name: grpc
  port: 9090
  protocol: TCP
  targetPort: 9090
  appProtocol: kubernetes.io/h2c
- name: dns-udp
  port: 53
  protocol: UDP
- name: dns-tcp
  port: 53
  protocol: TCP
`), nil},
		{"single unnamed port", kubeService(`
ports:
- port: 80
`), nil},
		{"headless without ports", kubeService(`
clusterIP: None
selector:
  app: db
`), nil},
		{"external name", kubeService(`
type: ExternalName
externalName: db.example.com.
`), nil},
		{"node port and load balancer fields", kubeService(`
type: LoadBalancer
clusterIP: 10.96.0.10
clusterIPs: [10.96.0.10, "fd00::10"]
ipFamilies: [IPv4, IPv6]
ipFamilyPolicy: PreferDualStack
externalTrafficPolicy: Local
internalTrafficPolicy: Cluster
sessionAffinity: ClientIP
externalIPs: [192.0.2.1]
loadBalancerSourceRanges: [10.0.0.0/8]
ports:
- port: 80
  nodePort: 30080
`), nil},
		{"service name is a DNS-1035 label", strings.Replace(kubeService("ports:\n- port: 80\n"), "name: s", "name: 9s", 1),
			[]string{"x.yaml#1 Service default/9s: metadata.name: \"9s\" is not a valid Service name: " + dns1035Msg}},
		{"port out of range", kubeService(`
ports:
- name: a
  port: 0
- name: b
  port: 65536
`), []string{
			svcErr + "spec.ports[0].port: must be between 1 and 65535",
			svcErr + "spec.ports[1].port: must be between 1 and 65535",
		}},
		{"names required with several ports", kubeService(`
ports:
- port: 80
- port: 443
`), []string{
			svcErr + "spec.ports[0].name: required when a Service has more than one port",
			svcErr + "spec.ports[1].name: required when a Service has more than one port",
		}},
		{"duplicate port name", kubeService(`
ports:
- name: http
  port: 80
- name: http
  port: 8080
`), []string{svcErr + `spec.ports[1].name: duplicate port name "http": already used at spec.ports[0].name`}},
		{"duplicate port and protocol", kubeService(`
ports:
- name: a
  port: 80
- name: b
  port: 80
  protocol: TCP
`), []string{svcErr + `spec.ports[1]: duplicate port "80/TCP": already used at spec.ports[0]`}},
		{"port name format", kubeService(`
ports:
- name: HTTP_1
  port: 80
`), []string{svcErr + `spec.ports[0].name: "HTTP_1" is not a valid port name: ` + dns1123Msg}},
		{"protocol", kubeService(`
ports:
- port: 80
  protocol: HTTP
`), []string{svcErr + `spec.ports[0].protocol: "HTTP" is not a protocol: use TCP, UDP or SCTP`}},
		{"target port", kubeService(`
ports:
- name: a
  port: 80
  targetPort: 70000
- name: b
  port: 81
  targetPort: web_http
- name: c
  port: 82
  targetPort: a-very-long-port-name
`), []string{
			svcErr + "spec.ports[0].targetPort: must be between 1 and 65535",
			svcErr + `spec.ports[1].targetPort: "web_http" is not a valid port name: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)`,
			svcErr + `spec.ports[2].targetPort: "a-very-long-port-name" is not a valid port name: must be no more than 15 characters`,
		}},
		{"app protocol", kubeService(`
ports:
- port: 80
  appProtocol: "http 2"
`), []string{svcErr + `spec.ports[0].appProtocol: "http 2" is not a valid appProtocol: ` + nameMsg}},
		{"type", kubeService(`
type: Internal
ports:
- port: 80
`), []string{svcErr + `spec.type: "Internal" is not a Service type: use ClusterIP, NodePort, LoadBalancer or ExternalName`}},
		{"external name required", kubeService(`
type: ExternalName
clusterIP: 10.96.0.1
`), []string{
			svcErr + "spec.externalName: required when type is ExternalName: set the DNS name this Service aliases",
			svcErr + "spec.clusterIP: must not be set when type is ExternalName",
		}},
		{"external name format", kubeService(`
type: ExternalName
externalName: db_host
`), []string{svcErr + `spec.externalName: "db_host" is not a valid DNS name: ` + subdomainMsg}},
		{"ports required", kubeService(`
selector:
  app: web
`), []string{svcErr + "spec.ports: required: list at least one port (only a headless Service, clusterIP: None, may have none)"}},
		{"cluster IPs", kubeService(`
clusterIP: 10.96.0.300
clusterIPs: [10.96.0.1, "010.1.1.1", "fd00::1"]
ports:
- port: 80
`), []string{
			svcErr + `spec.clusterIP: "10.96.0.300" is not a valid IP address`,
			svcErr + "spec.clusterIPs: must have at most 2 items (one per IP family)",
			svcErr + "spec.clusterIPs[0]: must equal spec.clusterIP (10.96.0.300)",
			svcErr + `spec.clusterIPs[1]: "010.1.1.1" is not a valid IP address`,
		}},
		{"headless node port", kubeService(`
type: NodePort
clusterIP: None
ports:
- port: 80
`), []string{svcErr + "spec.clusterIP: may not be None when type is NodePort"}},
		{"node port on cluster IP service", kubeService(`
ports:
- port: 80
  nodePort: 30000
`), []string{svcErr + "spec.ports[0].nodePort: may only be set when type is NodePort or LoadBalancer"}},
		{"selector labels", kubeService(`
selector:
  a/b/c: x
  app: "not valid!"
ports:
- port: 80
`), []string{
			svcErr + `spec.selector[a/b/c]: "a/b/c" is not a valid label key: a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`,
			svcErr + `spec.selector[app]: "not valid!" is not a valid label value: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
		}},
		{"policies and families", kubeService(`
sessionAffinity: Sticky
externalTrafficPolicy: Local
internalTrafficPolicy: Node
ipFamilyPolicy: DualStack
ipFamilies: [IPv4, IPv4, IPv5]
externalIPs: [not-an-ip]
loadBalancerSourceRanges: [10.0.0.0/33]
ports:
- port: 80
`), []string{
			svcErr + `spec.sessionAffinity: "Sticky" is not a session affinity: use None or ClientIP`,
			svcErr + "spec.externalTrafficPolicy: may only be set when type is NodePort or LoadBalancer",
			svcErr + `spec.internalTrafficPolicy: "Node" is not a traffic policy: use Cluster or Local`,
			svcErr + `spec.ipFamilyPolicy: "DualStack" is not an IP family policy: use SingleStack, PreferDualStack or RequireDualStack`,
			svcErr + "spec.ipFamilies: must have at most 2 items",
			svcErr + `spec.ipFamilies[1]: duplicate IP family "IPv4": already used at spec.ipFamilies[0]`,
			svcErr + `spec.ipFamilies[2]: "IPv5" is not an IP family: use IPv4 or IPv6`,
			svcErr + `spec.externalIPs[0]: "not-an-ip" is not a valid IP address`,
			svcErr + "spec.loadBalancerSourceRanges: may only be set when type is LoadBalancer",
			svcErr + `spec.loadBalancerSourceRanges[0]: "10.0.0.0/33" is not a CIDR such as 10.0.0.0/8`,
		}},
		{"external traffic policy value", kubeService(`
type: NodePort
externalTrafficPolicy: Nearest
ports:
- port: 80
  nodePort: 70000
`), []string{
			svcErr + "spec.ports[0].nodePort: must be between 1 and 65535",
			svcErr + `spec.externalTrafficPolicy: "Nearest" is not a traffic policy: use Cluster or Local`,
		}},
		{"metadata labels and annotations", `apiVersion: v1
kind: Service
metadata:
  name: s
  labels:
    -bad: x
  annotations:
    "a b": x
spec:
  ports:
  - port: 80
`, []string{
			svcErr + `metadata.labels[-bad]: "-bad" is not a valid label key: ` + nameMsg,
			svcErr + `metadata.annotations[a b]: "a b" is not a valid annotation key: ` + nameMsg,
		}},
	})
}

// kubeRealisticPod is a pod spec using most of what Trellis reads.
const kubeRealisticPod = `
serviceAccountName: reviews
terminationGracePeriodSeconds: 30
volumes:
- name: config
  configMap:
    name: reviews-config
- name: scratch
initContainers:
- name: init
  image: busybox:1.36
  command: [sh, -c, "true"]
containers:
- name: reviews
  image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.2
  imagePullPolicy: IfNotPresent
  ports:
  - name: http-web
    containerPort: 9080
  - containerPort: 9443
    protocol: TCP
  env:
  - name: LOG_DIR
    value: /tmp/logs
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        apiVersion: v1
        fieldPath: metadata.namespace
  - name: APP
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels['app']
  - name: VERSION
    valueFrom:
      fieldRef:
        fieldPath: metadata.annotations['example.com/Version']
  - name: NODE
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
  - name: SA
    valueFrom:
      fieldRef:
        fieldPath: spec.serviceAccountName
  - name: HOST_IP
    valueFrom:
      fieldRef:
        fieldPath: status.hostIP
  - name: POD_IP
    valueFrom:
      fieldRef:
        fieldPath: status.podIP
  - name: POD_IPS
    valueFrom:
      fieldRef:
        fieldPath: status.podIPs
  - name: MEM
    valueFrom:
      resourceFieldRef:
        resource: limits.memory
  - name: COLOR
    valueFrom:
      configMapKeyRef:
        name: reviews-config
        key: color
  - name: TOKEN
    valueFrom:
      secretKeyRef:
        name: reviews-secret
        key: token
  envFrom:
  - configMapRef:
      name: reviews-env
  - prefix: S_
    secretRef:
      name: reviews-env
  resources:
    requests:
      cpu: 100m
      memory: 64Mi
  volumeMounts:
  - name: config
    mountPath: /etc/reviews
  - name: scratch
    mountPath: /tmp
  readinessProbe:
    httpGet:
      path: /health
      port: http-web
      httpHeaders:
      - name: X-Probe
        value: "1"
    periodSeconds: 5
    successThreshold: 2
  livenessProbe:
    tcpSocket:
      port: 9080
    initialDelaySeconds: 10
    failureThreshold: 3
  startupProbe:
    exec:
      command: [cat, /tmp/ready]
- name: grpc
  image: example/grpc:1
  ports:
  - name: http-web
    containerPort: 8080
  livenessProbe:
    grpc:
      port: 8080
`

func TestPod(t *testing.T) {
	kubeRun(t, []kubeCase{
		{"realistic pod", kubePod(kubeRealisticPod), nil},
		{"containers required", kubePod(`
restartPolicy: Always
`), []string{podErr + "spec.containers: required: list at least one container"}},
		{"container names and images", kubePod(`
initContainers:
- name: app
  image: x
containers:
- name: app
  image: x
- name: App_2
  image: " x"
- image: x
- name: noimage
`), []string{
			podErr + `spec.containers[0].name: duplicate container name "app": already used at spec.initContainers[0].name`,
			podErr + `spec.containers[1].name: "App_2" is not a valid container name: ` + dns1123Msg,
			podErr + "spec.containers[1].image: must not have leading or trailing spaces",
			podErr + "spec.containers[2].name: required",
			podErr + "spec.containers[3].image: required",
		}},
		{"container ports", kubePod(`
containers:
- name: app
  image: x
  ports:
  - containerPort: 0
  - containerPort: 80
    hostPort: 70000
    hostIP: 1.2.3
  - containerPort: 81
    protocol: tcp
    name: http
  - containerPort: 82
    name: http
  - containerPort: 83
    name: this-name-is-too-long
`), []string{
			podErr + "spec.containers[0].ports[0].containerPort: must be between 1 and 65535",
			podErr + "spec.containers[0].ports[1].hostPort: must be between 1 and 65535",
			podErr + `spec.containers[0].ports[1].hostIP: "1.2.3" is not a valid IP address`,
			podErr + `spec.containers[0].ports[2].protocol: "tcp" is not a protocol: use TCP, UDP or SCTP`,
			podErr + `spec.containers[0].ports[3].name: duplicate port name "http": already used at spec.containers[0].ports[2].name`,
			podErr + `spec.containers[0].ports[4].name: "this-name-is-too-long" is not a valid port name: must be no more than 15 characters`,
		}},
		{"env names and sources", kubePod(`
containers:
- name: app
  image: x
  env:
  - name: A=B
    value: x
  - value: x
  - name: BOTH
    value: x
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: NONE
    valueFrom: {}
  - name: TWO
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
      configMapKeyRef:
        name: c
        key: k
`), []string{
			podErr + `spec.containers[0].env[0].name: "A=B" is not a valid environment variable name: a valid environment variable name must consist only of printable ASCII characters other than '='`,
			podErr + "spec.containers[0].env[1].name: required",
			podErr + "spec.containers[0].env[2].valueFrom: may not be set together with value: keep one",
			podErr + "spec.containers[0].env[3].valueFrom: must set one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
			podErr + "spec.containers[0].env[4].valueFrom: may set only one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
		}},
		{"env field and key refs", kubePod(`
containers:
- name: app
  image: x
  env:
  - name: UID
    valueFrom:
      fieldRef:
        fieldPath: metadata.uid
  - name: LABELS
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels
  - name: BADKEY
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels['bad key']
  - name: V2
    valueFrom:
      fieldRef:
        apiVersion: v2
        fieldPath: metadata.name
  - name: EMPTY
    valueFrom:
      fieldRef:
        fieldPath: ""
  - name: RES
    valueFrom:
      resourceFieldRef:
        resource: limits.gpu
  - name: CM
    valueFrom:
      configMapKeyRef:
        key: a/b
  - name: SEC
    valueFrom:
      secretKeyRef:
        name: s
        key: ""
`), []string{
			podErr + `spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: "metadata.uid" is not a supported fieldPath: use one of metadata.name, metadata.namespace, metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.hostIP, status.podIP, status.podIPs`,
			podErr + `spec.containers[0].env[1].valueFrom.fieldRef.fieldPath: "metadata.labels" must name one key, as in metadata.labels['app']`,
			podErr + `spec.containers[0].env[2].valueFrom.fieldRef.fieldPath: "bad key" is not a valid key: ` + nameMsg,
			podErr + `spec.containers[0].env[3].valueFrom.fieldRef.apiVersion: "v2" is not supported: use v1`,
			podErr + "spec.containers[0].env[4].valueFrom.fieldRef.fieldPath: required",
			podErr + `spec.containers[0].env[5].valueFrom.resourceFieldRef.resource: "limits.gpu" is not supported: use one of limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage`,
			podErr + "spec.containers[0].env[6].valueFrom.configMapKeyRef.name: required",
			podErr + `spec.containers[0].env[6].valueFrom.configMapKeyRef.key: "a/b" is not a valid key: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`,
			podErr + "spec.containers[0].env[7].valueFrom.secretKeyRef.key: required",
		}},
		{"env from", kubePod(`
containers:
- name: app
  image: x
  envFrom:
  - prefix: X_
  - configMapRef:
      name: a
    secretRef:
      name: b
  - configMapRef: {}
  - secretRef: {}
`), []string{
			podErr + "spec.containers[0].envFrom[0]: must set configMapRef or secretRef",
			podErr + "spec.containers[0].envFrom[1]: may set only one of configMapRef and secretRef",
			podErr + "spec.containers[0].envFrom[2].configMapRef.name: required",
			podErr + "spec.containers[0].envFrom[3].secretRef.name: required",
		}},
		{"probe handlers", kubePod(`
containers:
- name: app
  image: x
  livenessProbe:
    periodSeconds: 5
  readinessProbe:
    exec:
      command: ["true"]
    tcpSocket:
      port: 80
  startupProbe:
    exec: {}
`), []string{
			podErr + "spec.containers[0].livenessProbe: must set one of exec, httpGet, tcpSocket or grpc",
			podErr + "spec.containers[0].readinessProbe: may set only one of exec, httpGet, tcpSocket or grpc",
			podErr + "spec.containers[0].startupProbe.exec.command: required",
		}},
		{"probe ports and fields", kubePod(`
containers:
- name: app
  image: x
  ports:
  - name: http
    containerPort: 8080
  livenessProbe:
    httpGet:
      port: admin
      path: healthz
      scheme: FTP
      httpHeaders:
      - name: "X Bad"
        value: x
    successThreshold: 2
    periodSeconds: -1
    timeoutSeconds: -1
    initialDelaySeconds: -1
    failureThreshold: -1
    terminationGracePeriodSeconds: 0
  readinessProbe:
    tcpSocket:
      port: 0
  startupProbe:
    grpc:
      port: 70000
- name: side
  image: x
  readinessProbe:
    tcpSocket:
      port: http_x
`), []string{
			podErr + `spec.containers[0].livenessProbe.httpGet.port: container "app" has no port named "admin": name one in its ports or use the port number`,
			podErr + `spec.containers[0].livenessProbe.httpGet.scheme: "FTP" is not a scheme: use HTTP or HTTPS`,
			podErr + `spec.containers[0].livenessProbe.httpGet.path: "healthz" must start with /`,
			podErr + `spec.containers[0].livenessProbe.httpGet.httpHeaders[0].name: "X Bad" is not a valid header name: a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')`,
			podErr + "spec.containers[0].livenessProbe.initialDelaySeconds: must be >= 0",
			podErr + "spec.containers[0].livenessProbe.timeoutSeconds: must be >= 0",
			podErr + "spec.containers[0].livenessProbe.periodSeconds: must be >= 0",
			podErr + "spec.containers[0].livenessProbe.failureThreshold: must be >= 0",
			podErr + "spec.containers[0].livenessProbe.successThreshold: must be 1 for liveness and startup probes",
			podErr + "spec.containers[0].livenessProbe.terminationGracePeriodSeconds: must be > 0",
			podErr + "spec.containers[0].readinessProbe.tcpSocket.port: must be between 1 and 65535",
			podErr + "spec.containers[0].startupProbe.grpc.port: must be between 1 and 65535",
			podErr + `spec.containers[1].readinessProbe.tcpSocket.port: "http_x" is not a valid port name: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)`,
		}},
		{"volumes and mounts", kubePod(`
volumes:
- name: data
  emptyDir: {}
- name: data
  configMap:
    name: c
- name: Bad_Name
- configMap:
    name: c
  secret:
    secretName: s
containers:
- name: app
  image: x
  volumeMounts:
  - name: missing
    mountPath: /a
  - name: data
    mountPath: /a
  - name: data
`), []string{
			podErr + `spec.volumes[1].name: duplicate volume name "data": already used at spec.volumes[0].name`,
			podErr + `spec.volumes[2].name: "Bad_Name" is not a valid volume name: ` + dns1123Msg,
			podErr + "spec.volumes[3].name: required",
			podErr + "spec.volumes[3]: may set only one volume type (configMap, secret, emptyDir, ...)",
			podErr + `spec.containers[0].volumeMounts[0].name: no volume named "missing": add it to the pod's volumes`,
			podErr + `spec.containers[0].volumeMounts[1].mountPath: duplicate mountPath "/a": already used at spec.containers[0].volumeMounts[0].mountPath`,
			podErr + "spec.containers[0].volumeMounts[2].mountPath: required",
		}},
		{"pod-level fields", kubePod(`
serviceAccountName: Reviews
serviceAccount: other
restartPolicy: Sometimes
dnsPolicy: Google
terminationGracePeriodSeconds: -1
activeDeadlineSeconds: 0
containers:
- name: app
  image: x
`), []string{
			podErr + `spec.serviceAccountName: "Reviews" is not a valid ServiceAccount name: ` + subdomainMsg,
			podErr + `spec.serviceAccount: must equal serviceAccountName ("Reviews"); it is deprecated, so remove it`,
			podErr + `spec.restartPolicy: "Sometimes" is not a restart policy: use Always, OnFailure or Never`,
			podErr + `spec.dnsPolicy: "Google" is not a DNS policy: use ClusterFirst, ClusterFirstWithHostNet, Default or None`,
			podErr + "spec.terminationGracePeriodSeconds: must be >= 0",
			podErr + "spec.activeDeadlineSeconds: must be > 0",
		}},
	})
}

func TestDeployment(t *testing.T) {
	kubeRun(t, []kubeCase{
		{"realistic deployment", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  labels:
    app: reviews
    version: v1
spec:
  replicas: 2
  revisionHistoryLimit: 5
  minReadySeconds: 5
  progressDeadlineSeconds: 600
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      app: reviews
    matchExpressions:
    - key: version
      operator: In
      values: [v1]
    - key: canary
      operator: DoesNotExist
  template:
    metadata:
      labels:
        app: reviews
        version: v1
      annotations:
        sidecar.istio.io/inject: "true"
    spec:
` + kubeDoc("", kubeRealisticPod, 6), nil},
		{"recreate strategy", kubeDeployment(`
containers:
- name: app
  image: x
`), nil},
		{"selector required", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: x
`, []string{deployErr + "spec.selector: required: set matchLabels to labels from spec.template.metadata.labels"}},
		{"empty selector", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {}
  template:
    spec:
      containers:
      - name: app
        image: x
`, []string{deployErr + "spec.selector: must not be empty: an empty selector would claim every pod in the namespace"}},
		{"selector does not match template", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: web
      version: v2
  template:
    metadata:
      labels:
        app: web
        version: v1
    spec:
      containers:
      - name: app
        image: x
`, []string{deployErr + "spec.template.metadata.labels: do not match spec.selector (app=web,version=v2): add the selector's labels to the template"}},
		{"selector expressions", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchExpressions:
    - key: app
      operator: In
    - key: tier
      operator: Exists
      values: [x]
    - key: ""
      operator: Near
      values: ["bad value"]
  template:
    spec:
      containers:
      - name: app
        image: x
`, []string{
			deployErr + "spec.selector.matchExpressions[0].values: required when operator is In",
			deployErr + "spec.selector.matchExpressions[1].values: must be empty when operator is Exists",
			deployErr + "spec.selector.matchExpressions[2].key: required",
			deployErr + `spec.selector.matchExpressions[2].operator: "Near" is not an operator: use In, NotIn, Exists or DoesNotExist`,
			deployErr + `spec.selector.matchExpressions[2].values[0]: "bad value" is not a valid label value: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
		}},
		{"replicas, template and restart policy", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: -1
  minReadySeconds: 10
  progressDeadlineSeconds: 10
  revisionHistoryLimit: -1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      restartPolicy: Never
`, []string{
			deployErr + "spec.replicas: must be >= 0",
			deployErr + "spec.template.spec.containers: required: list at least one container",
			deployErr + `spec.template.spec.restartPolicy: "Never" is not allowed in a Deployment: use Always (or leave it out)`,
			deployErr + "spec.revisionHistoryLimit: must be >= 0",
			deployErr + "spec.progressDeadlineSeconds: must be greater than minReadySeconds (10)",
		}},
		{"min ready seconds", strings.Replace(kubeDeployment("containers:\n- name: app\n  image: x\n"), "spec:\n  selector", "spec:\n  minReadySeconds: -1\n  selector", 1),
			[]string{deployErr + "spec.minReadySeconds: must be >= 0"}},
		{"template pod spec is checked", kubeDeployment(`
containers:
- name: app
  image: x
  ports:
  - containerPort: 0
`), []string{deployErr + "spec.template.spec.containers[0].ports[0].containerPort: must be between 1 and 65535"}},
		{"rolling update bounds", strings.Replace(kubeDeployment("containers:\n- name: app\n  image: x\n"), "spec:\n  selector", `spec:
  strategy:
    rollingUpdate:
      maxSurge: 0
      maxUnavailable: 0%
  selector`, 1), []string{deployErr + "spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0: the rollout could never make progress"}},
		{"rolling update values", strings.Replace(kubeDeployment("containers:\n- name: app\n  image: x\n"), "spec:\n  selector", `spec:
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: many
      maxUnavailable: 150%
  selector`, 1), []string{
			deployErr + `spec.strategy.rollingUpdate.maxSurge: "many" must be a number or a percentage such as 25%`,
			deployErr + "spec.strategy.rollingUpdate.maxUnavailable: must not be more than 100%",
		}},
		{"negative rolling update", strings.Replace(kubeDeployment("containers:\n- name: app\n  image: x\n"), "spec:\n  selector", `spec:
  strategy:
    rollingUpdate:
      maxSurge: -1
  selector`, 1), []string{deployErr + "spec.strategy.rollingUpdate.maxSurge: must be >= 0"}},
		{"recreate with rolling update", strings.Replace(kubeDeployment("containers:\n- name: app\n  image: x\n"), "spec:\n  selector", `spec:
  strategy:
    type: Recreate
    rollingUpdate:
      maxSurge: 1
  selector`, 1), []string{deployErr + "spec.strategy.rollingUpdate: must not be set when strategy type is Recreate"}},
		{"unknown strategy", strings.Replace(kubeDeployment("containers:\n- name: app\n  image: x\n"), "spec:\n  selector", `spec:
  strategy:
    type: BlueGreen
  selector`, 1), []string{deployErr + `spec.strategy.type: "BlueGreen" is not a strategy: use RollingUpdate or Recreate`}},
		{"template labels", strings.Replace(kubeDeployment("containers:\n- name: app\n  image: x\n"), "        app: web\n", "        app: web\n        bad/key/x: z\n", 1),
			[]string{deployErr + `spec.template.metadata.labels[bad/key/x]: "bad/key/x" is not a valid label key: a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`}},
	})
}

func TestEndpointSlice(t *testing.T) {
	kubeRun(t, []kubeCase{
		{"realistic IPv4 slice", kubeSlice(`
addressType: IPv4
ports:
- name: http
  port: 9080
  protocol: TCP
  appProtocol: http
- name: grpc
  port: 9090
endpoints:
- addresses: [10.244.0.5]
  conditions:
    ready: true
  hostname: reviews-0
  nodeName: node-1
  zone: a
  targetRef:
    kind: Pod
    name: reviews-0
- addresses: [10.244.0.6]
`), nil},
		{"IPv6 slice", kubeSlice(`
addressType: IPv6
ports:
- port: 80
endpoints:
- addresses: ["fd00::5"]
`), nil},
		{"FQDN slice", kubeSlice(`
addressType: FQDN
endpoints:
- addresses: [db.example.com, db2.example.com.]
`), nil},
		{"service name label required", `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: s-abc
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
`, []string{sliceErr + "metadata.labels[kubernetes.io/service-name]: required: add the label kubernetes.io/service-name: <Service name>; Trellis attaches the slice's endpoints to that Service"}},
		{"service name label value", strings.Replace(kubeSlice("addressType: IPv4\n"), "service-name: s", "service-name: 1s", 1),
			[]string{sliceErr + `metadata.labels[kubernetes.io/service-name]: "1s" is not a valid Service name: ` + dns1035Msg}},
		{"address type", kubeSlice(`
endpoints:
- addresses: [10.0.0.1]
`), []string{sliceErr + "addressType: required: set IPv4, IPv6 or FQDN"}},
		{"unknown address type", kubeSlice(`
addressType: IP
`), []string{sliceErr + `addressType: "IP" is not an address type: use IPv4, IPv6 or FQDN`}},
		{"addresses must match type", kubeSlice(`
addressType: IPv4
endpoints:
- addresses: ["fd00::1", 10.0.0.01, pod-a]
  hostname: Pod.A
  nodeName: Node_1
- addresses: []
`), []string{
			sliceErr + `endpoints[0].addresses[0]: "fd00::1" is not an IPv4 address`,
			sliceErr + `endpoints[0].addresses[1]: "10.0.0.01" is not a valid IP address`,
			sliceErr + `endpoints[0].addresses[2]: "pod-a" is not a valid IP address`,
			sliceErr + `endpoints[0].hostname: "Pod.A" is not a valid hostname: ` + dns1123Msg,
			sliceErr + `endpoints[0].nodeName: "Node_1" is not a valid node name: ` + subdomainMsg,
			sliceErr + "endpoints[1].addresses: required: list at least one address",
		}},
		{"IPv6 and FQDN addresses", kubeSlice(`
addressType: IPv6
endpoints:
- addresses: [10.0.0.1, "fe80::1%eth0"]
`), []string{
			sliceErr + `endpoints[0].addresses[0]: "10.0.0.1" is not an IPv6 address`,
			sliceErr + `endpoints[0].addresses[1]: "fe80::1%eth0" is not a valid IP address`,
		}},
		{"FQDN address format", kubeSlice(`
addressType: FQDN
endpoints:
- addresses: [db_1.example.com]
`), []string{sliceErr + `endpoints[0].addresses[0]: "db_1.example.com" is not a valid DNS name: ` + subdomainMsg}},
		{"ports", kubeSlice(`
addressType: IPv4
ports:
- port: 80
- port: 81
- name: Web
  port: 0
  protocol: ICMP
  appProtocol: "a b"
`), []string{
			sliceErr + `ports[1].name: duplicate port name "": already used at ports[0].name`,
			sliceErr + `ports[2].name: "Web" is not a valid port name: ` + dns1123Msg,
			sliceErr + "ports[2].port: must be between 1 and 65535",
			sliceErr + `ports[2].protocol: "ICMP" is not a protocol: use TCP, UDP or SCTP`,
			sliceErr + `ports[2].appProtocol: "a b" is not a valid appProtocol: ` + nameMsg,
		}},
		{"too many addresses", kubeSlice("addressType: IPv4\nendpoints:\n- addresses: [" + strings.TrimSuffix(strings.Repeat("10.0.0.1,", 101), ",") + "]\n"),
			[]string{sliceErr + "endpoints[0].addresses: must have at most 100 items"}},
	})
}

func TestConfigMapNamespaceServiceAccount(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	kubeRun(t, []kubeCase{
		{"config map", `apiVersion: v1
kind: ConfigMap
metadata:
  name: reviews-config
data:
  color: blue
  app.properties: |
    a=b
binaryData:
  logo.png: iVBORw0KGgo=
`, nil},
		{"config map keys", `apiVersion: v1
kind: ConfigMap
metadata:
  name: c
data:
  a/b: x
  dup: x
binaryData:
  dup: eA==
`, []string{
			`x.yaml#1 ConfigMap default/c: data[a/b]: "a/b" is not a valid key: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`,
			`x.yaml#1 ConfigMap default/c: binaryData[dup]: duplicate key "dup": it is also in data; keep it in one of data and binaryData`,
		}},
		{"config map size", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  big: " + big + "\n",
			[]string{"x.yaml#1 ConfigMap default/c: data: holds 1048579 bytes, over the 1 MiB (1048576 bytes) a ConfigMap may hold: split it or mount the content another way"}},
		{"namespace", `apiVersion: v1
kind: Namespace
metadata:
  name: reviews
  labels:
    istio-injection: enabled
spec:
  finalizers: [kubernetes]
`, nil},
		{"namespace name is a label", `apiVersion: v1
kind: Namespace
metadata:
  name: my.ns
spec:
  finalizers: ["bad finalizer"]
`, []string{
			`x.yaml#1 Namespace my.ns: metadata.name: "my.ns" is not a valid Namespace name: must not contain dots`,
			`x.yaml#1 Namespace my.ns: spec.finalizers[0]: "bad finalizer" is not a valid finalizer: ` + nameMsg,
		}},
		{"service account", `apiVersion: v1
kind: ServiceAccount
metadata:
  name: checkout-service
  namespace: shop
  annotations:
    example.com/owner: team-a
imagePullSecrets:
- name: registry
automountServiceAccountToken: false
`, nil},
		{"service account pull secrets", `apiVersion: v1
kind: ServiceAccount
metadata:
  name: sa
imagePullSecrets:
- {}
`, []string{"x.yaml#1 ServiceAccount default/sa: imagePullSecrets[0].name: required"}},
	})
}
