package inject

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/trellismesh/trellis/internal/proxy/apphealth"
)

// Names and ports of what is injected (the ports are Istio's, so probes,
// scrapers and NetworkPolicies written for Istio keep working).
const (
	ProxyName        = "trellis-proxy"
	InitName         = "trellis-init"
	TokenVolume      = "istio-token"
	TokenDir         = "/var/run/secrets/tokens"
	TokenAudience    = "istio-ca"
	DefaultXDS       = "trellis.trellis-system.svc:15012"
	ImageRepo        = "ghcr.io/trellismesh/trellis-proxy"
	StatusAnnotation = "sidecar.istio.io/status"
	InjectKey        = "sidecar.istio.io/inject"

	statusPort    = 15020
	readinessPort = 15021
	promPort      = 15090
	proxyUID      = 1337
)

// Istio's annotations that change the injected pod.
const (
	annIncludeOutbound = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	annExcludeOutbound = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	annExcludeInPorts  = "traffic.sidecar.istio.io/excludeInboundPorts"
	annExcludeOutPorts = "traffic.sidecar.istio.io/excludeOutboundPorts"
	annInterception    = "sidecar.istio.io/interceptionMode"
	annProxyConfig     = "proxy.istio.io/config"
	annRewriteProbes   = "sidecar.istio.io/rewriteAppHTTPProbers"
	annCPU             = "sidecar.istio.io/proxyCPU"
	annMemory          = "sidecar.istio.io/proxyMemory"
	annCPULimit        = "sidecar.istio.io/proxyCPULimit"
	annMemoryLimit     = "sidecar.istio.io/proxyMemoryLimit"
)

// Options are the injection settings that do not come from the pod.
type Options struct {
	// NativeSidecars injects the proxy as an init container with
	// restartPolicy Always (Kubernetes >= 1.29); otherwise as the first
	// container, holding the app until it is ready.
	NativeSidecars bool
	// Version is the proxy image tag; "" is "latest".
	Version string
	// XDSAddress is the control plane; "" is DefaultXDS.
	XDSAddress string
	// WorkloadName is the pod's owner (e.g. its Deployment), for the
	// proxy's WORKLOAD_NAME; "" leaves it unset.
	WorkloadName string
}

// FieldError is bad input at a path in the pod (template), e.g.
// metadata.annotations["traffic.sidecar.istio.io/excludeInboundPorts"];
// callers holding the pod inside a larger object prefix Field.
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

func annPath(key string) string { return fmt.Sprintf("metadata.annotations[%q]", key) }

// Skipped says why a pod is not injected ("" when it should be).
func Skipped(spec *corev1.PodSpec, meta *metav1.ObjectMeta) string {
	if meta.Labels[InjectKey] == "false" || meta.Annotations[InjectKey] == "false" {
		return InjectKey + `: "false"`
	}
	if spec.HostNetwork {
		// Capture would rewrite the node's own network (Istio skips these too).
		return "hostNetwork pod"
	}
	if Injected(spec) {
		return "already injected"
	}
	return ""
}

// Injected reports whether the pod already has the sidecar.
func Injected(spec *corev1.PodSpec) bool {
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			if c.Name == ProxyName {
				return true
			}
		}
	}
	return false
}

// capture is the traffic capture the init container sets up.
type capture struct {
	mode                        string
	includeOutbound, excludeOut string
	excludeIn, excludeOutPorts  string
}

// Pod injects the sidecar into a pod (or pod template) in place. It
// changes nothing, and returns false, when the pod opted out, is on the
// host network or is already injected; so injecting twice is a no-op.
// Bad annotations are *FieldError, and then the pod is untouched.
func Pod(spec *corev1.PodSpec, meta *metav1.ObjectMeta, opts Options) (bool, error) {
	if Skipped(spec, meta) != "" {
		return false, nil
	}
	ann := meta.Annotations
	capt, err := parseCapture(ann)
	if err != nil {
		return false, err
	}
	res, err := parseResources(ann)
	if err != nil {
		return false, err
	}
	if pc, ok := ann[annProxyConfig]; ok {
		var v map[string]any
		if err := json.Unmarshal([]byte(toJSONish(pc)), &v); err != nil {
			return false, &FieldError{annPath(annProxyConfig), fmt.Sprintf("%q is not a ProxyConfig (YAML or JSON object)", pc)}
		}
	}
	// Work on copies so an error leaves the pod as it was.
	containers := slices.Clone(spec.Containers)
	probers, err := rewriteProbes(containers, ann)
	if err != nil {
		return false, err
	}

	proxy := proxyContainer(spec, meta, opts, capt, res, probers)
	var inits []corev1.Container
	if capt.mode != "NONE" {
		inits = append(inits, initContainer(capt, opts))
	}
	st := status{Revision: "default"}
	if opts.NativeSidecars {
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		inits = append(inits, proxy)
	} else {
		// First, with a postStart hook that returns only once the proxy is
		// ready: the kubelet starts containers in order and waits for the
		// hook, so the app starts with a working mesh (Istio's
		// holdApplicationUntilProxyStarts).
		proxy.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
			Exec: &corev1.ExecAction{Command: []string{"trellis-proxy", "wait"}},
		}}
		containers = append([]corev1.Container{proxy}, containers...)
		st.Containers = []string{ProxyName}
	}
	for _, c := range inits {
		st.InitContainers = append(st.InitContainers, c.Name)
	}
	st.Volumes = []string{TokenVolume}

	spec.InitContainers = append(inits, spec.InitContainers...)
	spec.Containers = containers
	expiry := int64(43200)
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: TokenVolume, VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
			ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: TokenAudience, ExpirationSeconds: &expiry, Path: TokenVolume},
		}}},
	}})
	b, _ := json.Marshal(st) // plain struct: cannot fail
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[StatusAnnotation] = string(b)
	return true, nil
}

// status is Istio's sidecar.istio.io/status annotation: what injection
// added, so tools (and uninjection) can find it.
type status struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

// toJSONish accepts proxy.istio.io/config as Istio does: YAML or JSON.
// Only a syntax check is made here; the proxy reads PROXY_CONFIG.
func toJSONish(s string) string {
	j, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		return s
	}
	return string(j)
}

func parseCapture(ann map[string]string) (capture, error) {
	c := capture{mode: "REDIRECT", includeOutbound: "*"}
	if v, ok := ann[annInterception]; ok {
		switch v {
		case "REDIRECT", "NONE":
			c.mode = v
		case "TPROXY":
			return c, &FieldError{annPath(annInterception), `"TPROXY" is not supported yet: use REDIRECT (the default) or NONE`}
		default:
			return c, &FieldError{annPath(annInterception), fmt.Sprintf("%q is not an interception mode: use REDIRECT or NONE", v)}
		}
	}
	var err error
	if v, ok := ann[annIncludeOutbound]; ok {
		if c.includeOutbound, err = cidrs(annIncludeOutbound, v, true); err != nil {
			return c, err
		}
	}
	if v, ok := ann[annExcludeOutbound]; ok {
		if c.excludeOut, err = cidrs(annExcludeOutbound, v, false); err != nil {
			return c, err
		}
	}
	if v, ok := ann[annExcludeInPorts]; ok {
		if c.excludeIn, err = ports(annExcludeInPorts, v); err != nil {
			return c, err
		}
	}
	if v, ok := ann[annExcludeOutPorts]; ok {
		if c.excludeOutPorts, err = ports(annExcludeOutPorts, v); err != nil {
			return c, err
		}
	}
	return c, nil
}

// cidrs checks a comma-separated CIDR list ("*" for all where allowed)
// and returns it normalised.
func cidrs(key, v string, star bool) (string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if s == "*" && star {
			out = append(out, s)
			continue
		}
		if _, err := netip.ParsePrefix(s); err != nil {
			return "", &FieldError{annPath(key), fmt.Sprintf("%q is not a CIDR (e.g. 10.0.0.0/8)", s)}
		}
		out = append(out, s)
	}
	return strings.Join(out, ","), nil
}

func ports(key, v string) (string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return "", &FieldError{annPath(key), fmt.Sprintf("%q is not a port (1-65535)", s)}
		}
		out = append(out, s)
	}
	return strings.Join(out, ","), nil
}

func parseResources(ann map[string]string) (corev1.ResourceRequirements, error) {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("100m"),
		corev1.ResourceMemory: resource.MustParse("128Mi"),
	}}
	for _, a := range []struct {
		key  string
		name corev1.ResourceName
		list *corev1.ResourceList
	}{
		{annCPU, corev1.ResourceCPU, &r.Requests},
		{annMemory, corev1.ResourceMemory, &r.Requests},
		{annCPULimit, corev1.ResourceCPU, &r.Limits},
		{annMemoryLimit, corev1.ResourceMemory, &r.Limits},
	} {
		v, ok := ann[a.key]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			return r, &FieldError{annPath(a.key), fmt.Sprintf("%q is not a quantity (e.g. 100m, 128Mi)", v)}
		}
		if *a.list == nil {
			*a.list = corev1.ResourceList{}
		}
		(*a.list)[a.name] = q
	}
	return r, nil
}

func initContainer(c capture, opts Options) corev1.Container {
	f, t := false, true
	root := int64(0)
	// Istio's three status/telemetry ports are never captured inbound, so
	// kubelet probes and scrapes reach the proxy itself.
	inPorts := strings.Trim(fmt.Sprintf("%d,%d,%d,%s", statusPort, readinessPort, promPort, c.excludeIn), ",")
	return corev1.Container{
		Name:  InitName,
		Image: image(opts),
		Args: []string{
			"init",
			"--mode=" + c.mode,
			"--proxy-uid=" + strconv.Itoa(proxyUID),
			"--include-outbound-ip-ranges=" + c.includeOutbound,
			"--exclude-outbound-ip-ranges=" + c.excludeOut,
			"--exclude-inbound-ports=" + inPorts,
			"--exclude-outbound-ports=" + c.excludeOutPorts,
		},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("10Mi"),
		}},
		SecurityContext: &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			RunAsUser:                &root,
			RunAsNonRoot:             &f,
			Privileged:               &f,
			AllowPrivilegeEscalation: &f,
			ReadOnlyRootFilesystem:   &t,
		},
	}
}

func proxyContainer(spec *corev1.PodSpec, meta *metav1.ObjectMeta, opts Options, c capture, res corev1.ResourceRequirements, probers string) corev1.Container {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	xds := opts.XDSAddress
	if xds == "" {
		xds = DefaultXDS
	}
	env := []corev1.EnvVar{
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("POD_IP", "status.podIP"),
		field("INSTANCE_IP", "status.podIP"),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		{Name: "XDS_ADDRESS", Value: xds},
		{Name: "INTERCEPTION_MODE", Value: c.mode},
		// The mesh root, from the ConfigMap Istio's control plane
		// publishes in every namespace under this name.
		{Name: "XDS_ROOT_CA", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-root-cert"}, Key: "root-cert.pem",
		}}},
		{Name: "TRELLIS_CREDENTIAL_FILE", Value: TokenDir + "/" + TokenVolume},
	}
	if l := labelList(meta.Labels); l != "" {
		// The downward API has no env form of all labels; the template's
		// labels are the pod's at creation.
		env = append(env, corev1.EnvVar{Name: "POD_LABELS", Value: l})
	}
	if opts.WorkloadName != "" {
		env = append(env, corev1.EnvVar{Name: "WORKLOAD_NAME", Value: opts.WorkloadName})
	}
	if probers != "" {
		env = append(env, corev1.EnvVar{Name: apphealth.EnvName, Value: probers})
	}
	if pc, ok := meta.Annotations[annProxyConfig]; ok {
		env = append(env, corev1.EnvVar{Name: "PROXY_CONFIG", Value: pc})
	}
	f, t := false, true
	uid := int64(proxyUID)
	ready := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz/ready", Port: intstr.FromInt32(readinessPort), Scheme: corev1.URISchemeHTTP,
			}},
			TimeoutSeconds: 3, PeriodSeconds: period, FailureThreshold: failures, SuccessThreshold: 1,
		}
	}
	return corev1.Container{
		Name:  ProxyName,
		Image: image(opts),
		Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: promPort, Protocol: corev1.ProtocolTCP}},
		Env:   env,
		// 600 x 1 s: a proxy gets ten minutes to become ready, as Istio's.
		StartupProbe:   ready(1, 600),
		ReadinessProbe: ready(15, 4),
		Resources:      res,
		VolumeMounts:   []corev1.VolumeMount{{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true}},
		SecurityContext: &corev1.SecurityContext{
			// UID 1337 is what the capture rules exempt, so the proxy's own
			// traffic is not captured again.
			RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &t,
			AllowPrivilegeEscalation: &f, Privileged: &f, ReadOnlyRootFilesystem: &t,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

func image(opts Options) string {
	v := opts.Version
	if v == "" {
		v = "latest"
	}
	return ImageRepo + ":" + v
}

func labelList(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + l[k])
	}
	return b.String()
}

// rewriteProbes points each app container's httpGet, tcpSocket and grpc
// probes at the sidecar's /app-health/CONTAINER/readyz|livez|startupz on
// :15020 and returns the originals as ISTIO_KUBE_APP_PROBERS (the same
// contract internal/local uses and internal/proxy/apphealth serves), so
// probes pass under STRICT mTLS. exec probes are left alone.
func rewriteProbes(cs []corev1.Container, ann map[string]string) (string, error) {
	if v, err := strconv.ParseBool(ann[annRewriteProbes]); err == nil && !v {
		return "", nil
	}
	probers := apphealth.Probers{}
	for i := range cs {
		c := cs[i]
		for _, k := range []struct {
			p     **corev1.Probe
			kind  string
			field string
		}{{&c.ReadinessProbe, "readyz", "readinessProbe"}, {&c.LivenessProbe, "livez", "livenessProbe"}, {&c.StartupProbe, "startupz", "startupProbe"}} {
			orig := *k.p
			if orig == nil || orig.Exec != nil {
				continue
			}
			at := fmt.Sprintf("spec.containers[%d].%s", i, k.field)
			pr := &apphealth.Prober{TimeoutSeconds: orig.TimeoutSeconds}
			switch {
			case orig.HTTPGet != nil:
				port, err := resolvePort(c, orig.HTTPGet.Port, at+".httpGet.port")
				if err != nil {
					return "", err
				}
				g := &apphealth.HTTPGetAction{Path: orig.HTTPGet.Path, Port: apphealth.Port(port), Host: orig.HTTPGet.Host, Scheme: string(orig.HTTPGet.Scheme)}
				for _, h := range orig.HTTPGet.HTTPHeaders {
					g.HTTPHeaders = append(g.HTTPHeaders, apphealth.HTTPHeader{Name: h.Name, Value: h.Value})
				}
				pr.HTTPGet = g
			case orig.TCPSocket != nil:
				port, err := resolvePort(c, orig.TCPSocket.Port, at+".tcpSocket.port")
				if err != nil {
					return "", err
				}
				pr.TCPSocket = &apphealth.TCPSocketAction{Port: apphealth.Port(port), Host: orig.TCPSocket.Host}
			case orig.GRPC != nil:
				svc := ""
				if orig.GRPC.Service != nil {
					svc = *orig.GRPC.Service
				}
				pr.GRPC = &apphealth.GRPCAction{Port: orig.GRPC.Port, Service: &svc}
			default:
				continue
			}
			path := "/app-health/" + c.Name + "/" + k.kind
			probers[path] = pr
			rw := orig.DeepCopy()
			rw.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(statusPort), Scheme: corev1.URISchemeHTTP,
			}}
			*k.p = rw
		}
		cs[i] = c
	}
	if len(probers) == 0 {
		return "", nil
	}
	b, _ := json.Marshal(probers) // plain structs: cannot fail
	return string(b), nil
}

// resolvePort turns a named port into the container's number, as the
// kubelet would; the sidecar needs a number.
func resolvePort(c corev1.Container, p intstr.IntOrString, at string) (int32, error) {
	if p.Type == intstr.Int {
		return p.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return int32(n), nil
	}
	return 0, &FieldError{at, fmt.Sprintf("port %q is not a port of container %q", p.StrVal, c.Name)}
}
