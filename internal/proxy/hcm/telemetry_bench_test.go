package hcm_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
	"github.com/trellismesh/trellis/internal/telemetry/tracing"
)

// discardExporter takes the tracer's batches and drops them, so that a
// benchmark counts building and queueing spans, not a collector.
type discardExporter struct{}

func (discardExporter) Export(context.Context, []byte) error { return nil }

// BenchmarkFastPathTelemetry is BenchmarkFastPath's plain route with the
// sidecar's telemetry (internal/proxy/sidecar wires it the same way): none
// (a chain whose istio.stats filter is absent), Istio's metrics (the
// default), metrics and tracing at 1 % (the budget case), and
// tracing at 100 % (every request's span built and exported, to price one
// span). bench/sidecar.sh's (bn), (b) and (bt) are these on two sidecars.
func BenchmarkFastPathTelemetry(b *testing.B) {
	reg := metrics.New()
	self := reg.Peers.Own(metrics.Workload{Name: "sleep", Namespace: "default", App: "sleep", CanonicalService: "sleep"}, "")
	tel := func(c *hcm.Chain) *hcm.Telemetry {
		return &hcm.Telemetry{Metrics: reg, Self: func() *metrics.Peer { return self },
			Chain: func(*hcm.Conn) *hcm.Chain { return c }}
	}
	tracer := func(b *testing.B) *tracing.Tracer {
		tr := tracing.New(tracing.Config{ServiceName: "sleep.default"}, discardExporter{})
		b.Cleanup(func() { _ = tr.Stop(context.Background()) })
		return tr
	}
	cases := []struct {
		name  string
		chain func(b *testing.B) *hcm.Chain
	}{
		{"none", func(*testing.B) *hcm.Chain { return &hcm.Chain{NoMetrics: true} }},
		{"metrics", func(*testing.B) *hcm.Chain { return &hcm.Chain{} }},
		{"metrics+tracing-1%", func(b *testing.B) *hcm.Chain { return &hcm.Chain{Tracer: tracer(b), Sampling: 1} }},
		{"metrics+tracing-100%", func(b *testing.B) *hcm.Chain { return &hcm.Chain{Tracer: tracer(b), Sampling: 100} }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			benchFastPathConfig(b, hcm.Config{Outbound: true, Telemetry: tel(c.chain(b))},
				&xdsresource.RouteAction{Timeout: 15 * time.Second})
		})
	}
}

// benchFastPathConfig is benchFastPath with the front end's config given.
func benchFastPathConfig(b *testing.B, cfg hcm.Config, action *xdsresource.RouteAction) {
	f := startFrontEndRoute(b, rawBackend(b), cfg, action)
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 8<<10)
	do := func() error {
		if _, err := c.Write(benchRequest); err != nil {
			return err
		}
		n, err := readRawMessage(br)
		if err == nil && n != len(benchBody) {
			err = errors.New("short answer")
		}
		return err
	}
	for range 100 {
		if err := do(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := do(); err != nil {
			b.Fatal(err)
		}
	}
}
