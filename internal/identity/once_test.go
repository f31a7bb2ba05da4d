package identity

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// A single-use token gets one certificate: the same token is refused the
// second time (a replay of a spent token), a request that fails before
// signing does not spend it, and the holder renews with the certificate
// it got. A reusable token keeps working.
func TestSingleUseCredentialIssuesOnce(t *testing.T) {
	leak.Check(t)
	ca := newCA(t, CAOptions{})
	addr := serve(t, ca)
	c := client(t, addr, ca.Roots(), nil)
	tok, err := ca.Credentials.IssueOnce(checkout)
	if err != nil {
		t.Fatal(err)
	}

	// A malformed CSR issues nothing, so the token is not spent.
	_, err = c.CreateCertificate(bearer(tok), &securityv1alpha1.IstioCertificateRequest{Csr: "junk"})
	wantCode(t, err, codes.InvalidArgument, "csr: must be one PEM block")

	key, csr := csrFor(t)
	resp, err := c.CreateCertificate(bearer(tok), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr)})
	if err != nil {
		t.Fatalf("first use: %v", err)
	}
	leaf := leafOf(t, resp)
	if id, _ := FromCertificate(leaf); id != checkout {
		t.Fatalf("first use issued %s, want %s", id, checkout)
	}
	_, csr2 := csrFor(t)
	_, err = c.CreateCertificate(bearer(tok), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr2)})
	wantCode(t, err, codes.Unauthenticated, "already spent")
	if _, ok := ca.Credentials.Lookup(tok); ok {
		t.Error("the spent token is still known")
	}

	// The certificate renews the identity.
	held := &tls.Certificate{PrivateKey: key}
	for _, c := range parseChain(t, resp.GetCertChain()) {
		held.Certificate = append(held.Certificate, c.Raw)
	}
	rc := client(t, addr, ca.Roots(), held)
	resp, err = rc.CreateCertificate(context.Background(), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr2)})
	if err != nil {
		t.Fatalf("renewal with the certificate: %v", err)
	}
	if id, _ := FromCertificate(leafOf(t, resp)); id != checkout {
		t.Fatalf("renewal issued %s", id)
	}

	// A reusable token is not spent.
	re := mustIssue(t, ca, payment)
	for i := range 2 {
		_, csr := csrFor(t)
		if _, err := c.CreateCertificate(bearer(re), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr)}); err != nil {
			t.Fatalf("reusable token, use %d: %v", i+1, err)
		}
	}

	// Revoked before use: refused.
	gone, err := ca.Credentials.IssueOnce(checkout)
	if err != nil {
		t.Fatal(err)
	}
	ca.Credentials.Revoke(gone)
	_, err = c.CreateCertificate(bearer(gone), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr2)})
	wantCode(t, err, codes.Unauthenticated, "the token is not valid")
}

// Requests racing with one single-use token get one certificate between
// them.
func TestSingleUseCredentialRace(t *testing.T) {
	leak.Check(t)
	ca := newCA(t, CAOptions{})
	c := client(t, serve(t, ca), ca.Roots(), nil)
	tok, err := ca.Credentials.IssueOnce(checkout)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		_, csr := csrFor(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.CreateCertificate(bearer(tok), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr)})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.Unauthenticated:
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d racing requests got a certificate, want 1", ok, n)
	}
}
