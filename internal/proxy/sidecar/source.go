package sidecar

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/trellismesh/trellis/internal/proxy/admin"
	"github.com/trellismesh/trellis/internal/proxy/hcm"
)

// The admin pages read the proxy through admin.Source.
var _ admin.Source = (*Proxy)(nil)

// appliedType is one type's applied[T], as readiness and the config dump
// see it.
type appliedType interface {
	dump() typeDump
	arrived() bool
}

func (a *applied[T]) dump() typeDump {
	return typeDump{Version: a.version, Resources: a.resources}
}

func (a *applied[T]) arrived() bool { return a.received }

// keyedType is an applied type with its config dump key.
type keyedType struct {
	key string
	a   appliedType
}

// appliedTypes are the four types (read them with versionsMu held).
func (p *Proxy) appliedTypes() []keyedType {
	return []keyedType{{"clusters", &p.cds}, {"endpoints", &p.eds}, {"listeners", &p.lds}, {"routes", &p.rds}}
}

// Ready is true once every resource type has arrived (an empty set counts)
// and the listeners are bound.
func (p *Proxy) Ready() (bool, string) {
	p.drainMu.Lock()
	draining := p.draining
	p.drainMu.Unlock()
	if draining {
		return false, "draining"
	}
	if !p.listening.Load() {
		return false, "listeners not bound"
	}
	p.versionsMu.Lock()
	defer p.versionsMu.Unlock()
	var missing []string
	for _, t := range p.appliedTypes() {
		if !t.a.arrived() {
			missing = append(missing, t.key)
		}
	}
	if len(missing) > 0 {
		return false, "no config yet for " + strings.Join(missing, ", ")
	}
	return true, ""
}

// typeDump is one resource type in /config_dump.
type typeDump struct {
	Version   string `json:"version"`
	Resources any    `json:"resources"` // map[string]*T: null before the first update
}

// ConfigDump is the applied config: the decoded resources of each type
// with the version that delivered them.
func (p *Proxy) ConfigDump() any {
	p.versionsMu.Lock()
	defer p.versionsMu.Unlock()
	out := map[string]typeDump{}
	for _, t := range p.appliedTypes() {
		out[t.key] = t.a.dump()
	}
	return out
}

// Clusters lists every cluster with its hosts.
func (p *Proxy) Clusters() []admin.Cluster {
	cs := p.clusters.Load()
	names := slices.Sorted(maps.Keys(cs.byName))
	out := make([]admin.Cluster, 0, len(names))
	for _, n := range names {
		c := cs.byName[n]
		ac := admin.Cluster{Name: n, Counters: map[string]uint64{}}
		for _, h := range c.Balancer().Hosts() {
			ac.Endpoints = append(ac.Endpoints, admin.Endpoint{Address: h.Addr(), Healthy: h.Healthy(), Degraded: h.Degraded(), Weight: h.Weight(), ActiveRequests: h.Active()})
		}
		st := c.Stats()
		ac.Counters["upstream_cx_total"] = st.CxTotal
		ac.Counters["upstream_cx_connect_fail"] = st.CxConnectFail
		ac.Counters["upstream_cx_overflow"] = st.CxOverflow
		ac.Counters["upstream_rq_pending_overflow"] = st.RqPendingOverflow
		ac.Counters["upstream_rq_overflow"] = st.RqOverflow
		c.Balancer().OutlierCounters(ac.Counters)
		ac.Counters["upstream_rq_retry"] = st.RqRetry
		ac.Counters["upstream_rq_retry_overflow"] = st.RqRetryOverflow
		ac.Counters["upstream_rq_retry_success"] = st.RqRetrySuccess
		out = append(out, ac)
	}
	return out
}

type stat struct {
	name  string
	value uint64
}

func (p *Proxy) stats() []stat {
	var out []stat
	add := func(name string, v uint64) { out = append(out, stat{name, v}) }
	// Envoy roots its downstream HTTP/2 codec stats at http2., one set for
	// every connection manager, rather than under http.<prefix>.
	var h2HeaderOverflow uint64
	for _, s := range []struct {
		prefix string
		srv    *hcm.Server
	}{{"http.outbound.", p.outbound}, {"http.inbound.", p.inbound}} {
		if s.srv == nil {
			continue
		}
		st := s.srv.Stats()
		add(s.prefix+"downstream_cx_total", uint64(st.CxTotal.Load()))
		add(s.prefix+"downstream_cx_active", uint64(st.CxActive.Load()))
		add(s.prefix+"downstream_rq_total", st.RqTotal.Load())
		add(s.prefix+"downstream_rq_1xx", st.Rq1xx.Load())
		add(s.prefix+"downstream_rq_2xx", st.Rq2xx.Load())
		add(s.prefix+"downstream_rq_3xx", st.Rq3xx.Load())
		add(s.prefix+"downstream_rq_4xx", st.Rq4xx.Load())
		add(s.prefix+"downstream_rq_5xx", st.Rq5xx.Load())
		add(s.prefix+"downstream_rq_timeout", st.RqHeaderTimeout.Load())
		add(s.prefix+"downstream_rq_header_too_large", st.RqHeaderTooLarge.Load())
		add(s.prefix+"downstream_rq_ambiguous_framing", st.RqAmbiguousFraming.Load())
		add(s.prefix+"downstream_rq_failed_path_normalization", st.RqFailedPathNormalization.Load())
		add(s.prefix+"downstream_rq_redirected_with_normalized_path", st.RqRedirectedWithNormalizedPath.Load())
		add(s.prefix+"downstream_cx_protocol_error", st.CxProtocolError.Load())
		add(s.prefix+"no_route", st.NoRoute.Load())
		add(s.prefix+"no_cluster", st.NoCluster.Load())
		add(s.prefix+"upstream_rq_timeout", st.RqTimeout.Load())
		add(s.prefix+"upstream_cx_connect_fail", st.UpstreamConnectFailures.Load())
		add(s.prefix+"no_healthy_upstream", st.NoHealthyUpstream.Load())
		add(s.prefix+"upstream_rq_overflow", st.Overflow.Load())
		// Mirroring's own (hcm/mirror.go): Envoy counts a mirror's requests
		// only in its cluster's stats, which the copies sent here are too.
		add(s.prefix+"mirror_dropped", st.RqMirrorDropped.Load())
		add(s.prefix+"mirror_skipped_body", st.RqMirrorSkipped.Load())
		h2HeaderOverflow += st.HeaderOverflow.Load()
	}
	add("http2.header_overflow", h2HeaderOverflow)
	for _, l := range p.lns {
		st := l.Stats()
		prefix := "listener." + l.Name() + "."
		add(prefix+"downstream_cx_total", st.CxTotal)
		add(prefix+"downstream_cx_active", uint64(st.CxActive))
		add(prefix+"downstream_cx_overflow", st.CxOverflow)
		add(prefix+"original_dst_failures", st.OriginalDstFailures)
	}
	add("tcp.downstream_cx_total", p.tcp.cxTotal.Load())
	add("tcp.downstream_cx_no_route", p.tcp.cxNoRoute.Load())
	add("tcp.upstream_cx_connect_fail", p.tcp.cxConnectFail.Load())
	add("tcp.downstream_cx_rx_bytes_total", p.tcp.txBytes.Load())
	add("tcp.downstream_cx_tx_bytes_total", p.tcp.rxBytes.Load())
	add("xds.update_success", p.updates.Load())
	add("xds.update_rejected", p.rejected.Load())
	for _, c := range p.Clusters() {
		for k, v := range c.Counters {
			add("cluster."+c.Name+"."+k, v)
		}
		var active int64
		for _, e := range c.Endpoints {
			active += e.ActiveRequests
		}
		add("cluster."+c.Name+".membership_total", uint64(len(c.Endpoints)))
		add("cluster."+c.Name+".upstream_rq_active", uint64(active))
	}
	p.dnsStats(add)
	p.tlsStats(add)
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// WriteStats writes every counter as "name: value" lines or in the
// Prometheus text format (names with dots and bars made safe, prefixed
// envoy_ as Envoy's own exposition does).
func (p *Proxy) WriteStats(w io.Writer, format string) error {
	if format == "prometheus" {
		return p.writePrometheus(w)
	}
	return p.writeEnvoyStats(w, false)
}

func (p *Proxy) writeEnvoyStats(w io.Writer, prometheus bool) error {
	for _, s := range p.stats() {
		var err error
		if prometheus {
			_, err = fmt.Fprintf(w, "envoy_%s %d\n", promName(s.name), s.value)
		} else {
			_, err = fmt.Fprintf(w, "%s: %d\n", s.name, s.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func promName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
