package identity

import (
	"testing"
	"time"

	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// The issue asks for at least 1,000 CSRs signed per second on a 2-vCPU
// machine. The CSRs are made beforehand: making keys is the proxies' work.
func BenchmarkSign(b *testing.B) {
	ca := newCA(b, CAOptions{})
	csrs := make([][]byte, 64)
	for i := range csrs {
		_, csrs[i] = csrFor(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := ca.Sign(csrs[i%len(csrs)], checkout, 0); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "CSRs/s")
}

// The same through Istio's gRPC service on a loopback TLS connection, a
// bearer token per call, as proxies call it.
func BenchmarkCreateCertificateGRPC(b *testing.B) {
	ca := newCA(b, CAOptions{})
	c := client(b, serve(b, ca), ca.Roots(), nil)
	ctx := bearer(mustIssue(b, ca, checkout))
	reqs := make([]*securityv1alpha1.IstioCertificateRequest, 64)
	for i := range reqs {
		_, csr := csrFor(b)
		reqs[i] = &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(4) // several proxies asking at once
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.CreateCertificate(ctx, reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "CSRs/s")
}
