package metrics

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Metric names, as Istio's standard metrics name them.
const (
	RequestsTotal         = "istio_requests_total"
	RequestDuration       = "istio_request_duration_milliseconds"
	RequestBytes          = "istio_request_bytes"
	ResponseBytes         = "istio_response_bytes"
	RequestMessagesTotal  = "istio_request_messages_total"
	ResponseMessagesTotal = "istio_response_messages_total"
	TCPSentBytesTotal     = "istio_tcp_sent_bytes_total"
	TCPReceivedBytesTotal = "istio_tcp_received_bytes_total"
	TCPOpenedTotal        = "istio_tcp_connections_opened_total"
	TCPClosedTotal        = "istio_tcp_connections_closed_total"
)

var les = func() []string {
	out := make([]string, 0, len(Buckets)+1)
	for _, b := range Buckets {
		out = append(out, strconv.FormatFloat(b, 'g', -1, 64))
	}
	return append(out, "+Inf")
}()

// WritePrometheus writes every series in the Prometheus text format
// (version 0.0.4), series of a metric sorted by their labels.
func (r *Registry) WritePrometheus(w io.Writer) error {
	r.mu.RLock()
	https := make([]*httpSeries, 0, len(r.http))
	for _, s := range r.http {
		https = append(https, s)
	}
	tcps := make([]*TCPSeries, 0, len(r.tcp))
	for _, s := range r.tcp {
		tcps = append(tcps, s)
	}
	r.mu.RUnlock()
	slices.SortFunc(https, func(a, b *httpSeries) int { return strings.Compare(a.labels, b.labels) })
	slices.SortFunc(tcps, func(a, b *TCPSeries) int { return strings.Compare(a.labels, b.labels) })

	bw := bufio.NewWriter(w)
	counter := func(name, help string, n int, get func(i int) (rep Reporter, labels string, v uint64, ok bool)) {
		r.writeFamily(bw, name, "counter", help, n, func(i int) (Reporter, string, []uint64, uint64, bool) {
			rep, l, v, ok := get(i)
			return rep, l, nil, v, ok
		})
	}
	counter(RequestsTotal, "Requests, by Istio's standard labels.", len(https), func(i int) (Reporter, string, uint64, bool) {
		return https[i].rep, https[i].labels, https[i].requests.Load(), true
	})
	hist := func(name, help string, pick func(*httpSeries) *histogram) {
		r.writeFamily(bw, name, "histogram", help, len(https), func(i int) (Reporter, string, []uint64, uint64, bool) {
			h := pick(https[i])
			counts := make([]uint64, len(h.counts))
			for j := range h.counts {
				counts[j] = h.counts[j].Load()
			}
			return https[i].rep, https[i].labels, counts, h.sum.Load(), true
		})
	}
	hist(RequestDuration, "Request duration in milliseconds.", func(s *httpSeries) *histogram { return &s.duration })
	hist(RequestBytes, "Request size in bytes (headers and body).", func(s *httpSeries) *histogram { return &s.reqB })
	hist(ResponseBytes, "Response size in bytes (headers and body).", func(s *httpSeries) *histogram { return &s.respB })
	counter(RequestMessagesTotal, "gRPC messages sent by the client.", len(https), func(i int) (Reporter, string, uint64, bool) {
		return https[i].rep, https[i].labels, https[i].reqMsgs.Load(), https[i].grpc
	})
	counter(ResponseMessagesTotal, "gRPC messages sent by the server.", len(https), func(i int) (Reporter, string, uint64, bool) {
		return https[i].rep, https[i].labels, https[i].respMsgs.Load(), https[i].grpc
	})
	tcp := func(name, help string, get func(*TCPSeries) uint64) {
		counter(name, help, len(tcps), func(i int) (Reporter, string, uint64, bool) {
			return tcps[i].rep, tcps[i].labels, get(tcps[i]), true
		})
	}
	tcp(TCPSentBytesTotal, "Bytes sent to the downstream on TCP connections.", func(s *TCPSeries) uint64 { return s.sent.Load() })
	tcp(TCPReceivedBytesTotal, "Bytes received from the downstream on TCP connections.", func(s *TCPSeries) uint64 { return s.received.Load() })
	tcp(TCPOpenedTotal, "TCP connections opened.", func(s *TCPSeries) uint64 { return s.opened.Load() })
	tcp(TCPClosedTotal, "TCP connections closed.", func(s *TCPSeries) uint64 { return s.closed.Load() })
	if n := r.overflow.Load(); n > 0 {
		bw.WriteString("# HELP trellis_metrics_series_overflow_total Observations not recorded because the series limit was reached.\n# TYPE trellis_metrics_series_overflow_total counter\n")
		bw.WriteString("trellis_metrics_series_overflow_total " + strconv.FormatUint(n, 10) + "\n")
	}
	return bw.Flush()
}

// writeFamily writes one metric's series: counters (buckets nil, value
// the count) or histograms (buckets per bound, value the raw sum). Series
// whose reporter turned the metric off are skipped; labels a reporter
// removed from it are dropped and the series that then coincide are
// added together.
func (r *Registry) writeFamily(bw *bufio.Writer, name, typ, help string, n int, get func(i int) (Reporter, string, []uint64, uint64, bool)) {
	type agg struct {
		labels  string
		buckets []uint64
		value   uint64
	}
	var out []*agg
	merged := map[string]*agg{}
	for i := range n {
		rep, labels, buckets, v, ok := get(i)
		if !ok {
			continue
		}
		var removed []string
		if c := r.config[rep].Load(); c != nil {
			if c.Disabled[name] {
				continue
			}
			removed = c.Removed[name]
		}
		if len(removed) > 0 {
			labels = dropLabels(labels, removed)
		}
		if a := merged[labels]; a != nil {
			a.value += v
			for j := range buckets {
				a.buckets[j] += buckets[j]
			}
			continue
		}
		a := &agg{labels: labels, buckets: buckets, value: v}
		merged[labels] = a
		out = append(out, a)
	}
	if len(out) == 0 {
		return
	}
	slices.SortFunc(out, func(a, b *agg) int { return strings.Compare(a.labels, b.labels) })
	bw.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
	for _, a := range out {
		if a.buckets == nil {
			bw.WriteString(name + "{" + a.labels + "} " + strconv.FormatUint(a.value, 10) + "\n")
			continue
		}
		var cum uint64
		for j, c := range a.buckets {
			cum += c
			bw.WriteString(name + "_bucket{" + a.labels + `,le="` + les[j] + `"} ` + strconv.FormatUint(cum, 10) + "\n")
		}
		sum := float64(a.value)
		if name == RequestDuration {
			sum /= 1e6 // nanoseconds → milliseconds
		}
		bw.WriteString(name + "_sum{" + a.labels + "} " + strconv.FormatFloat(sum, 'g', -1, 64) + "\n")
		bw.WriteString(name + "_count{" + a.labels + "} " + strconv.FormatUint(cum, 10) + "\n")
	}
}

// dropLabels removes the named labels from a rendered label set.
func dropLabels(labels string, names []string) string {
	var b strings.Builder
	for rest := labels; rest != ""; {
		// Each pair is name="value" with the value escaped, pairs joined
		// by commas: the pair ends at the first unescaped quote after =".
		eq := strings.Index(rest, `="`)
		if eq < 0 {
			break
		}
		end := eq + 2
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		pair := rest[:min(end+1, len(rest))]
		rest = strings.TrimPrefix(rest[min(end+1, len(rest)):], ",")
		if slices.Contains(names, pair[:eq]) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pair)
	}
	return b.String()
}
