package controlplane

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// answers is a CA service that fails with the codes it is given in turn
// (OK issues a certificate).
type answers struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer
	codes []codes.Code
}

func (a *answers) CreateCertificate(context.Context, *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	c := a.codes[0]
	a.codes = a.codes[1:]
	if c == codes.OK {
		return &securityv1alpha1.IstioCertificateResponse{CertChain: []string{"leaf"}}, nil
	}
	return nil, status.Error(c, "no")
}

// Every request is a CSR; each outcome goes to Citadel's counter for it:
// issued, refused credential, bad CSR, CA unable to sign.
func TestCAServiceCounts(t *testing.T) {
	m := newCPMetrics()
	s := countingCAService{IstioCertificateServiceServer: &answers{codes: []codes.Code{
		codes.OK, codes.OK, codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.Unavailable,
	}}, m: m}
	for range 6 {
		_, _ = s.CreateCertificate(context.Background(), &securityv1alpha1.IstioCertificateRequest{})
	}
	got := map[string]float64{
		"csr":         value(t, m.csrs),
		"issued":      value(t, m.issued),
		"auth":        value(t, m.authFailures),
		"parse error": value(t, m.signErrors.WithLabelValues("CSR_PARSING_ERROR")),
		"gen error":   value(t, m.signErrors.WithLabelValues("CERT_GEN_ERROR")),
	}
	want := map[string]float64{"csr": 6, "issued": 2, "auth": 2, "parse error": 1, "gen error": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
