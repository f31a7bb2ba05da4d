package controlplane

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
)

// DefaultMonitoringAddress is istiod's monitoring port, where it serves
// /metrics.
const DefaultMonitoringAddress = ":15014"

// cpMetrics are the control plane's own metrics beyond the xDS server's,
// under istiod's names: the CA's (citadel_server_*) and rejected config.
type cpMetrics struct {
	csrs, issued, authFailures prometheus.Counter
	signErrors                 *prometheus.CounterVec
	rejectedConfigs            *prometheus.CounterVec
}

func newCPMetrics() *cpMetrics {
	return &cpMetrics{
		csrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_csr_count", Help: "The number of CSRs received by Citadel server.",
		}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_success_cert_issuance_count", Help: "The number of certificates issuances that have succeeded.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_authentication_failure_count", Help: "The number of authentication failures.",
		}),
		signErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_server_csr_sign_err_count", Help: "The number of errors occurred when signing the CSR.",
		}, []string{"error_type"}),
		rejectedConfigs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_rejected_configs", Help: "Total number of configs that Pilot had to reject or ignore.",
		}, []string{"type"}),
	}
}

// newRegistry gathers everything /metrics serves: the xDS server's, the
// CA's, rejected config, and Go's runtime and process collectors as istiod
// has them.
func newRegistry(cp *ControlPlane, m *cpMetrics) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.csrs, m.issued, m.authFailures, m.signErrors, m.rejectedConfigs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "citadel_server_root_cert_expiry_timestamp",
			Help: "The unix timestamp, in seconds, when Citadel root cert will expire. A negative time indicates the cert is expired.",
		}, func() float64 { return rootExpiry(cp.ca.RootsPEM()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering control-plane metrics: %w", err)
		}
	}
	if err := cp.XDS.RegisterMetrics(reg); err != nil {
		return nil, fmt.Errorf("registering xDS metrics: %w", err)
	}
	return reg, nil
}

// rootExpiry is when the newest root of the bundle expires (unix
// seconds). While a rotated-out root is still trusted the bundle holds
// two; the one the CA signs under is the newer, and it is the one whose
// expiry matters.
func rootExpiry(bundle []byte) float64 {
	var latest time.Time
	for {
		var b *pem.Block
		b, bundle = pem.Decode(bundle)
		if b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && c.NotAfter.After(latest) {
			latest = c.NotAfter
		}
	}
	if latest.IsZero() {
		return 0
	}
	return float64(latest.Unix())
}

// countingCAService counts what the CA service does, as Citadel does.
type countingCAService struct {
	securityv1alpha1.IstioCertificateServiceServer
	m *cpMetrics
}

func (s countingCAService) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	s.m.csrs.Inc()
	resp, err := s.IstioCertificateServiceServer.CreateCertificate(ctx, req)
	switch status.Code(err) {
	case codes.OK:
		s.m.issued.Inc()
	case codes.Unauthenticated, codes.PermissionDenied:
		s.m.authFailures.Inc()
	case codes.InvalidArgument:
		s.m.signErrors.WithLabelValues("CSR_PARSING_ERROR").Inc()
	default:
		s.m.signErrors.WithLabelValues("CERT_GEN_ERROR").Inc()
	}
	return resp, err
}

// countingSink counts the objects a config source could not produce,
// pilot_total_rejected_configs by kind, on their way to the store.
type countingSink struct {
	store.Sink
	m *cpMetrics
}

func (s countingSink) Apply(source string, objects []*config.Object, errs []error) {
	for _, err := range errs {
		kind := "unknown"
		var ce *config.Error
		if errors.As(err, &ce) && ce.Object != "" {
			kind, _, _ = strings.Cut(ce.Object, " ")
		}
		s.m.rejectedConfigs.WithLabelValues(kind).Inc()
	}
	s.Sink.Apply(source, objects, errs)
}

// serveMonitoring serves /metrics on lis until ctx ends.
func (cp *ControlPlane) serveMonitoring(ctx context.Context, lis net.Listener, reg *prometheus.Registry, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.Handle("GET "+SynczPath, cp.synczHandler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	cp.monitoringAddr = lis.Addr()
	cp.goRun(func() error {
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("monitoring server: %w", err)
		}
		return nil
	})
	cp.goRun(func() error {
		<-ctx.Done()
		_ = hs.Close()
		return nil
	})
	log.Info("control plane serving metrics", "address", lis.Addr().String(), "path", "/metrics")
}

// MonitoringAddr is where /metrics is served, nil when it is not.
func (cp *ControlPlane) MonitoringAddr() net.Addr { return cp.monitoringAddr }
