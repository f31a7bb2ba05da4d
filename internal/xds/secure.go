package xds

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellismesh/trellis/internal/identity"
)

// On the secure port a proxy is who its client certificate says, not who
// its node claims to be. RequireCertIdentity checks each stream's node
// against the certificate before the server reads it, and writes the
// certificate's namespace and service account into the node's metadata,
// so ParseNode, scoping and translation all see the proven identity.

// RequireCertIdentity is the stream interceptor of the secure xDS port:
// a stream needs a client certificate verified against the mesh roots
// (the TLS config must verify one when given), and a node naming another
// namespace or service account than the certificate's SPIFFE ID is
// refused with PermissionDenied.
func RequireCertIdentity() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		id, err := peerIdentity(ss)
		if err != nil {
			return err
		}
		w := &boundStream{ServerStream: ss, id: id}
		err = handler(srv, w)
		// go-control-plane ends a state-of-the-world stream quietly when
		// a receive fails; the caller must hear why.
		if refused := w.refusal(); refused != nil {
			return refused
		}
		return err
	}
}

func peerIdentity(ss grpc.ServerStream) (identity.ID, error) {
	p, ok := peer.FromContext(ss.Context())
	var ti credentials.TLSInfo
	if ok {
		ti, ok = p.AuthInfo.(credentials.TLSInfo)
	}
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return identity.ID{}, status.Error(codes.Unauthenticated, "xDS on the secure port needs a mesh client certificate: get one from the CA (istio.v1.auth.IstioCertificateService/CreateCertificate on this port) and present it")
	}
	id, err := identity.FromCertificate(ti.State.PeerCertificates[0])
	if err != nil {
		return identity.ID{}, status.Errorf(codes.Unauthenticated, "xDS client %v", err)
	}
	return id, nil
}

// boundStream checks every node a client sends against its certificate.
type boundStream struct {
	grpc.ServerStream
	id      identity.ID
	mu      sync.Mutex
	refused error
}

func (s *boundStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	var node *corev3.Node
	switch r := m.(type) {
	case *discoverygrpc.DeltaDiscoveryRequest:
		node = r.GetNode()
	case *discoverygrpc.DiscoveryRequest:
		node = r.GetNode()
	}
	if node == nil {
		return nil
	}
	if err := BindNode(node, s.id); err != nil {
		st := status.Error(codes.PermissionDenied, err.Error())
		s.mu.Lock()
		s.refused = st
		s.mu.Unlock()
		return st
	}
	return nil
}

func (s *boundStream) refusal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// BindNode checks that what node says about its namespace and service
// account (the id's namespace, metadata NAMESPACE and SERVICE_ACCOUNT)
// agrees with id, then sets both metadata fields to id's, so the node
// names the proven identity whatever it left out.
func BindNode(node *corev3.Node, id identity.ID) error {
	var errs []error
	for _, ns := range idNamespaces(node.GetId()) {
		if ns != id.Namespace {
			errs = append(errs, fmt.Errorf("node id names namespace %q", ns))
			break
		}
	}
	md := node.GetMetadata().GetFields()
	if ns := md[MetaNamespace].GetStringValue(); ns != "" && ns != id.Namespace {
		errs = append(errs, fmt.Errorf("metadata %s is %q", MetaNamespace, ns))
	}
	if sa := md[MetaServiceAccount].GetStringValue(); sa != "" && sa != id.ServiceAccount {
		errs = append(errs, fmt.Errorf("metadata %s is %q", MetaServiceAccount, sa))
	}
	if len(errs) > 0 {
		return fmt.Errorf("xDS node %q is not the identity of its client certificate, %s (namespace %q, service account %q): %w", node.GetId(), id, id.Namespace, id.ServiceAccount, errors.Join(errs...))
	}
	if node.Metadata == nil {
		node.Metadata = &structpb.Struct{}
	}
	if node.Metadata.Fields == nil {
		node.Metadata.Fields = map[string]*structpb.Value{}
	}
	node.Metadata.Fields[MetaNamespace] = structpb.NewStringValue(id.Namespace)
	node.Metadata.Fields[MetaServiceAccount] = structpb.NewStringValue(id.ServiceAccount)
	return nil
}

// idNamespaces are the namespaces an Istio node id names
// (sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local): both places, read as
// ParseNode reads them; none for another form.
func idNamespaces(id string) []string {
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return nil
	}
	var out []string
	if _, ns, ok := strings.Cut(parts[2], "."); ok && ns != "" {
		out = append(out, ns)
	}
	if ns, _, _ := strings.Cut(parts[3], "."); ns != "" {
		out = append(out, ns)
	}
	return out
}
