package xds

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
)

// Control-plane metrics under istiod's names, labels and buckets
// (pilot/pkg/xds/monitoring.go), so Istio's Grafana "Istio Control
// Plane" dashboard reads them unchanged. Each Server has its own set:
// tests run many servers in one process, and a global registry would mix
// them.

// metricTypes are istiod's "type" label values, in typeURLs order.
var metricTypes = [numTypes]string{"cds", "eds", "lds", "rds"}

// pushBuckets are istiod's buckets for push and send times (seconds).
var pushBuckets = []float64{.01, .1, 1, 3, 5, 10, 20, 30}

type metrics struct {
	pushes         *prometheus.CounterVec
	pushTime       *prometheus.HistogramVec
	sendTime       prometheus.Histogram
	convergence    prometheus.Histogram
	rejects        *prometheus.CounterVec
	typeRejects    [numTypes]*prometheus.GaugeVec
	internalErrors prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes", Help: "Pilot build and send errors for lds, rds, cds and eds.",
		}, []string{"type"}),
		pushTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pilot_xds_push_time", Help: "Total time in seconds Pilot takes to push lds, rds, cds and eds.", Buckets: pushBuckets,
		}, []string{"type"}),
		sendTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pilot_xds_send_time", Help: "Total time in seconds Pilot takes to send generated configuration.", Buckets: pushBuckets,
		}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pilot_proxy_convergence_time", Help: "Delay in seconds between config change and a proxy receiving all required configuration.",
			Buckets: []float64{.1, .5, 1, 3, 5, 10, 20, 30},
		}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects", Help: "Total number of XDS responses from pilot rejected by proxy.",
		}, []string{"type"}),
		internalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pilot_total_xds_internal_errors", Help: "Total number of internal XDS errors in pilot.",
		}),
	}
	for i, t := range metricTypes {
		m.typeRejects[i] = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pilot_xds_" + t + "_reject", Help: "Pilot rejected " + upper(t) + " configs.",
		}, []string{"node", "err"})
	}
	return m
}

func upper(t string) string {
	b := []byte(t)
	for i, c := range b {
		b[i] = c - 'a' + 'A'
	}
	return string(b)
}

// sent counts one response of type i, its send taking sendTook and its
// build and send together took.
func (m *metrics) sent(i int, took, sendTook time.Duration) {
	m.pushes.WithLabelValues(metricTypes[i]).Inc()
	m.pushTime.WithLabelValues(metricTypes[i]).Observe(took.Seconds())
	m.sendTime.Observe(sendTook.Seconds())
}

// rejected counts a NACK of type url from node; code is the NACK's
// google.rpc status code, the gauge's err label as in istiod (the message
// itself would make a series per distinct error text).
func (m *metrics) rejected(url, node string, code int32) {
	i := typeIndex(url)
	if i < 0 {
		return
	}
	m.rejects.WithLabelValues(metricTypes[i]).Inc()
	m.typeRejects[i].WithLabelValues(node, itoa(code)).Set(1)
}

// forget drops a disconnected proxy's reject series, so the gauges do not
// grow with every proxy that ever connected.
func (m *metrics) forget(node string) {
	for _, g := range m.typeRejects {
		g.DeletePartialMatch(prometheus.Labels{"node": node})
	}
}

// count is how many objects of kind the snapshot holds.
func count(s *store.Snapshot, kinds ...config.GroupKind) float64 {
	n := 0
	for _, k := range kinds {
		n += len(s.OfKind(k))
	}
	return float64(n)
}

func itoa(c int32) string { return sprintf("%d", c) }

// proxiesCollector is pilot_xds, counted at scrape time from the
// connected proxies rather than kept in step with every connect and
// disconnect.
type proxiesCollector struct {
	st   *streams
	desc *prometheus.Desc
}

func (c proxiesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c proxiesCollector) Collect(ch chan<- prometheus.Metric) {
	// Proxies do not send an Istio version (ISTIO_VERSION metadata), so
	// every connected proxy is counted under "unknown" rather than
	// guessing one.
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(len(c.st.all())), "unknown")
}

// RegisterMetrics adds the server's metrics to reg.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	m := s.streams.m
	// The counts are of the world proxies are being translated from (the
	// latest push, or the config at start before any).
	snap := func() *store.Snapshot { w, _ := s.scopes.current(); return w.Snap }
	cs := []prometheus.Collector{m.pushes, m.pushTime, m.sendTime, m.convergence, m.rejects, m.internalErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pilot_services", Help: "Total services known to pilot."},
			func() float64 { return count(snap(), config.Service, config.ServiceEntry) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pilot_virt_services", Help: "Total virtual services known to pilot."},
			func() float64 { return count(snap(), config.VirtualService) }),
		proxiesCollector{st: s.streams, desc: prometheus.NewDesc("pilot_xds", "Number of endpoints connected to this pilot using XDS.", []string{"version"}, nil)}}
	for _, g := range m.typeRejects {
		cs = append(cs, g)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
