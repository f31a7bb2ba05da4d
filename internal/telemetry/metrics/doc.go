// Package metrics keeps the sidecar's Istio standard metrics
// (istio_requests_total, istio_request_duration_milliseconds, the TCP
// byte and connection counters, ...) with Istio's names, labels and
// Envoy's histogram buckets, so Grafana's Istio dashboards and Kiali read
// a Trellis mesh unchanged, and writes them in the Prometheus text format.
//
// It is written for the request path: recording a request costs a few
// map lookups and atomic adds, with no allocation once its series exists.
// The label values that describe a workload come as interned *Peer
// values (one per workload and principal, parsed once from endpoint
// metadata or from a peer's x-envoy-peer-metadata), so a series key is a
// handful of pointers and small integers. prometheus/client_golang's
// vectors were not used: they hash every label value on every
// observation, and Istio's label set has 25 of them (see
// BenchmarkRecord); its text format is kept exact instead, and tested
// with Prometheus's own parser.
//
// Cardinality is bounded: label values come from the mesh's own
// workloads and services and from a small set of codes and flags, peers
// that cannot be identified are "unknown", and past MaxSeries new label
// combinations are counted in trellis_metrics_series_overflow_total
// instead of being created.
package metrics
