package xds

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/trellismesh/trellis/internal/translate"
)

// Node metadata keys (Istio's names).
const (
	MetaNamespace        = "NAMESPACE"
	MetaServiceAccount   = "SERVICE_ACCOUNT"
	MetaLabels           = "LABELS"
	MetaWorkloadName     = "WORKLOAD_NAME"
	MetaInterceptionMode = "INTERCEPTION_MODE"
	MetaGenerator        = "GENERATOR"
	MetaInstanceIPs      = "INSTANCE_IPS"
)

// NodeID builds Istio's node id: sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local.
func NodeID(ip, pod, ns string) string {
	return fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", ip, pod, ns, ns)
}

// ParseNode reads who a client is from its xDS node: the id gives the IP,
// pod and namespace; metadata adds labels, service account, interception
// mode and generator (and wins over the id where both speak). On the
// secure port BindNode has already checked the namespace and service
// account against the client certificate and written the certificate's
// into the metadata.
func ParseNode(n *corev3.Node) (*translate.Proxy, error) {
	if n == nil || n.GetId() == "" {
		return nil, fmt.Errorf("xDS node has no id: set node.id to sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local")
	}
	p := &translate.Proxy{ID: n.GetId()}
	parts := strings.Split(n.GetId(), "~")
	if len(parts) == 4 {
		p.IP = parts[1]
		if pod, ns, ok := strings.Cut(parts[2], "."); ok {
			p.Pod, p.Namespace = pod, ns
		} else {
			p.Pod = parts[2]
		}
		if p.Namespace == "" {
			p.Namespace, _, _ = strings.Cut(parts[3], ".")
		}
	}
	md := n.GetMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	if v := str(MetaNamespace); v != "" {
		p.Namespace = v
	}
	p.ServiceAccount = str(MetaServiceAccount)
	p.InterceptionMode = str(MetaInterceptionMode)
	p.Generator = translate.Generator(str(MetaGenerator))
	if v := str(MetaInstanceIPs); v != "" && p.IP == "" {
		p.IP, _, _ = strings.Cut(v, ",")
	}
	if w := str(MetaWorkloadName); w != "" && p.Pod == "" {
		p.Pod = w
	}
	if lv := md[MetaLabels].GetStructValue().GetFields(); len(lv) > 0 {
		p.Labels = make(map[string]string, len(lv))
		for k, v := range lv {
			p.Labels[k] = v.GetStringValue()
		}
	}
	if p.Namespace == "" {
		return nil, fmt.Errorf("xDS node %q names no namespace: use an id of the form sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local or set metadata NAMESPACE", n.GetId())
	}
	switch p.Generator {
	case translate.GeneratorSidecar, translate.GeneratorGRPC:
	default:
		return nil, fmt.Errorf("xDS node %q asks for GENERATOR %q: Trellis serves \"grpc\" (proxyless gRPC) or none (sidecar)", n.GetId(), p.Generator)
	}
	return p, nil
}

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }
