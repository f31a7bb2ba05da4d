package identity

import (
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// Service is Istio's CA service, istio.v1.auth.IstioCertificateService.
type Service struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer
	CA *CA
	// Authenticators say who the caller is. Every one the caller presents
	// a credential to must succeed and agree.
	Authenticators []Authenticator
	Log            *slog.Logger
}

// NewService serves ca to callers holding one of its per-pod credentials
// or a mesh certificate (renewal).
func NewService(ca *CA, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{CA: ca, Authenticators: []Authenticator{ca.Credentials, PeerCertificate{Roots: ca.Roots}}, Log: log}
}

// unauthenticatedMsg says what a caller must send.
const unauthenticatedMsg = "CreateCertificate needs a credential: send gRPC metadata `authorization: Bearer <token>` with the token trellis issued for this pod (what TRELLIS_CREDENTIAL_FD or TRELLIS_CREDENTIAL_FILE gives the proxy), or renew over mTLS with this pod's current mesh certificate"

// Authenticate returns the caller's identity or a gRPC status error.
func (s *Service) Authenticate(ctx context.Context) (ID, error) {
	var who ID
	found := false
	for _, a := range s.Authenticators {
		id, err := a.Authenticate(ctx)
		if errors.Is(err, ErrNoCredential) {
			continue
		}
		if err != nil {
			return ID{}, status.Errorf(codes.Unauthenticated, "%v", err)
		}
		if found && id != who {
			return ID{}, status.Errorf(codes.PermissionDenied, "the caller's credentials name two identities, %s and %s: present one", who, id)
		}
		who, found = id, true
	}
	if !found {
		return ID{}, status.Error(codes.Unauthenticated, unauthenticatedMsg)
	}
	return who, nil
}

// CreateCertificate signs the request's CSR for the caller's
// authenticated identity. What the CSR and the metadata claim about
// identity is ignored: only the CSR's public key is used.
func (s *Service) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	// A single-use credential is spent only if a certificate is issued.
	ctx, red := withRedemption(ctx)
	issued := false
	defer func() { red.done(issued) }()
	id, err := s.Authenticate(ctx)
	if err != nil {
		s.Log.Warn("refused a certificate request", "err", err)
		return nil, err
	}
	b, _ := pem.Decode([]byte(req.GetCsr()))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, status.Error(codes.InvalidArgument, "csr: must be one PEM block of type CERTIFICATE REQUEST (PKCS#10)")
	}
	ttl := time.Duration(0)
	if v := req.GetValidityDuration(); v > 0 {
		// Cap before converting: seconds beyond ~292 years overflow a
		// Duration.
		ttl = time.Duration(min(v, int64(s.CA.MaxTTL()/time.Second))) * time.Second
	}
	chain, err := s.CA.Sign(b.Bytes, id, ttl)
	if errors.Is(err, ErrInvalidCSR) {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err != nil {
		s.Log.Error("CA cannot sign", "identity", id.String(), "err", err)
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	issued = true
	s.Log.Debug("issued a workload certificate", "identity", id.String(), "ttl", ttl)
	return &securityv1alpha1.IstioCertificateResponse{CertChain: chain}, nil
}
