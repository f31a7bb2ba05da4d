package upstream

import (
	"context"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// BenchmarkRoundTripOutlier is the cost of outlier detection per request:
// the h1 cluster row of BenchmarkRoundTrip over three hosts, without and
// with Istio's translation of a DestinationRule outlierDetection, in the
// same run. Besides ns/op it reports cpu-ns/op, the process's user and
// system CPU per request (client and server, which share the process).
// Run alternately, e.g.
//
//	go test -run '^$' -bench RoundTripOutlier -count 10 ./internal/proxy/upstream
func BenchmarkRoundTripOutlier(b *testing.B) {
	od := &xdsresource.OutlierDetection{
		Consecutive5xx: 3, ConsecutiveGatewayFailure: 5, ConsecutiveLocalOrigin: 5,
		Enforcing5xx: 100, EnforcingLocalOrigin: 100,
		Interval: time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second,
		MaxEjectionPercent: 100,
	}
	zero := 0.0
	for _, row := range []struct {
		name string
		xc   *xdsresource.Cluster
	}{
		{"plain", &xdsresource.Cluster{LBPolicy: xdsresource.LBLeastRequest}},
		{"outlier", &xdsresource.Cluster{LBPolicy: xdsresource.LBLeastRequest, Outlier: od, PanicThreshold: &zero}},
	} {
		b.Run(row.name, func(b *testing.B) {
			leak.Check(b)
			s1, s2, s3 := benchServer(b, false), benchServer(b, false), benchServer(b, false)
			c := newCluster(b, row.xc, Options{}, assignment(s1, s2, s3))
			ctx := context.Background()
			req, _ := http.NewRequest(http.MethodGet, "http://svc.ns/", nil)
			op := func() {
				resp, flags, err := c.RoundTrip(ctx, req, &Call{})
				if err != nil {
					b.Fatal(err, flags)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			for range 100 {
				op()
			}
			b.ReportAllocs()
			before := cpuTime()
			b.ResetTimer()
			for range b.N {
				op()
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-before)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
