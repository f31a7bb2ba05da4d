package analyze

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
)

// knownProtocols are the port name prefixes (and appProtocol values) that
// declare a protocol, as Istio reads them.
var knownProtocols = map[string]bool{
	"tcp": true, "udp": true, "grpc": true, "grpc-web": true, "http": true, "http_proxy": true,
	"http2": true, "https": true, "tls": true, "mongo": true, "redis": true, "mysql": true,
	"kubernetes.io/h2c": true, "kubernetes.io/ws": true, "kubernetes.io/wss": true,
}

// wellKnownPorts are treated as TCP whatever their name (SMTP, DNS, MySQL,
// MongoDB), as in Istio.
var wellKnownPorts = map[int32]bool{25: true, 53: true, 3306: true, 27017: true}

// declaresProtocol reports whether the proxy knows a port's protocol
// without sniffing the first bytes of each connection.
func declaresProtocol(p corev1.ServicePort) bool {
	if p.Protocol == corev1.ProtocolUDP {
		return true
	}
	name := strings.ToLower(p.Name)
	if p.AppProtocol != nil {
		name = strings.ToLower(*p.AppProtocol)
	}
	if knownProtocols[name] || strings.HasPrefix(name, "grpc-web") {
		return true
	}
	if prefix, _, ok := strings.Cut(name, "-"); ok && knownProtocols[prefix] {
		return true
	}
	return wellKnownPorts[p.Port]
}

// servicePortNames reports Service ports whose protocol must be sniffed:
// sniffing adds latency and guesses wrong for server-first protocols.
func servicePortNames(w *world) []Message {
	var msgs []Message
	for _, o := range w.byKind[config.Service] {
		svc := o.Spec.(*corev1.Service)
		for i, p := range svc.Spec.Ports {
			if declaresProtocol(p) {
				continue
			}
			target := p.TargetPort.String()
			if target == "0" {
				target = strconv.Itoa(int(p.Port)) // Kubernetes' default
			}
			msgs = append(msgs, portNameNotUnderNamingConvention.msg(o, idx("spec.ports", i)+".name",
				"Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port.", p.Name, p.Port, target))
		}
	}
	return msgs
}
