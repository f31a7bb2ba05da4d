package dashboard

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Istio's standard metric names (docs: telemetry contract).
const (
	mRequests      = "istio_requests_total"
	mDuration      = "istio_request_duration_milliseconds"
	mTCPSent       = "istio_tcp_sent_bytes_total"
	mTCPReceived   = "istio_tcp_received_bytes_total"
	mTCPOpened     = "istio_tcp_connections_opened_total"
	policyMutualTL = "mutual_tls"
)

// EdgeKey is traffic from one workload to another, as a reporter saw it.
type EdgeKey struct {
	Reporter         string
	SourceNS, Source string
	DestNS, Dest     string
	DestService      string // destination_service_name
	DestServiceNS    string
	Protocol         string
}

// counters are one edge's cumulative values in one proxy's scrape.
type counters struct {
	requests, failures float64
	mtls               bool
	buckets            map[float64]float64 // duration, cumulative by le
	tcpSent, tcpRecv   float64
	tcpOpened          float64
}

// Scrape is what one proxy reported at one moment, by edge.
type Scrape struct {
	At    time.Time
	Edges map[EdgeKey]*counters
}

// Aggregate folds one proxy's Istio samples into per-edge counters.
// Series that differ only in labels the dashboard does not show (response
// code, principal, version) add up into their edge.
func Aggregate(at time.Time, samples []Sample) Scrape {
	sc := Scrape{At: at, Edges: map[EdgeKey]*counters{}}
	get := func(l map[string]string) *counters {
		k := EdgeKey{
			Reporter: l["reporter"],
			SourceNS: l["source_workload_namespace"], Source: l["source_workload"],
			DestNS: l["destination_workload_namespace"], Dest: l["destination_workload"],
			DestService: l["destination_service_name"], DestServiceNS: l["destination_service_namespace"],
			Protocol: l["request_protocol"],
		}
		c := sc.Edges[k]
		if c == nil {
			c = &counters{buckets: map[float64]float64{}}
			sc.Edges[k] = c
		}
		if l["connection_security_policy"] == policyMutualTL {
			c.mtls = true
		}
		return c
	}
	for _, s := range samples {
		if !strings.HasPrefix(s.Name, "istio_") || math.IsNaN(s.Value) {
			continue
		}
		switch s.Name {
		case mRequests:
			c := get(s.Labels)
			c.requests += s.Value
			if failed(s.Labels) {
				c.failures += s.Value
			}
		case mDuration + "_bucket":
			le, err := parseFloat(s.Labels["le"])
			if err != nil {
				continue
			}
			get(s.Labels).buckets[le] += s.Value
		case mTCPSent:
			get(s.Labels).tcpSent += s.Value
		case mTCPReceived:
			get(s.Labels).tcpRecv += s.Value
		case mTCPOpened:
			get(s.Labels).tcpOpened += s.Value
		}
	}
	return sc
}

// failed is Kiali's error test: a 5xx, no response at all (code 0), or a
// gRPC status other than OK on a gRPC request.
func failed(l map[string]string) bool {
	code, err := strconv.Atoi(l["response_code"])
	if err == nil && (code >= 500 || code == 0) {
		return true
	}
	if l["request_protocol"] == "grpc" {
		if g := l["grpc_response_status"]; g != "" && g != "0" && g != "unknown" {
			return true
		}
	}
	return false
}

// Stats are an edge's or a service's figures over a window.
type Stats struct {
	RPS     float64  `json:"rps"`
	Success *float64 `json:"success"` // 0..1; null without requests
	P50     *float64 `json:"p50ms"`   // null without requests
	P99     *float64 `json:"p99ms"`
	TCPBps  float64  `json:"tcpBytesPerSec,omitempty"`
	TCPCps  float64  `json:"tcpConnsPerSec,omitempty"`
	MTLS    bool     `json:"mtls"`
	// Requests is the number of requests in the window.
	Requests float64 `json:"requests"`
}

// delta is what happened between two scrapes of one edge of one proxy.
// A counter that went down means the proxy restarted: the new value is
// then all there is since.
type delta struct {
	requests, failures float64
	buckets            map[float64]float64
	tcpBytes, tcpConns float64
	mtls               bool
}

func counterDelta(old, cur float64) float64 {
	if cur < old {
		return cur
	}
	return cur - old
}

func diff(old, cur *counters) delta {
	d := delta{buckets: map[float64]float64{}, mtls: cur.mtls}
	if old == nil {
		old = &counters{}
	}
	reset := cur.requests < old.requests
	d.requests = counterDelta(old.requests, cur.requests)
	d.failures = counterDelta(old.failures, cur.failures)
	if reset {
		d.failures = cur.failures
	}
	for le, c := range cur.buckets {
		if reset {
			d.buckets[le] = c
		} else {
			d.buckets[le] = counterDelta(old.buckets[le], c)
		}
	}
	d.tcpBytes = counterDelta(old.tcpSent+old.tcpRecv, cur.tcpSent+cur.tcpRecv)
	d.tcpConns = counterDelta(old.tcpOpened, cur.tcpOpened)
	return d
}

func (d *delta) add(o delta) {
	d.requests += o.requests
	d.failures += o.failures
	d.tcpBytes += o.tcpBytes
	d.tcpConns += o.tcpConns
	d.mtls = d.mtls || o.mtls
	if d.buckets == nil {
		d.buckets = map[float64]float64{}
	}
	for le, c := range o.buckets {
		d.buckets[le] += c
	}
}

func (d delta) stats(seconds float64) Stats {
	s := Stats{MTLS: d.mtls, Requests: d.requests}
	if seconds > 0 {
		s.RPS = d.requests / seconds
		s.TCPBps = d.tcpBytes / seconds
		s.TCPCps = d.tcpConns / seconds
	}
	if d.requests > 0 {
		ok := 1 - d.failures/d.requests
		s.Success = &ok
	}
	if p := Quantile(0.5, d.buckets); !math.IsNaN(p) {
		s.P50 = &p
	}
	if p := Quantile(0.99, d.buckets); !math.IsNaN(p) {
		s.P99 = &p
	}
	return s
}

// Window sums each edge's change from the first to the last of one
// proxy's scrapes (oldest first) and says how many seconds that spans.
func Window(scrapes []Scrape) (map[EdgeKey]delta, float64) {
	out := map[EdgeKey]delta{}
	if len(scrapes) < 2 {
		return out, 0
	}
	// Step scrape by scrape so a restart in the middle loses nothing but
	// the requests between the last scrape and the restart.
	for i := 1; i < len(scrapes); i++ {
		for k, cur := range scrapes[i].Edges {
			d := out[k]
			d.add(diff(scrapes[i-1].Edges[k], cur))
			out[k] = d
		}
	}
	return out, scrapes[len(scrapes)-1].At.Sub(scrapes[0].At).Seconds()
}
