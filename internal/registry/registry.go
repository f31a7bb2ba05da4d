package registry

// Protocol is a port's application protocol, as Istio infers it from the
// port name prefix (http-, http2-, grpc-, tcp-, tls-, ...) or appProtocol.
type Protocol string

// Protocols.
const (
	HTTP        Protocol = "HTTP"
	HTTP2       Protocol = "HTTP2"
	GRPC        Protocol = "GRPC"
	TCP         Protocol = "TCP"
	TLS         Protocol = "TLS"
	HTTPS       Protocol = "HTTPS"
	Mongo       Protocol = "Mongo"
	Redis       Protocol = "Redis"
	MySQL       Protocol = "MySQL"
	Unsupported Protocol = "UnsupportedProtocol" // undeclared: sniffed by the proxy
)

// IsHTTP reports whether traffic on the port is routed as HTTP (HTTP/1.1,
// HTTP/2 or gRPC).
func (p Protocol) IsHTTP() bool { return p == HTTP || p == HTTP2 || p == GRPC }

// Resolution says how a service's endpoints are found.
type Resolution int

// Resolutions, as ServiceEntry's.
const (
	ResolutionStatic Resolution = iota // endpoints are IP addresses
	ResolutionDNS                      // endpoints are DNS names resolved by the proxy
	ResolutionNone                     // passthrough to the original destination
)

// Port is one service port.
type Port struct {
	Name     string
	Port     uint32
	Protocol Protocol
}

// Service is one service, known by its fully qualified hostname.
type Service struct {
	// Hostname is the FQDN: reviews.default.svc.cluster.local for a
	// Kubernetes Service, the host itself for a ServiceEntry.
	Hostname  string
	Name      string // the Kubernetes Service name, or the ServiceEntry's name
	Namespace string
	Ports     []Port
	// Addresses are the service's virtual IPs (Service clusterIP,
	// ServiceEntry addresses); empty when none is known.
	Addresses []string
	Labels    map[string]string
	// ExportTo lists the namespaces that may see the service: "*" (all,
	// the default), "." (own namespace only) or namespace names.
	ExportTo     []string
	Resolution   Resolution
	Headless     bool // Kubernetes clusterIP: None
	MeshExternal bool // ServiceEntry location MESH_EXTERNAL
	// Instances holds each port's endpoints, keyed by the service port
	// number, sorted by address then port. Missing key: no endpoints.
	Instances map[uint32][]*Instance
}

// Instance is one endpoint of one service port.
type Instance struct {
	Address string // IP, or DNS name for ResolutionDNS
	Port    uint32 // the endpoint's port (target port resolved)
	// Labels are the workload's labels (pod or WorkloadEntry); DestinationRule
	// subsets select on them.
	Labels         map[string]string
	Namespace      string
	ServiceAccount string // service account name (not the SPIFFE ID)
	Weight         uint32 // 0 means 1
	Locality       string // region/zone/subzone
	Ready          bool
	// Workload names the pod or WorkloadEntry the instance came from.
	Workload string
	// WorkloadName is the workload as Istio's telemetry names it: the
	// Deployment (or other controller) a pod belongs to, else the pod or
	// WorkloadEntry itself (workloadName).
	WorkloadName string
	// Proxyless is a workload that runs proxyless gRPC instead of a
	// sidecar (IsProxyless): it terminates mesh mTLS itself, on its
	// own port, and has no tunnel port.
	Proxyless bool
}

// Port returns the service port with that number, or nil.
func (s *Service) Port(n uint32) *Port {
	for i := range s.Ports {
		if s.Ports[i].Port == n {
			return &s.Ports[i]
		}
	}
	return nil
}
