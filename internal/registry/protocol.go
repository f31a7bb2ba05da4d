package registry

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// wellKnownTCPPorts are the ports Istio treats as TCP when nothing else is
// declared, because sniffing breaks server-first protocols on them (SMTP,
// DNS, MySQL, MongoDB).
var wellKnownTCPPorts = map[int32]bool{25: true, 53: true, 3306: true, 27017: true}

// ParseProtocol maps a protocol name as written in a ServiceEntry port or a
// port-name prefix (case-insensitive) to a Protocol. Unknown names give
// Unsupported, which the proxy sniffs.
func ParseProtocol(name string) Protocol {
	switch strings.ToLower(name) {
	case "http", "http_proxy":
		return HTTP
	case "http2":
		return HTTP2
	case "grpc":
		return GRPC
	case "grpc-web":
		// Istio gives grpc-web the sidecar behaviour of http2; we have no
		// separate value so that translation needs no extra case.
		return HTTP2
	case "tcp", "thrift":
		// Istio dropped Thrift support; it is carried as opaque TCP.
		return TCP
	case "tls":
		return TLS
	case "https":
		return HTTPS
	case "mongo":
		return Mongo
	case "redis":
		return Redis
	case "mysql":
		return MySQL
	}
	return Unsupported
}

// kubeProtocol infers a Kubernetes Service port's protocol as Istio does:
// appProtocol wins over the port name; the name counts up to its first '-'
// (so "http-web" is HTTP and "httpweb" is not), except for the "grpc-web"
// prefix which contains a dash itself.
func kubeProtocol(p corev1.ServicePort) Protocol {
	name := p.Name
	if p.AppProtocol != nil && *p.AppProtocol != "" {
		name = *p.AppProtocol
		// Kubernetes' standard prefixed values (KEP-3726), only valid as
		// appProtocol.
		switch name {
		case "kubernetes.io/h2c":
			return HTTP2
		case "kubernetes.io/ws":
			return HTTP
		case "kubernetes.io/wss":
			return HTTPS
		}
	}
	if len(name) >= len("grpc-web") && strings.EqualFold(name[:len("grpc-web")], "grpc-web") {
		return ParseProtocol("grpc-web")
	}
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[:i]
	}
	proto := ParseProtocol(name)
	if proto == Unsupported && wellKnownTCPPorts[p.Port] {
		return TCP
	}
	return proto
}
