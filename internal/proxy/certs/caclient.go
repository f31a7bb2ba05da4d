package certs

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
)

// The CA's one call, Istio's istio.v1.auth.IstioCertificateService
// (security/v1alpha1/ca.proto), encoded by hand with protowire: the
// generated types would link protobuf's reflection runtime and grpc into
// the sidecar for two messages of a few fields.
const (
	createCertificatePath = "/istio.v1.auth.IstioCertificateService/CreateCertificate"

	// IstioCertificateRequest's field numbers (2 is unused in ca.proto).
	fieldCSR              = 1 // string: the CSR, PEM
	fieldValidityDuration = 3 // int64: requested lifetime, seconds
	// IstioCertificateResponse's.
	fieldCertChain = 1 // repeated string: PEM, leaf first, root last

	// maxCAResponse bounds the answer: a chain of a few certificates.
	maxCAResponse = 1 << 20
)

// errRefused marks the CA's refusal of the caller's credential
// (Unauthenticated, PermissionDenied), as opposed to a failure to reach it.
var errRefused = errors.New("refused")

type refusal struct{ error }

func (r refusal) Unwrap() error        { return r.error }
func (r refusal) Is(target error) bool { return target == errRefused }

// marshalCertificateRequest encodes an IstioCertificateRequest. metadata
// (field 4, a Struct) is left empty: the CA takes the identity from the
// caller's credential, not from anything the request claims.
func marshalCertificateRequest(csrPEM string, validitySeconds int64) []byte {
	var b []byte
	b = protowire.AppendTag(b, fieldCSR, protowire.BytesType)
	b = protowire.AppendString(b, csrPEM)
	if validitySeconds != 0 {
		b = protowire.AppendTag(b, fieldValidityDuration, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(validitySeconds))
	}
	return b
}

// unmarshalCertificateResponse decodes an IstioCertificateResponse's
// cert_chain, skipping fields it does not know.
func unmarshalCertificateResponse(b []byte) ([]string, error) {
	var chain []string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == fieldCertChain {
			if typ != protowire.BytesType {
				return nil, fmt.Errorf("cert_chain: wire type %d, want a string", typ)
			}
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return nil, fmt.Errorf("cert_chain[%d]: %w", len(chain), protowire.ParseError(n))
			}
			chain = append(chain, v)
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return chain, nil
}

// createCertificate calls the CA once over conn: token, when set, goes as
// "authorization: Bearer <token>".
func createCertificate(ctx context.Context, conn *grpcwire.Conn, token, csrPEM string, validitySeconds int64) ([]string, error) {
	md := http.Header{}
	if token != "" {
		md.Set("Authorization", "Bearer "+token)
	}
	resp, err := conn.Unary(ctx, createCertificatePath, md, marshalCertificateRequest(csrPEM, validitySeconds), maxCAResponse)
	if err != nil {
		var st *grpcwire.StatusError
		if errors.As(err, &st) {
			switch st.Code {
			case grpcwire.CodeUnauthenticated, grpcwire.CodePermissionDenied:
				return nil, refusal{fmt.Errorf("the CA at %s refused this proxy's credential (%w): check that the credential is this pod's current one, or that the certificate it renews with is still valid", conn.Target().Address, err)}
			case grpcwire.CodeUnimplemented:
				return nil, fmt.Errorf("the server at %s has no certificate service (%w): check the CA address (CA_ADDR) points at the control plane's secure port", conn.Target().Address, err)
			}
		}
		return nil, fmt.Errorf("asking the CA at %s for a certificate: %w", conn.Target().Address, err)
	}
	chain, err := unmarshalCertificateResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("the CA at %s sent an undecodable answer: %w", conn.Target().Address, err)
	}
	return chain, nil
}
