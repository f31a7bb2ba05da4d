package kubeapi

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trellismesh/trellis/internal/config/field"
	"github.com/trellismesh/trellis/internal/config/validate"
)

// These checks reject what the Kubernetes API server would reject, so a
// folder that works with `trellis up` also applies to a cluster, plus what
// Trellis itself relies on (named ports it can resolve, the downward API
// fields local pods fill in, EndpointSlices it can attach to a Service).

// Namespace checks one Namespace.
func Namespace(m validate.Meta, ns *corev1.Namespace) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &ns.ObjectMeta)
	// Namespaces appear as one DNS label in Service names
	// (reviews.ns.svc.cluster.local), stricter than the subdomain the
	// decoder checks for every object.
	kubeMsgs(&errs, field.NewPath("metadata", "name"), ns.Name, "Namespace name", validation.IsDNS1123Label(ns.Name))
	for i, f := range ns.Spec.Finalizers {
		kubeMsgs(&errs, field.NewPath("spec", "finalizers").Index(i), string(f), "finalizer", validation.IsQualifiedName(string(f)))
	}
	return errs
}

// Service checks one Service.
func Service(m validate.Meta, svc *corev1.Service) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &svc.ObjectMeta)
	// Service names become DNS labels and environment variable prefixes.
	kubeMsgs(&errs, field.NewPath("metadata", "name"), svc.Name, "Service name", validation.IsDNS1035Label(svc.Name))

	spec := &svc.Spec
	sp := field.NewPath("spec")
	typ := spec.Type
	switch typ {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		errs.Add(sp.Child("type"), "%q is not a Service type: use ClusterIP, NodePort, LoadBalancer or ExternalName", typ)
	}
	external := typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer
	headless := spec.ClusterIP == corev1.ClusterIPNone

	if typ == corev1.ServiceTypeExternalName {
		if spec.ExternalName == "" {
			errs.Add(sp.Child("externalName"), "required when type is ExternalName: set the DNS name this Service aliases")
		} else {
			kubeMsgs(&errs, sp.Child("externalName"), spec.ExternalName, "DNS name", validation.IsDNS1123Subdomain(strings.TrimSuffix(spec.ExternalName, ".")))
		}
		if spec.ClusterIP != "" {
			errs.Add(sp.Child("clusterIP"), "must not be set when type is ExternalName")
		}
	} else if len(spec.Ports) == 0 && !headless {
		errs.Add(sp.Child("ports"), "required: list at least one port (only a headless Service, clusterIP: None, may have none)")
	}

	if spec.ClusterIP != "" && !headless {
		kubeIP(&errs, sp.Child("clusterIP"), spec.ClusterIP, kubeAnyIP)
	}
	if headless && external {
		errs.Add(sp.Child("clusterIP"), "may not be None when type is %s", typ)
	}
	if len(spec.ClusterIPs) > 2 {
		errs.Add(sp.Child("clusterIPs"), "must have at most 2 items (one per IP family)")
	}
	for i, ip := range spec.ClusterIPs {
		p := sp.Child("clusterIPs").Index(i)
		switch {
		case i == 0 && spec.ClusterIP != "" && ip != spec.ClusterIP:
			errs.Add(p, "must equal spec.clusterIP (%s)", spec.ClusterIP)
		case ip == corev1.ClusterIPNone:
			if len(spec.ClusterIPs) > 1 {
				errs.Add(p, "None must be the only item")
			}
		default:
			kubeIP(&errs, p, ip, kubeAnyIP)
		}
	}

	names := kubeDuplicate{}
	numbers := kubeDuplicate{}
	for i := range spec.Ports {
		port := &spec.Ports[i]
		pp := sp.Child("ports").Index(i)
		if port.Name == "" {
			if len(spec.Ports) > 1 {
				errs.Add(pp.Child("name"), "required when a Service has more than one port")
			}
		} else {
			kubeMsgs(&errs, pp.Child("name"), port.Name, "port name", validation.IsDNS1123Label(port.Name))
			names.seen(&errs, pp.Child("name"), port.Name, "port name")
		}
		kubePort(&errs, pp.Child("port"), port.Port)
		kubeProtocol(&errs, pp.Child("protocol"), string(port.Protocol))
		proto := port.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		numbers.seen(&errs, pp, fmt.Sprintf("%d/%s", port.Port, proto), "port")
		kubeTargetPort(&errs, pp.Child("targetPort"), port.TargetPort)
		if port.NodePort != 0 {
			if external {
				kubePort(&errs, pp.Child("nodePort"), port.NodePort)
			} else {
				errs.Add(pp.Child("nodePort"), "may only be set when type is NodePort or LoadBalancer")
			}
		}
		if port.AppProtocol != nil {
			kubeMsgs(&errs, pp.Child("appProtocol"), *port.AppProtocol, "appProtocol", validation.IsQualifiedName(*port.AppProtocol))
		}
	}

	kubeLabels(&errs, sp.Child("selector"), spec.Selector)

	switch spec.SessionAffinity {
	case "", corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		errs.Add(sp.Child("sessionAffinity"), "%q is not a session affinity: use None or ClientIP", spec.SessionAffinity)
	}
	if p := spec.ExternalTrafficPolicy; p != "" {
		if !external {
			errs.Add(sp.Child("externalTrafficPolicy"), "may only be set when type is NodePort or LoadBalancer")
		} else if p != "Cluster" && p != "Local" {
			errs.Add(sp.Child("externalTrafficPolicy"), "%q is not a traffic policy: use Cluster or Local", p)
		}
	}
	if p := spec.InternalTrafficPolicy; p != nil && *p != "Cluster" && *p != "Local" {
		errs.Add(sp.Child("internalTrafficPolicy"), "%q is not a traffic policy: use Cluster or Local", *p)
	}
	if p := spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack:
		default:
			errs.Add(sp.Child("ipFamilyPolicy"), "%q is not an IP family policy: use SingleStack, PreferDualStack or RequireDualStack", *p)
		}
	}
	if len(spec.IPFamilies) > 2 {
		errs.Add(sp.Child("ipFamilies"), "must have at most 2 items")
	}
	families := kubeDuplicate{}
	for i, f := range spec.IPFamilies {
		p := sp.Child("ipFamilies").Index(i)
		if f != corev1.IPv4Protocol && f != corev1.IPv6Protocol {
			errs.Add(p, "%q is not an IP family: use IPv4 or IPv6", f)
			continue
		}
		families.seen(&errs, p, string(f), "IP family")
	}
	for i, ip := range spec.ExternalIPs {
		kubeIP(&errs, sp.Child("externalIPs").Index(i), ip, kubeAnyIP)
	}
	if len(spec.LoadBalancerSourceRanges) > 0 && typ != corev1.ServiceTypeLoadBalancer {
		errs.Add(sp.Child("loadBalancerSourceRanges"), "may only be set when type is LoadBalancer")
	}
	for i, r := range spec.LoadBalancerSourceRanges {
		if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
			errs.Add(sp.Child("loadBalancerSourceRanges").Index(i), "%q is not a CIDR such as 10.0.0.0/8", r)
		}
	}
	return errs
}

// kubeTargetPort checks a Service targetPort: a number, or the name of a
// port that the selected pods' containers declare. Zero means "same as
// port", which the API server fills in.
func kubeTargetPort(errs *field.List, p *field.Path, tp intstr.IntOrString) {
	if tp.Type == intstr.Int {
		if tp.IntVal != 0 {
			kubePort(errs, p, tp.IntVal)
		}
		return
	}
	kubeMsgs(errs, p, tp.StrVal, "port name", validation.IsValidPortName(tp.StrVal))
}

// ServiceAccount checks one ServiceAccount.
func ServiceAccount(m validate.Meta, sa *corev1.ServiceAccount) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &sa.ObjectMeta)
	for i, s := range sa.ImagePullSecrets {
		if s.Name == "" {
			errs.Append(field.Required(field.NewPath("imagePullSecrets").Index(i).Child("name")))
		}
	}
	return errs
}

// kubeConfigMapMaxBytes is the API server's limit on a ConfigMap's data
// (etcd's request limit, less room for metadata).
const kubeConfigMapMaxBytes = 1 << 20

// ConfigMap checks one ConfigMap.
func ConfigMap(m validate.Meta, cm *corev1.ConfigMap) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &cm.ObjectMeta)
	size := 0
	for _, k := range kubeSortedKeys(cm.Data) {
		kubeMsgs(&errs, field.NewPath("data").Key(k), k, "key", validation.IsConfigMapKey(k))
		size += len(k) + len(cm.Data[k])
	}
	for _, k := range kubeSortedKeys(cm.BinaryData) {
		p := field.NewPath("binaryData").Key(k)
		kubeMsgs(&errs, p, k, "key", validation.IsConfigMapKey(k))
		if _, dup := cm.Data[k]; dup {
			errs.Add(p, "duplicate key %q: it is also in data; keep it in one of data and binaryData", k)
		}
		size += len(k) + len(cm.BinaryData[k])
	}
	if size > kubeConfigMapMaxBytes {
		errs.Add(field.NewPath("data"), "holds %d bytes, over the 1 MiB (%d bytes) a ConfigMap may hold: split it or mount the content another way", size, kubeConfigMapMaxBytes)
	}
	return errs
}

// Pod checks one Pod.
func Pod(m validate.Meta, pod *corev1.Pod) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &pod.ObjectMeta)
	kubePodSpec(&errs, field.NewPath("spec"), &pod.Spec)
	return errs
}

// Deployment checks one Deployment.
func Deployment(m validate.Meta, d *appsv1.Deployment) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &d.ObjectMeta)
	sp := field.NewPath("spec")
	spec := &d.Spec
	if spec.Replicas != nil && *spec.Replicas < 0 {
		errs.Add(sp.Child("replicas"), "must be >= 0")
	}

	tp := sp.Child("template")
	kubeLabels(&errs, tp.Child("metadata", "labels"), spec.Template.Labels)
	kubeAnnotations(&errs, tp.Child("metadata", "annotations"), spec.Template.Annotations)
	if spec.Selector == nil {
		errs.Add(sp.Child("selector"), "required: set matchLabels to labels from spec.template.metadata.labels")
	} else if len(spec.Selector.MatchLabels) == 0 && len(spec.Selector.MatchExpressions) == 0 {
		errs.Add(sp.Child("selector"), "must not be empty: an empty selector would claim every pod in the namespace")
	} else {
		n := len(errs)
		kubeLabelSelector(&errs, sp.Child("selector"), spec.Selector)
		// The API server refuses a template its own selector does not
		// match: the Deployment would create pods it never counts.
		if sel, err := metav1.LabelSelectorAsSelector(spec.Selector); len(errs) == n && err == nil && !sel.Matches(labels.Set(spec.Template.Labels)) {
			errs.Add(tp.Child("metadata", "labels"), "do not match spec.selector (%s): add the selector's labels to the template", sel)
		}
	}

	kubePodSpec(&errs, tp.Child("spec"), &spec.Template.Spec)
	if rp := spec.Template.Spec.RestartPolicy; rp != "" && rp != corev1.RestartPolicyAlways {
		errs.Add(tp.Child("spec", "restartPolicy"), "%q is not allowed in a Deployment: use Always (or leave it out)", rp)
	}

	st := sp.Child("strategy")
	switch spec.Strategy.Type {
	case "", appsv1.RollingUpdateDeploymentStrategyType:
		if ru := spec.Strategy.RollingUpdate; ru != nil {
			rp := st.Child("rollingUpdate")
			surge := kubeIntOrPercent(&errs, rp.Child("maxSurge"), ru.MaxSurge, false)
			unavailable := kubeIntOrPercent(&errs, rp.Child("maxUnavailable"), ru.MaxUnavailable, true)
			if surge == 0 && unavailable == 0 {
				errs.Add(rp.Child("maxUnavailable"), "may not be 0 when maxSurge is 0: the rollout could never make progress")
			}
		}
	case appsv1.RecreateDeploymentStrategyType:
		if spec.Strategy.RollingUpdate != nil {
			errs.Add(st.Child("rollingUpdate"), "must not be set when strategy type is Recreate")
		}
	default:
		errs.Add(st.Child("type"), "%q is not a strategy: use RollingUpdate or Recreate", spec.Strategy.Type)
	}
	if spec.MinReadySeconds < 0 {
		errs.Add(sp.Child("minReadySeconds"), "must be >= 0")
	}
	if spec.RevisionHistoryLimit != nil && *spec.RevisionHistoryLimit < 0 {
		errs.Add(sp.Child("revisionHistoryLimit"), "must be >= 0")
	}
	if spec.ProgressDeadlineSeconds != nil && *spec.ProgressDeadlineSeconds <= spec.MinReadySeconds {
		errs.Add(sp.Child("progressDeadlineSeconds"), "must be greater than minReadySeconds (%d)", spec.MinReadySeconds)
	}
	return errs
}

// kubeIntOrPercent checks a rolling-update bound ("25%" or 1) and returns
// it as a number (percent or count) so the caller can compare to zero; -1
// when unset or invalid.
func kubeIntOrPercent(errs *field.List, p *field.Path, v *intstr.IntOrString, capAt100 bool) int {
	if v == nil {
		return -1
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			errs.Add(p, "must be >= 0")
			return -1
		}
		return int(v.IntVal)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	if !strings.HasSuffix(v.StrVal, "%") || err != nil || n < 0 {
		errs.Add(p, "%q must be a number or a percentage such as 25%%", v.StrVal)
		return -1
	}
	if capAt100 && n > 100 {
		errs.Add(p, "must not be more than 100%%")
	}
	return n
}

// kubeLabelSelector checks a label selector's shape as the API server does.
func kubeLabelSelector(errs *field.List, p *field.Path, sel *metav1.LabelSelector) {
	kubeLabels(errs, p.Child("matchLabels"), sel.MatchLabels)
	for i, r := range sel.MatchExpressions {
		rp := p.Child("matchExpressions").Index(i)
		if r.Key == "" {
			errs.Append(field.Required(rp.Child("key")))
		} else {
			kubeMsgs(errs, rp.Child("key"), r.Key, "label key", validation.IsQualifiedName(r.Key))
		}
		switch r.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(r.Values) == 0 {
				errs.Add(rp.Child("values"), "required when operator is %s", r.Operator)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(r.Values) > 0 {
				errs.Add(rp.Child("values"), "must be empty when operator is %s", r.Operator)
			}
		default:
			errs.Add(rp.Child("operator"), "%q is not an operator: use In, NotIn, Exists or DoesNotExist", r.Operator)
		}
		for j, v := range r.Values {
			kubeMsgs(errs, rp.Child("values").Index(j), v, "label value", validation.IsValidLabelValue(v))
		}
	}
}

// kubePodSpec checks a pod spec; Pods and Deployment templates share it.
func kubePodSpec(errs *field.List, p *field.Path, spec *corev1.PodSpec) {
	volumes := map[string]bool{}
	volNames := kubeDuplicate{}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		vp := p.Child("volumes").Index(i)
		if v.Name == "" {
			errs.Append(field.Required(vp.Child("name")))
		} else {
			kubeMsgs(errs, vp.Child("name"), v.Name, "volume name", validation.IsDNS1123Label(v.Name))
			volNames.seen(errs, vp.Child("name"), v.Name, "volume name")
			volumes[v.Name] = true
		}
		// None set defaults to emptyDir, as the API server does.
		if kubeSetPointers(v.VolumeSource) > 1 {
			errs.Add(vp, "may set only one volume type (configMap, secret, emptyDir, ...)")
		}
	}

	if len(spec.Containers) == 0 {
		errs.Add(p.Child("containers"), "required: list at least one container")
	}
	// Container names share one namespace across init and app containers:
	// logs, probes and status refer to containers by name alone.
	names := kubeDuplicate{}
	for i := range spec.InitContainers {
		kubeContainer(errs, p.Child("initContainers").Index(i), &spec.InitContainers[i], volumes, names)
	}
	for i := range spec.Containers {
		kubeContainer(errs, p.Child("containers").Index(i), &spec.Containers[i], volumes, names)
	}

	if sa := spec.ServiceAccountName; sa != "" {
		kubeMsgs(errs, p.Child("serviceAccountName"), sa, "ServiceAccount name", validation.IsDNS1123Subdomain(sa))
	}
	if spec.DeprecatedServiceAccount != "" && spec.ServiceAccountName != "" && spec.DeprecatedServiceAccount != spec.ServiceAccountName {
		errs.Add(p.Child("serviceAccount"), "must equal serviceAccountName (%q); it is deprecated, so remove it", spec.ServiceAccountName)
	}
	switch spec.RestartPolicy {
	case "", corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs.Add(p.Child("restartPolicy"), "%q is not a restart policy: use Always, OnFailure or Never", spec.RestartPolicy)
	}
	switch spec.DNSPolicy {
	case "", corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone:
	default:
		errs.Add(p.Child("dnsPolicy"), "%q is not a DNS policy: use ClusterFirst, ClusterFirstWithHostNet, Default or None", spec.DNSPolicy)
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs.Add(p.Child("terminationGracePeriodSeconds"), "must be >= 0")
	}
	if a := spec.ActiveDeadlineSeconds; a != nil && *a <= 0 {
		errs.Add(p.Child("activeDeadlineSeconds"), "must be > 0")
	}
}

// kubeSetPointers counts the non-nil pointer fields of a one-of struct.
func kubeSetPointers(v any) int {
	rv := reflect.ValueOf(v)
	n := 0
	for i := 0; i < rv.NumField(); i++ {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

func kubeContainer(errs *field.List, p *field.Path, c *corev1.Container, volumes map[string]bool, names kubeDuplicate) {
	if c.Name == "" {
		errs.Append(field.Required(p.Child("name")))
	} else {
		kubeMsgs(errs, p.Child("name"), c.Name, "container name", validation.IsDNS1123Label(c.Name))
		names.seen(errs, p.Child("name"), c.Name, "container name")
	}
	if strings.TrimSpace(c.Image) == "" {
		errs.Append(field.Required(p.Child("image")))
	} else if c.Image != strings.TrimSpace(c.Image) {
		errs.Add(p.Child("image"), "must not have leading or trailing spaces")
	}

	portNames := kubeDuplicate{}
	for i := range c.Ports {
		port := &c.Ports[i]
		pp := p.Child("ports").Index(i)
		kubePort(errs, pp.Child("containerPort"), port.ContainerPort)
		if port.HostPort != 0 {
			kubePort(errs, pp.Child("hostPort"), port.HostPort)
		}
		kubeProtocol(errs, pp.Child("protocol"), string(port.Protocol))
		if port.Name != "" {
			kubeMsgs(errs, pp.Child("name"), port.Name, "port name", validation.IsValidPortName(port.Name))
			portNames.seen(errs, pp.Child("name"), port.Name, "port name")
		}
		if port.HostIP != "" {
			kubeIP(errs, pp.Child("hostIP"), port.HostIP, kubeAnyIP)
		}
	}

	for i := range c.Env {
		kubeEnvVar(errs, p.Child("env").Index(i), &c.Env[i])
	}
	for i, e := range c.EnvFrom {
		ep := p.Child("envFrom").Index(i)
		switch {
		case e.ConfigMapRef != nil && e.SecretRef != nil:
			errs.Add(ep, "may set only one of configMapRef and secretRef")
		case e.ConfigMapRef != nil:
			if e.ConfigMapRef.Name == "" {
				errs.Append(field.Required(ep.Child("configMapRef", "name")))
			}
		case e.SecretRef != nil:
			if e.SecretRef.Name == "" {
				errs.Append(field.Required(ep.Child("secretRef", "name")))
			}
		default:
			errs.Add(ep, "must set configMapRef or secretRef")
		}
	}

	mounts := kubeDuplicate{}
	for i, vm := range c.VolumeMounts {
		mp := p.Child("volumeMounts").Index(i)
		if vm.Name == "" {
			errs.Append(field.Required(mp.Child("name")))
		} else if !volumes[vm.Name] {
			errs.Add(mp.Child("name"), "no volume named %q: add it to the pod's volumes", vm.Name)
		}
		if vm.MountPath == "" {
			errs.Append(field.Required(mp.Child("mountPath")))
		} else {
			mounts.seen(errs, mp.Child("mountPath"), vm.MountPath, "mountPath")
		}
	}

	if c.LivenessProbe != nil {
		kubeProbe(errs, p.Child("livenessProbe"), c.LivenessProbe, c, true)
	}
	if c.ReadinessProbe != nil {
		kubeProbe(errs, p.Child("readinessProbe"), c.ReadinessProbe, c, false)
	}
	if c.StartupProbe != nil {
		kubeProbe(errs, p.Child("startupProbe"), c.StartupProbe, c, true)
	}
}

// kubeFieldPaths are the downward API fields Trellis fills in for env
// vars; labels and annotations take a key, as in metadata.labels['app'].
var kubeFieldPaths = []string{
	"metadata.name", "metadata.namespace", "metadata.labels['<key>']", "metadata.annotations['<key>']",
	"spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.podIP", "status.podIPs",
}

var kubeResourceFields = []string{
	"limits.cpu", "limits.memory", "limits.ephemeral-storage",
	"requests.cpu", "requests.memory", "requests.ephemeral-storage",
}

func kubeEnvVar(errs *field.List, p *field.Path, e *corev1.EnvVar) {
	if e.Name == "" {
		errs.Append(field.Required(p.Child("name")))
	} else {
		kubeMsgs(errs, p.Child("name"), e.Name, "environment variable name", validation.IsRelaxedEnvVarName(e.Name))
	}
	vf := e.ValueFrom
	if vf == nil {
		return
	}
	vp := p.Child("valueFrom")
	if e.Value != "" {
		errs.Add(vp, "may not be set together with value: keep one")
	}
	switch n := kubeSetPointers(*vf); {
	case n == 0:
		errs.Add(vp, "must set one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef")
		return
	case n > 1:
		errs.Add(vp, "may set only one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef")
	}
	if fr := vf.FieldRef; fr != nil {
		fp := vp.Child("fieldRef")
		if fr.APIVersion != "" && fr.APIVersion != "v1" {
			errs.Add(fp.Child("apiVersion"), "%q is not supported: use v1", fr.APIVersion)
		}
		kubeFieldPath(errs, fp.Child("fieldPath"), fr.FieldPath)
	}
	if rf := vf.ResourceFieldRef; rf != nil {
		rp := vp.Child("resourceFieldRef", "resource")
		if rf.Resource == "" {
			errs.Append(field.Required(rp))
		} else if !kubeContains(kubeResourceFields, rf.Resource) && !strings.HasPrefix(rf.Resource, "limits.hugepages-") && !strings.HasPrefix(rf.Resource, "requests.hugepages-") {
			errs.Add(rp, "%q is not supported: use one of %s", rf.Resource, strings.Join(kubeResourceFields, ", "))
		}
	}
	if r := vf.ConfigMapKeyRef; r != nil {
		kubeKeyRef(errs, vp.Child("configMapKeyRef"), r.Name, r.Key)
	}
	if r := vf.SecretKeyRef; r != nil {
		kubeKeyRef(errs, vp.Child("secretKeyRef"), r.Name, r.Key)
	}
}

func kubeKeyRef(errs *field.List, p *field.Path, name, key string) {
	if name == "" {
		errs.Append(field.Required(p.Child("name")))
	}
	if key == "" {
		errs.Append(field.Required(p.Child("key")))
	} else {
		kubeMsgs(errs, p.Child("key"), key, "key", validation.IsConfigMapKey(key))
	}
}

// kubeFieldPath checks a downward API fieldPath against the fields Trellis
// can fill in for a local pod.
func kubeFieldPath(errs *field.List, p *field.Path, fp string) {
	switch fp {
	case "":
		errs.Append(field.Required(p))
		return
	case "metadata.name", "metadata.namespace", "spec.nodeName", "spec.serviceAccountName",
		"status.hostIP", "status.podIP", "status.podIPs":
		return
	}
	for _, prefix := range []string{"metadata.labels", "metadata.annotations"} {
		rest, ok := strings.CutPrefix(fp, prefix)
		if !ok || (rest != "" && rest[0] != '[') {
			continue
		}
		key, ok := strings.CutPrefix(rest, "['")
		if key, ok2 := strings.CutSuffix(key, "']"); ok && ok2 && key != "" {
			if prefix == "metadata.annotations" {
				key = strings.ToLower(key)
			}
			kubeMsgs(errs, p, key, "key", validation.IsQualifiedName(key))
			return
		}
		errs.Add(p, "%q must name one key, as in %s['app']", fp, prefix)
		return
	}
	errs.Add(p, "%q is not a supported fieldPath: use one of %s", fp, strings.Join(kubeFieldPaths, ", "))
}

func kubeContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// kubeProbe checks one probe. Named ports must exist in the container:
// Trellis rewrites probes through the sidecar and has to resolve them.
func kubeProbe(errs *field.List, p *field.Path, pr *corev1.Probe, c *corev1.Container, successMustBeOne bool) {
	switch kubeSetPointers(pr.ProbeHandler) {
	case 0:
		errs.Add(p, "must set one of exec, httpGet, tcpSocket or grpc")
	case 1:
	default:
		errs.Add(p, "may set only one of exec, httpGet, tcpSocket or grpc")
	}
	if pr.Exec != nil && len(pr.Exec.Command) == 0 {
		errs.Append(field.Required(p.Child("exec", "command")))
	}
	if g := pr.HTTPGet; g != nil {
		hp := p.Child("httpGet")
		kubeProbePort(errs, hp.Child("port"), g.Port, c)
		switch g.Scheme {
		case "", corev1.URISchemeHTTP, corev1.URISchemeHTTPS:
		default:
			errs.Add(hp.Child("scheme"), "%q is not a scheme: use HTTP or HTTPS", g.Scheme)
		}
		if g.Path != "" && !strings.HasPrefix(g.Path, "/") {
			errs.Add(hp.Child("path"), "%q must start with /", g.Path)
		}
		for i, h := range g.HTTPHeaders {
			kubeMsgs(errs, hp.Child("httpHeaders").Index(i).Child("name"), h.Name, "header name", validation.IsHTTPHeaderName(h.Name))
		}
	}
	if t := pr.TCPSocket; t != nil {
		kubeProbePort(errs, p.Child("tcpSocket", "port"), t.Port, c)
	}
	if g := pr.GRPC; g != nil {
		kubePort(errs, p.Child("grpc", "port"), g.Port)
	}
	for _, f := range []struct {
		name string
		v    int32
	}{
		{"initialDelaySeconds", pr.InitialDelaySeconds},
		{"timeoutSeconds", pr.TimeoutSeconds},
		{"periodSeconds", pr.PeriodSeconds},
		{"successThreshold", pr.SuccessThreshold},
		{"failureThreshold", pr.FailureThreshold},
	} {
		if f.v < 0 {
			errs.Add(p.Child(f.name), "must be >= 0")
		}
	}
	if successMustBeOne && pr.SuccessThreshold > 1 {
		errs.Add(p.Child("successThreshold"), "must be 1 for liveness and startup probes")
	}
	if g := pr.TerminationGracePeriodSeconds; g != nil && *g <= 0 {
		errs.Add(p.Child("terminationGracePeriodSeconds"), "must be > 0")
	}
}

func kubeProbePort(errs *field.List, p *field.Path, port intstr.IntOrString, c *corev1.Container) {
	if port.Type == intstr.Int {
		kubePort(errs, p, port.IntVal)
		return
	}
	if msgs := validation.IsValidPortName(port.StrVal); len(msgs) > 0 {
		kubeMsgs(errs, p, port.StrVal, "port name", msgs)
		return
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return
		}
	}
	errs.Add(p, "container %q has no port named %q: name one in its ports or use the port number", c.Name, port.StrVal)
}

// EndpointSlice limits, as the API server enforces them.
const (
	kubeMaxEndpoints         = 1000
	kubeMaxEndpointAddresses = 100
	kubeMaxSlicePorts        = 20000
)

// EndpointSlice checks one EndpointSlice.
func EndpointSlice(m validate.Meta, es *discoveryv1.EndpointSlice) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &es.ObjectMeta)

	// Kubernetes' own controllers set this label; hand-written slices often
	// forget it, and then nothing ties the endpoints to a Service.
	lp := field.NewPath("metadata", "labels").Key(discoveryv1.LabelServiceName)
	if svc := es.Labels[discoveryv1.LabelServiceName]; svc == "" {
		errs.Add(lp, "required: add the label %s: <Service name>; Trellis attaches the slice's endpoints to that Service", discoveryv1.LabelServiceName)
	} else {
		kubeServiceName(&errs, lp, svc)
	}

	var family kubeIPFamily
	addressType := es.AddressType
	switch addressType {
	case discoveryv1.AddressTypeIPv4:
		family = kubeIPv4
	case discoveryv1.AddressTypeIPv6:
		family = kubeIPv6
	case discoveryv1.AddressTypeFQDN:
	case "":
		errs.Add(field.NewPath("addressType"), "required: set IPv4, IPv6 or FQDN")
	default:
		errs.Add(field.NewPath("addressType"), "%q is not an address type: use IPv4, IPv6 or FQDN", addressType)
	}

	if len(es.Endpoints) > kubeMaxEndpoints {
		errs.Add(field.NewPath("endpoints"), "must have at most %d items: split them across several EndpointSlices", kubeMaxEndpoints)
	}
	for i := range es.Endpoints {
		ep := &es.Endpoints[i]
		p := field.NewPath("endpoints").Index(i)
		ap := p.Child("addresses")
		switch {
		case len(ep.Addresses) == 0:
			errs.Add(ap, "required: list at least one address")
		case len(ep.Addresses) > kubeMaxEndpointAddresses:
			errs.Add(ap, "must have at most %d items", kubeMaxEndpointAddresses)
		}
		for j, a := range ep.Addresses {
			switch addressType {
			case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
				kubeIP(&errs, ap.Index(j), a, family)
			case discoveryv1.AddressTypeFQDN:
				kubeMsgs(&errs, ap.Index(j), a, "DNS name", validation.IsDNS1123Subdomain(strings.TrimSuffix(a, ".")))
			}
		}
		if h := ep.Hostname; h != nil {
			kubeMsgs(&errs, p.Child("hostname"), *h, "hostname", validation.IsDNS1123Label(*h))
		}
		if n := ep.NodeName; n != nil {
			kubeMsgs(&errs, p.Child("nodeName"), *n, "node name", validation.IsDNS1123Subdomain(*n))
		}
	}

	if len(es.Ports) > kubeMaxSlicePorts {
		errs.Add(field.NewPath("ports"), "must have at most %d items", kubeMaxSlicePorts)
	}
	names := kubeDuplicate{}
	for i, port := range es.Ports {
		p := field.NewPath("ports").Index(i)
		// The name is how a Service port finds its endpoints' port; an
		// unnamed port matches the Service's unnamed port, so even ""
		// must be unique.
		name := ""
		if port.Name != nil {
			name = *port.Name
		}
		if name != "" {
			kubeMsgs(&errs, p.Child("name"), name, "port name", validation.IsDNS1123Label(name))
		}
		names.seen(&errs, p.Child("name"), name, "port name")
		if port.Port != nil {
			kubePort(&errs, p.Child("port"), *port.Port)
		}
		if port.Protocol != nil {
			kubeProtocol(&errs, p.Child("protocol"), string(*port.Protocol))
		}
		if ap := port.AppProtocol; ap != nil {
			kubeMsgs(&errs, p.Child("appProtocol"), *ap, "appProtocol", validation.IsQualifiedName(*ap))
		}
	}
	return errs
}
