package local

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/field"
)

// Istio's pod annotation (also accepted as a label) that turns sidecar
// injection off for one workload.
const injectAnnotation = "sidecar.istio.io/inject"

// TLSModeLabel marks pods whose sidecar accepts mesh traffic; peers tunnel
// to pods that carry it (Istio's injector adds the same label).
const TLSModeLabel = "security.istio.io/tlsMode"

// SidecarPorts are the ports the sidecar binds on the pod IP; an app
// container may not claim them.
var SidecarPorts = []int32{15000, 15001, 15006, 15008, 15020, 15021, 15090}

// Workload is one Deployment, ready to be run as Replicas pods.
type Workload struct {
	Namespace, Name string
	Source          config.Source
	Replicas        int
	// Hash changes whenever the pod template does: a new hash rolls pods.
	Hash string
	Pod  PodTemplate
}

// PodTemplate is what every pod of a workload runs.
type PodTemplate struct {
	Labels         map[string]string
	Annotations    map[string]string
	ServiceAccount string
	Sidecar        bool
	// Proxyless: no sidecar, the pod's grpc-go apps get the mesh
	// identity and an xDS bootstrap instead (proxyless.go).
	Proxyless      bool
	InitContainers []Container
	Containers     []Container
	GracePeriod    time.Duration
	RestartPolicy  corev1.RestartPolicy
	// Spec is the pod spec as written, for the Pod objects the control
	// plane sees (ports for named targetPorts, service account).
	Spec *corev1.PodSpec
}

// Container is one process of a pod.
type Container struct {
	Name string
	// Command is command followed by args, with $(VAR) references still
	// in place: they are expanded against the pod's env when it starts.
	Command    []string
	WorkingDir string
	Env        []EnvVar
	Ports      []corev1.ContainerPort
	Readiness  *Probe
	Liveness   *Probe
	Startup    *Probe
}

// EnvVar is a container environment variable. Exactly one of Value and
// Field is meaningful: Field is a downward-API path filled in when the pod
// starts (its IP is known only then).
type EnvVar struct {
	Name, Value, Field string
	// Literal values (from a ConfigMap) are used as they are: the kubelet
	// expands $(VAR) only in env[].value, command and args.
	Literal bool
}

// Probe is a readiness, liveness or startup probe, run from outside the
// pod as a kubelet would.
type Probe struct {
	// One of HTTPGet (Path, Scheme, Headers), TCP or Exec (Command).
	HTTPGet bool
	TCP     bool
	Exec    []string
	Port    int32
	Path    string
	Scheme  string
	Host    string
	Headers [][2]string

	InitialDelay, Period, Timeout time.Duration
	SuccessThreshold              int
	FailureThreshold              int
}

// Plan turns the Deployments among objs into workloads, sorted by
// namespace and name. Every problem that would stop a pod from running
// locally is returned as a *config.Error naming the field.
func Plan(objs []*config.Object) ([]*Workload, []error) {
	configMaps := map[[2]string]*corev1.ConfigMap{}
	for _, o := range objs {
		if cm, ok := o.Spec.(*corev1.ConfigMap); ok {
			configMaps[[2]string{o.Namespace, o.Name}] = cm
		}
	}
	var (
		out  []*Workload
		errs []error
	)
	for _, o := range objs {
		d, ok := o.Spec.(*appsv1.Deployment)
		if !ok || o.GroupKind != config.Deployment {
			continue
		}
		w, fe := planDeployment(o, d, configMaps)
		for _, e := range fe {
			errs = append(errs, &config.Error{Source: o.Source, Object: o.ID(), Err: e})
		}
		if len(fe) == 0 {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, errs
}

func planDeployment(o *config.Object, d *appsv1.Deployment, configMaps map[[2]string]*corev1.ConfigMap) (*Workload, field.List) {
	var errs field.List
	tp := field.NewPath("spec", "template")
	sp := tp.Child("spec")
	tmpl := &d.Spec.Template
	spec := &tmpl.Spec

	w := &Workload{Namespace: o.Namespace, Name: o.Name, Source: o.Source, Replicas: 1}
	if d.Spec.Replicas != nil {
		w.Replicas = int(*d.Spec.Replicas)
	}
	if spec.HostNetwork {
		errs.Add(sp.Child("hostNetwork"), "not supported in local mode: every pod gets its own IP; remove it")
	}

	pt := PodTemplate{
		Labels:         map[string]string{},
		Annotations:    map[string]string{},
		ServiceAccount: spec.ServiceAccountName,
		Sidecar:        true,
		GracePeriod:    30 * time.Second,
		RestartPolicy:  spec.RestartPolicy,
		Spec:           spec,
	}
	if pt.ServiceAccount == "" {
		pt.ServiceAccount = spec.DeprecatedServiceAccount
	}
	if pt.ServiceAccount == "" {
		pt.ServiceAccount = "default"
	}
	if pt.RestartPolicy == "" {
		pt.RestartPolicy = corev1.RestartPolicyAlways
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		pt.GracePeriod = time.Duration(*g) * time.Second
	}
	for k, v := range tmpl.Labels {
		pt.Labels[k] = v
	}
	for k, v := range tmpl.Annotations {
		pt.Annotations[k] = v
	}
	// Istio reads the label first, then the annotation.
	inject := tmpl.Annotations[injectAnnotation]
	if v, ok := tmpl.Labels[injectAnnotation]; ok {
		inject = v
	}
	switch strings.ToLower(inject) {
	case "", "true", "y", "yes", "on":
	case "false", "n", "no", "off":
		pt.Sidecar = false
	default:
		errs.Add(tp.Child("metadata", "annotations").Key(injectAnnotation), "%q: use \"true\" or \"false\"", inject)
	}
	if pt.Sidecar && isProxyless(pt.Annotations) {
		// Istio's grpc-agent template instead of a sidecar.
		pt.Sidecar, pt.Proxyless = false, true
		if _, set := pt.Labels[TLSModeLabel]; !set {
			pt.Labels[TLSModeLabel] = "istio"
		}
	}
	if pt.Sidecar {
		pt.Labels[TLSModeLabel] = "istio"
	}

	// Every container of a pod shares its IP, so their ports must differ,
	// and with a sidecar they must leave its ports free.
	portOwner := map[int32]string{}
	if pt.Sidecar {
		for _, p := range SidecarPorts {
			portOwner[p] = "the trellis-proxy sidecar"
		}
	}
	for i := range spec.InitContainers {
		c, ce := planContainer(sp.Child("initContainers").Index(i), o.Namespace, &spec.InitContainers[i], configMaps, nil)
		errs.Append(ce...)
		pt.InitContainers = append(pt.InitContainers, c)
	}
	for i := range spec.Containers {
		c, ce := planContainer(sp.Child("containers").Index(i), o.Namespace, &spec.Containers[i], configMaps, portOwner)
		errs.Append(ce...)
		pt.Containers = append(pt.Containers, c)
	}
	w.Pod = pt
	w.Hash = templateHash(tmpl)
	return w, errs
}

func planContainer(p *field.Path, ns string, c *corev1.Container, configMaps map[[2]string]*corev1.ConfigMap, portOwner map[int32]string) (Container, field.List) {
	var errs field.List
	out := Container{Name: c.Name, WorkingDir: c.WorkingDir}
	if len(c.Command) == 0 {
		hint := ""
		if len(c.Args) > 0 {
			hint = " (args are only the arguments)"
		}
		errs.Add(p.Child("command"), "required in local mode: trellis up runs the command as a local process and ignores the image %q%s; set e.g. command: [\"my-server\", \"--port=8080\"]", c.Image, hint)
	}
	out.Command = append(append([]string(nil), c.Command...), c.Args...)

	for i, ef := range c.EnvFrom {
		ep := p.Child("envFrom").Index(i)
		switch {
		case ef.ConfigMapRef != nil:
			cm := configMaps[[2]string{ns, ef.ConfigMapRef.Name}]
			if cm == nil {
				if ef.ConfigMapRef.Optional == nil || !*ef.ConfigMapRef.Optional {
					errs.Add(ep.Child("configMapRef", "name"), "ConfigMap %s/%s is not in the folder: add it, or mark the reference optional", ns, ef.ConfigMapRef.Name)
				}
				continue
			}
			keys := make([]string, 0, len(cm.Data))
			for k := range cm.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				out.Env = append(out.Env, EnvVar{Name: ef.Prefix + k, Value: cm.Data[k], Literal: true})
			}
		case ef.SecretRef != nil:
			errs.Add(ep.Child("secretRef"), "Secrets are not read in local mode: put the values in env or a ConfigMap")
		}
	}
	for i, e := range c.Env {
		ep := p.Child("env").Index(i)
		vf := e.ValueFrom
		switch {
		case vf == nil:
			out.Env = append(out.Env, EnvVar{Name: e.Name, Value: e.Value})
		case vf.FieldRef != nil:
			fp := vf.FieldRef.FieldPath
			if !downwardField(fp) {
				errs.Add(ep.Child("valueFrom", "fieldRef", "fieldPath"), "%q is not available in local mode: use status.podIP, status.podIPs, status.hostIP, metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'] or spec.serviceAccountName", fp)
				continue
			}
			out.Env = append(out.Env, EnvVar{Name: e.Name, Field: fp})
		case vf.ConfigMapKeyRef != nil:
			r := vf.ConfigMapKeyRef
			optional := r.Optional != nil && *r.Optional
			cm := configMaps[[2]string{ns, r.Name}]
			v, ok := "", false
			if cm != nil {
				v, ok = cm.Data[r.Key]
			}
			if !ok {
				if !optional {
					errs.Add(ep.Child("valueFrom", "configMapKeyRef"), "ConfigMap %s/%s with key %q is not in the folder: add it, or mark the reference optional", ns, r.Name, r.Key)
				}
				continue
			}
			out.Env = append(out.Env, EnvVar{Name: e.Name, Value: v, Literal: true})
		case vf.SecretKeyRef != nil:
			errs.Add(ep.Child("valueFrom", "secretKeyRef"), "Secrets are not read in local mode: put the value in env or a ConfigMap")
		case vf.ResourceFieldRef != nil:
			errs.Add(ep.Child("valueFrom", "resourceFieldRef"), "resource limits do not exist in local mode: set the value directly")
		}
	}

	if portOwner != nil {
		for i, port := range c.Ports {
			pp := p.Child("ports").Index(i).Child("containerPort")
			if owner, taken := portOwner[port.ContainerPort]; taken {
				errs.Add(pp, "port %d is already used in this pod by %s: every container of a pod shares one IP, so pick another port", port.ContainerPort, owner)
				continue
			}
			portOwner[port.ContainerPort] = fmt.Sprintf("container %q", c.Name)
		}
		out.Ports = c.Ports
	}

	var pe field.List
	out.Readiness = planProbe(&pe, p.Child("readinessProbe"), c.ReadinessProbe, c.Ports)
	out.Liveness = planProbe(&pe, p.Child("livenessProbe"), c.LivenessProbe, c.Ports)
	out.Startup = planProbe(&pe, p.Child("startupProbe"), c.StartupProbe, c.Ports)
	errs.Append(pe...)
	return out, errs
}

// downwardField says whether a fieldRef path can be filled locally.
func downwardField(fp string) bool {
	switch fp {
	case "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs", "metadata.name", "metadata.namespace", "metadata.uid", "spec.serviceAccountName", "spec.nodeName":
		return true
	}
	return (strings.HasPrefix(fp, "metadata.labels['") || strings.HasPrefix(fp, "metadata.annotations['")) && strings.HasSuffix(fp, "']")
}

func planProbe(errs *field.List, p *field.Path, pr *corev1.Probe, ports []corev1.ContainerPort) *Probe {
	if pr == nil {
		return nil
	}
	out := &Probe{
		InitialDelay:     time.Duration(pr.InitialDelaySeconds) * time.Second,
		Period:           seconds(pr.PeriodSeconds, 10),
		Timeout:          seconds(pr.TimeoutSeconds, 1),
		SuccessThreshold: int(pr.SuccessThreshold),
		FailureThreshold: int(pr.FailureThreshold),
	}
	if out.SuccessThreshold <= 0 {
		out.SuccessThreshold = 1
	}
	if out.FailureThreshold <= 0 {
		out.FailureThreshold = 3
	}
	switch h := pr.ProbeHandler; {
	case h.HTTPGet != nil:
		out.HTTPGet = true
		out.Port = probePort(errs, p.Child("httpGet", "port"), h.HTTPGet.Port, ports)
		out.Path = h.HTTPGet.Path
		if out.Path == "" {
			out.Path = "/"
		}
		out.Scheme = string(h.HTTPGet.Scheme)
		if out.Scheme == "" {
			out.Scheme = "HTTP"
		}
		out.Host = h.HTTPGet.Host
		for _, hd := range h.HTTPGet.HTTPHeaders {
			out.Headers = append(out.Headers, [2]string{hd.Name, hd.Value})
		}
	case h.TCPSocket != nil:
		out.TCP = true
		out.Port = probePort(errs, p.Child("tcpSocket", "port"), h.TCPSocket.Port, ports)
		out.Host = h.TCPSocket.Host
	case h.Exec != nil:
		if len(h.Exec.Command) == 0 {
			errs.Append(field.Required(p.Child("exec", "command")))
		}
		out.Exec = h.Exec.Command
	case h.GRPC != nil:
		// A gRPC health check is an HTTP/2 request; probing the port's TCP
		// accept is the nearest thing that needs no gRPC client here.
		out.TCP = true
		out.Port = h.GRPC.Port
	default:
		errs.Add(p, "must set one of httpGet, tcpSocket, exec or grpc")
	}
	return out
}

func probePort(errs *field.List, p *field.Path, port intstr.IntOrString, ports []corev1.ContainerPort) int32 {
	if port.Type == intstr.Int {
		return port.IntVal
	}
	for _, cp := range ports {
		if cp.Name == port.StrVal {
			return cp.ContainerPort
		}
	}
	errs.Add(p, "no container port is named %q: name one in ports, or give the number", port.StrVal)
	return 0
}

func seconds(v int32, def int) time.Duration {
	if v <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(v) * time.Second
}

// templateHash identifies a pod template's content, as Kubernetes'
// pod-template-hash does, so an edit of any field rolls the pods.
func templateHash(t *corev1.PodTemplateSpec) string {
	b, err := json.Marshal(t)
	if err != nil {
		// A decoded object always marshals; be loud if that ever changes.
		panic(fmt.Sprintf("local: pod template does not marshal: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:5])
}
