package local

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// These cases check the plan against what Kubernetes documents for a
// Deployment's pods (kubernetes.io reference pages for Deployment, Pod,
// EnvVar/EnvFromSource, Probe and the downward API) and what Istio's
// injector documents for sidecar.istio.io/inject, not against our own
// output.

// onlyWorkload plans yaml and returns its one workload.
func onlyWorkload(t *testing.T, yaml string) *Workload {
	t.Helper()
	ws, errs := planYAML(t, yaml)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(ws) != 1 {
		t.Fatalf("%d workloads, want 1", len(ws))
	}
	return ws[0]
}

// DeploymentSpec.replicas: "Number of desired pods ... Defaults to 1";
// 0 is a valid number (scaled to zero). PodSpec.serviceAccountName:
// "ServiceAccountName is the name of the ServiceAccount to use to run
// this pod" and defaults to "default"; the deprecated serviceAccount is
// its alias. terminationGracePeriodSeconds "Defaults to 30 seconds".
// restartPolicy "Default to Always".
func TestPlanPodDefaults(t *testing.T) {
	head := func(replicas string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
` + replicas + `  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
`
	}
	type got struct {
		Replicas       int
		ServiceAccount string
		Grace          time.Duration
		Restart        corev1.RestartPolicy
	}
	for _, c := range []struct {
		name, replicas, spec string
		want                 got
	}{
		{"defaults", "", "", got{1, "default", 30 * time.Second, corev1.RestartPolicyAlways}},
		{"zero replicas", "  replicas: 0\n", "", got{0, "default", 30 * time.Second, corev1.RestartPolicyAlways}},
		{"explicit", "  replicas: 3\n", "      serviceAccountName: api\n      terminationGracePeriodSeconds: 5\n", got{3, "api", 5 * time.Second, corev1.RestartPolicyAlways}},
		{"deprecated serviceAccount", "", "      serviceAccount: legacy\n", got{1, "legacy", 30 * time.Second, corev1.RestartPolicyAlways}},
		{"zero grace period", "", "      terminationGracePeriodSeconds: 0\n", got{1, "default", 0, corev1.RestartPolicyAlways}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := onlyWorkload(t, head(c.replicas)+c.spec+"      containers: [{name: web, image: x, command: [server]}]\n")
			g := got{w.Replicas, w.Pod.ServiceAccount, w.Pod.GracePeriod, w.Pod.RestartPolicy}
			if d := cmp.Diff(c.want, g); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// Istio's sidecar.istio.io/inject (label, or the older annotation): the
// label "takes precedence" when both are set; true/y/yes/on inject
// (YAML's booleans, case-insensitive), false/n/no/off do not; without
// either the namespace default (injection on, in local mode) applies.
// Injected pods carry security.istio.io/tlsMode: istio, as Istio's
// injector adds it.
func TestPlanInjection(t *testing.T) {
	for _, c := range []struct {
		name, meta string
		sidecar    bool
	}{
		{"unset", `{labels: {app: web}}`, true},
		{"annotation false", `{labels: {app: web}, annotations: {sidecar.istio.io/inject: "false"}}`, false},
		{"annotation No", `{labels: {app: web}, annotations: {sidecar.istio.io/inject: "No"}}`, false},
		{"annotation off", `{labels: {app: web}, annotations: {sidecar.istio.io/inject: "off"}}`, false},
		{"annotation TRUE", `{labels: {app: web}, annotations: {sidecar.istio.io/inject: "TRUE"}}`, true},
		{"label false", `{labels: {app: web, sidecar.istio.io/inject: "false"}}`, false},
		{"label over annotation (off)", `{labels: {app: web, sidecar.istio.io/inject: "false"}, annotations: {sidecar.istio.io/inject: "true"}}`, false},
		{"label over annotation (on)", `{labels: {app: web, sidecar.istio.io/inject: "true"}, annotations: {sidecar.istio.io/inject: "false"}}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := onlyWorkload(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: `+c.meta+`
    spec:
      containers: [{name: web, image: x, command: [server]}]
`)
			tls := w.Pod.Labels[TLSModeLabel]
			if w.Pod.Sidecar != c.sidecar || (tls == "istio") != c.sidecar {
				t.Errorf("sidecar %v, tlsMode label %q; want sidecar %v", w.Pod.Sidecar, tls, c.sidecar)
			}
		})
	}
}

// containerEnvMap plans one container and gives its environment as the
// process would see it.
func containerEnvMap(t *testing.T, yaml string, info podInfo) map[string]string {
	t.Helper()
	w := onlyWorkload(t, yaml)
	info.Labels, info.Annotations = w.Pod.Labels, w.Pod.Annotations
	env := containerEnv(nil, nil, info, w.Pod.Containers[0])
	out := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// EnvFromSource: "When a key exists in multiple sources, the value
// associated with the last source will take precedence. Values defined by
// an Env with a duplicate key will take precedence"; prefix is "An
// optional identifier to prepend to each key in the ConfigMap"; an
// optional ConfigMap that is missing contributes nothing.
// ConfigMapKeySelector.optional: "Specify whether the ConfigMap or its key
// must be defined" (a missing optional key leaves the variable unset).
// EnvVar.value: "Variable references $(VAR_NAME) are expanded using the
// previously defined environment variables in the container ... If a
// variable cannot be resolved, the reference in the input string will be
// unchanged. Double $$ are reduced to a single $".
func TestPlanEnvSources(t *testing.T) {
	env := containerEnvMap(t, `apiVersion: v1
kind: ConfigMap
metadata: {name: base}
data: {MODE: base, LEVEL: info, HOST: db}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: over}
data: {MODE: over}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: x
        command: [server]
        envFrom:
        - configMapRef: {name: base}
        - configMapRef: {name: over}
        - configMapRef: {name: base}
          prefix: CFG_
        - configMapRef: {name: missing, optional: true}
        env:
        - {name: LEVEL, value: debug}
        - {name: URL, value: "http://$(HOST):$(PORT)/$(MODE)"}
        - {name: PORT, value: "5432"}
        - {name: LATER, value: "$(PORT)"}
        - {name: PRICE, value: "$$(HOST) costs $5"}
        - name: OPT
          valueFrom: {configMapKeyRef: {name: base, key: nope, optional: true}}
`, podInfo{Name: "web-0", Namespace: "default", IP: "127.10.1.2"})
	want := map[string]string{
		"HOSTNAME": "web-0",
		"MODE":     "over",
		"LEVEL":    "debug",
		"HOST":     "db",
		"CFG_MODE": "base", "CFG_LEVEL": "info", "CFG_HOST": "db",
		// PORT is defined after URL, so it stays a reference there.
		"URL":   "http://db:$(PORT)/over",
		"PORT":  "5432",
		"LATER": "5432",
		"PRICE": "$(HOST) costs $5",
	}
	if d := cmp.Diff(want, env); d != "" {
		t.Errorf("environment (-want +got):\n%s", d)
	}
}

// The downward API (EnvVarSource.fieldRef): "supports metadata.name,
// metadata.namespace, metadata.labels['<KEY>'],
// metadata.annotations['<KEY>'], spec.nodeName, spec.serviceAccountName,
// status.hostIP, status.podIP, status.podIPs". Values are the pod's own;
// later variables may refer to them.
func TestPlanDownwardAPI(t *testing.T) {
	env := containerEnvMap(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}, annotations: {owner: team-a}}
    spec:
      serviceAccountName: web-sa
      containers:
      - name: web
        image: x
        command: [server]
        env:
        - {name: NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
        - {name: OWNER, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['owner']"}}}
        - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
        - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
        - {name: SELF, value: "$(NAME).$(NS):$(IP)"}
`, podInfo{Name: "web-0", Namespace: "shop", IP: "127.10.1.7", ServiceAccount: "web-sa"})
	for k, want := range map[string]string{
		"NAME": "web-0", "NS": "shop", "TIER": "front", "OWNER": "team-a", "SA": "web-sa",
		"IP": "127.10.1.7", "IPS": "127.10.1.7", "SELF": "web-0.shop:127.10.1.7",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
}

// Probe (Pod reference): periodSeconds "Default to 10 seconds",
// timeoutSeconds "Defaults to 1 second", successThreshold "Defaults to
// 1", failureThreshold "Defaults to 3", initialDelaySeconds unset is 0;
// httpGet.scheme "Defaults to HTTP", its port (like tcpSocket's) is a
// number or "an IANA_SVC_NAME" naming a container port.
func TestPlanProbes(t *testing.T) {
	w := onlyWorkload(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: x
        command: [server]
        ports: [{name: http, containerPort: 8080}, {name: admin, containerPort: 9090}]
        readinessProbe:
          httpGet:
            path: /ready
            port: http
            httpHeaders: [{name: X-Probe, value: "1"}]
        livenessProbe:
          tcpSocket: {port: admin}
          initialDelaySeconds: 5
          periodSeconds: 2
          timeoutSeconds: 3
          successThreshold: 1
          failureThreshold: 7
        startupProbe:
          exec: {command: [check, --quick]}
`)
	c := w.Pod.Containers[0]
	want := []*Probe{
		{HTTPGet: true, Port: 8080, Path: "/ready", Scheme: "HTTP", Headers: [][2]string{{"X-Probe", "1"}},
			Period: 10 * time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3},
		{TCP: true, Port: 9090, InitialDelay: 5 * time.Second, Period: 2 * time.Second, Timeout: 3 * time.Second, SuccessThreshold: 1, FailureThreshold: 7},
		{Exec: []string{"check", "--quick"}, Period: 10 * time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3},
	}
	if d := cmp.Diff(want, []*Probe{c.Readiness, c.Liveness, c.Startup}); d != "" {
		t.Errorf("probes (-want +got):\n%s", d)
	}
}

// What a local pod cannot have is refused at its field: envFrom of a
// Secret, resourceFieldRef (no resource limits locally), a required
// ConfigMap that is missing, and an inject value that is not a boolean.
// (Unknown fieldRefs, probes without a handler and unknown probe port
// names are refused earlier, by the Kubernetes validation of the
// manifest, as the API server would.)
func TestPlanMoreErrors(t *testing.T) {
	const head = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: x
        command: [server]
`
	for _, c := range []struct{ name, body, want string }{
		{"envFrom secret", "        envFrom: [{secretRef: {name: s}}]\n",
			"spec.template.spec.containers[0].envFrom[0].secretRef: Secrets are not read in local mode"},
		{"envFrom missing config map", "        envFrom: [{configMapRef: {name: nope}}]\n",
			"spec.template.spec.containers[0].envFrom[0].configMapRef.name: ConfigMap default/nope is not in the folder"},
		{"resourceFieldRef", "        env: [{name: X, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}]\n",
			"spec.template.spec.containers[0].env[0].valueFrom.resourceFieldRef: resource limits do not exist in local mode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ws, errs := planYAML(t, head+c.body)
			if len(ws) != 0 || len(errs) != 1 {
				t.Fatalf("got %d workloads and errors %v, want one error", len(ws), errs)
			}
			if msg := errs[0].Error(); !strings.Contains(msg, c.want) {
				t.Errorf("error %q\nwant it to contain %q", msg, c.want)
			}
		})
	}
	ws, errs := planYAML(t, strings.Replace(head, "metadata: {labels: {app: web}}", `metadata: {labels: {app: web}, annotations: {sidecar.istio.io/inject: "maybe"}}`, 1))
	if len(ws) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), `spec.template.metadata.annotations[sidecar.istio.io/inject]: "maybe": use "true" or "false"`) {
		t.Errorf("inject maybe: workloads %d, errors %v; want one error at the annotation", len(ws), errs)
	}
}

// A pod template change rolls the pods (Kubernetes' pod-template-hash):
// any edit of the template changes the hash; replicas are not part of it.
func TestPlanTemplateHash(t *testing.T) {
	base := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: x, command: [server], env: [{name: V, value: "VALUE"}]}]
`
	hash := func(replicas, value string) string {
		return onlyWorkload(t, strings.NewReplacer("REPLICAS", replicas, "VALUE", value).Replace(base)).Hash
	}
	if hash("1", "a") != hash("5", "a") {
		t.Error("scaling changed the template hash: pods would roll")
	}
	if hash("1", "a") == hash("1", "b") {
		t.Error("an env change kept the template hash: pods would not roll")
	}
}
