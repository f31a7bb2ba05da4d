package balance

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// outlierConfig is Envoy's defaults with Istio's success-rate switch-off
// already applied, edited by each test.
func outlierConfig(edit func(*xdsresource.OutlierDetection)) *xdsresource.OutlierDetection {
	od := &xdsresource.OutlierDetection{
		Consecutive5xx: 5, ConsecutiveGatewayFailure: 5, ConsecutiveLocalOrigin: 5,
		Enforcing5xx: 100, EnforcingLocalOrigin: 100,
		// Long enough never to fire: tests sweep by hand on a fake clock.
		Interval: time.Hour, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second,
		MaxEjectionPercent: 10,
	}
	if edit != nil {
		edit(od)
	}
	return od
}

// clock is a settable time for a detector.
type clock struct{ t time.Time }

func (c *clock) now() time.Time             { return c.t }
func (c *clock) advance(d time.Duration)    { c.t = c.t.Add(d) }
func newClock() *clock                      { return &clock{t: time.Unix(1_000_000, 0)} }
func panicAt(p float64) *float64            { return &p }
func (c *clock) install(b *Balancer) *clock { b.od.now = c.now; return c }

// outlierBalancer is a round-robin balancer over n equal hosts with
// outlier detection od and Istio's default panic threshold (0).
func outlierBalancer(t *testing.T, n int, od *xdsresource.OutlierDetection) (*Balancer, *clock) {
	t.Helper()
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin, Outlier: od, PanicThreshold: panicAt(0)})
	b.Update(cla(equalWeights(n)...))
	t.Cleanup(b.Stop)
	return b, newClock().install(b)
}

// picked counts the picks of each host over n picks.
func picked(b *Balancer, n int) map[*Host]int {
	out := map[*Host]int{}
	for range n {
		out[b.Pick(0, false)]++
	}
	return out
}

func report(b *Balancer, h *Host, status, times int) {
	for range times {
		b.ReportStatus(h, status)
	}
}

func TestOutlierConsecutive5xxEjects(t *testing.T) {
	b, _ := outlierBalancer(t, 3, outlierConfig(func(od *xdsresource.OutlierDetection) {
		od.Consecutive5xx, od.MaxEjectionPercent = 3, 100
	}))
	bad := b.Hosts()[0]
	report(b, bad, 500, 2)
	b.ReportStatus(bad, 200) // a success in between starts the count over
	report(b, bad, 503, 2)
	if got := picked(b, 30)[bad]; got != 10 {
		t.Fatalf("before the third 5xx in a row the host got %d of 30 picks, want 10", got)
	}
	b.ReportStatus(bad, 500)
	if got := picked(b, 300)[bad]; got != 0 {
		t.Fatalf("an ejected host got %d of 300 picks", got)
	}
	if !b.Ejected(bad) || bad.Healthy() {
		t.Errorf("Ejected %v Healthy %v, want an ejected, unhealthy host", b.Ejected(bad), bad.Healthy())
	}
	counters := map[string]uint64{}
	b.OutlierCounters(counters)
	want := map[string]uint64{
		"outlier_detection.ejections_active": 1, "outlier_detection.ejections_enforced_total": 1,
		"outlier_detection.ejections_enforced_consecutive_5xx": 1, "outlier_detection.ejections_detected_consecutive_5xx": 1,
		"outlier_detection.ejections_overflow":                             0,
		"outlier_detection.ejections_enforced_consecutive_gateway_failure": 0, "outlier_detection.ejections_detected_consecutive_gateway_failure": 0,
		"outlier_detection.ejections_enforced_consecutive_local_origin_failure": 0, "outlier_detection.ejections_detected_consecutive_local_origin_failure": 0,
	}
	if diff := cmp.Diff(want, counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

// Gateway errors are 502, 503 and 504 only; a 500 breaks the run. With
// consecutive_5xx off, only the gateway detector ejects.
func TestOutlierGatewayErrors(t *testing.T) {
	b, _ := outlierBalancer(t, 3, outlierConfig(func(od *xdsresource.OutlierDetection) {
		od.Consecutive5xx, od.Enforcing5xx = 0, 0
		od.ConsecutiveGatewayFailure, od.EnforcingGatewayFailure, od.MaxEjectionPercent = 3, 100, 100
	}))
	bad := b.Hosts()[1]
	report(b, bad, 502, 2)
	b.ReportStatus(bad, 500)
	report(b, bad, 504, 2)
	report(b, bad, 500, 10)
	if b.Ejected(bad) {
		t.Fatal("ejected without 3 gateway errors in a row")
	}
	report(b, bad, 503, 3)
	if !b.Ejected(bad) {
		t.Fatal("3 gateway errors in a row did not eject the host")
	}
}

// Envoy's default enforcing_consecutive_gateway_failure is 0: detected,
// not ejected.
func TestOutlierGatewayNotEnforcedByDefault(t *testing.T) {
	b, _ := outlierBalancer(t, 2, outlierConfig(func(od *xdsresource.OutlierDetection) {
		od.Consecutive5xx, od.ConsecutiveGatewayFailure, od.MaxEjectionPercent = 0, 2, 100
	}))
	report(b, b.Hosts()[0], 503, 5)
	counters := map[string]uint64{}
	b.OutlierCounters(counters)
	// Each detection resets the count, so 5 in a row is 2 detections.
	if b.Ejected(b.Hosts()[0]) || counters["outlier_detection.ejections_detected_consecutive_gateway_failure"] != 2 {
		t.Errorf("ejected %v, counters %v: want detected twice and not ejected", b.Ejected(b.Hosts()[0]), counters)
	}
}

func TestOutlierLocalOrigin(t *testing.T) {
	t.Run("counted as 5xx unless split", func(t *testing.T) {
		b, _ := outlierBalancer(t, 2, outlierConfig(func(od *xdsresource.OutlierDetection) {
			od.Consecutive5xx, od.MaxEjectionPercent = 3, 100
		}))
		h := b.Hosts()[0]
		b.ReportLocalFailure(h, false)
		b.ReportStatus(h, 500)
		b.ReportLocalFailure(h, true)
		if !b.Ejected(h) {
			t.Fatal("refused, 500, reset: want the host ejected on the third 5xx")
		}
	})
	t.Run("split", func(t *testing.T) {
		b, _ := outlierBalancer(t, 2, outlierConfig(func(od *xdsresource.OutlierDetection) {
			od.SplitLocalOrigin, od.ConsecutiveLocalOrigin, od.MaxEjectionPercent = true, 3, 100
			od.Consecutive5xx = 0
		}))
		h := b.Hosts()[0]
		report(b, h, 500, 4) // the host's own answers: 5xx, not local failures
		b.ReportLocalFailure(h, false)
		b.ReportLocalFailure(h, false)
		b.ReportStatus(h, 503) // it answered, so its connections work
		b.ReportLocalFailure(h, false)
		b.ReportLocalFailure(h, true) // a connection made, then reset: the run restarts at 1
		b.ReportLocalFailure(h, false)
		if b.Ejected(h) {
			t.Fatal("ejected without 3 local-origin failures in a row")
		}
		b.ReportLocalFailure(h, false)
		if !b.Ejected(h) {
			t.Fatal("3 connection failures in a row did not eject the host")
		}
		counters := map[string]uint64{}
		b.OutlierCounters(counters)
		if counters["outlier_detection.ejections_enforced_consecutive_local_origin_failure"] != 1 {
			t.Errorf("counters %v", counters)
		}
	})
	t.Run("tcp connections", func(t *testing.T) {
		b, _ := outlierBalancer(t, 2, outlierConfig(func(od *xdsresource.OutlierDetection) {
			od.Consecutive5xx, od.MaxEjectionPercent = 2, 100
		}))
		h := b.Hosts()[0]
		b.ReportLocalFailure(h, false)
		b.ReportConnected(h)
		b.ReportLocalFailure(h, false)
		if b.Ejected(h) {
			t.Fatal("a connection made in between must start the count over")
		}
		b.ReportLocalFailure(h, false)
		if !b.Ejected(h) {
			t.Fatal("2 connection failures in a row did not eject the host")
		}
	})
}

// max_ejection_percent is checked as Envoy does: (ejected+1)/hosts must
// stay within it, so Envoy's default 10% ejects nothing below 10 hosts.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	b, _ := outlierBalancer(t, 4, outlierConfig(func(od *xdsresource.OutlierDetection) {
		od.Consecutive5xx, od.MaxEjectionPercent = 1, 50
	}))
	hs := b.Hosts()
	for _, h := range hs[:3] {
		b.ReportStatus(h, 500)
	}
	var ejected int
	for _, h := range hs {
		if b.Ejected(h) {
			ejected++
		}
	}
	counters := map[string]uint64{}
	b.OutlierCounters(counters)
	if ejected != 2 || counters["outlier_detection.ejections_overflow"] != 1 {
		t.Errorf("%d ejected, counters %v: want 2 of 4 at 50%% and one overflow", ejected, counters)
	}
	if got := picked(b, 100); got[hs[2]] != 50 || got[hs[3]] != 50 {
		t.Errorf("picks %v, want the two hosts left to share them", got)
	}

	small, _ := outlierBalancer(t, 3, outlierConfig(func(od *xdsresource.OutlierDetection) { od.Consecutive5xx = 1 }))
	small.ReportStatus(small.Hosts()[0], 500)
	if small.Ejected(small.Hosts()[0]) {
		t.Error("with the default 10%, 1 of 3 hosts (33%) was ejected")
	}
	one, _ := outlierBalancer(t, 3, outlierConfig(func(od *xdsresource.OutlierDetection) { od.Consecutive5xx, od.AlwaysEjectOneHost = 1, true }))
	one.ReportStatus(one.Hosts()[0], 500)
	one.ReportStatus(one.Hosts()[1], 500)
	if !one.Ejected(one.Hosts()[0]) || one.Ejected(one.Hosts()[1]) {
		t.Error("always_eject_one_host: want the first host ejected and only it")
	}
}

// An ejection lasts base × backoff; the backoff grows with each ejection
// and decays by one per interval the host stays back.
func TestOutlierEjectionTime(t *testing.T) {
	b, clk := outlierBalancer(t, 2, outlierConfig(func(od *xdsresource.OutlierDetection) {
		od.Consecutive5xx, od.MaxEjectionPercent = 1, 100
		od.BaseEjectionTime, od.Interval = 2*time.Second, time.Second
	}))
	h := b.Hosts()[0]
	sweepAfter := func(d time.Duration) {
		clk.advance(d)
		b.od.sweep(b)
	}
	b.ReportStatus(h, 500)
	sweepAfter(1999 * time.Millisecond)
	if !b.Ejected(h) {
		t.Fatal("back before the base ejection time")
	}
	sweepAfter(time.Millisecond)
	if b.Ejected(h) {
		t.Fatal("still ejected after the base ejection time")
	}
	if got := picked(b, 10)[h]; got != 5 {
		t.Fatalf("a host back from ejection got %d of 10 picks, want 5", got)
	}
	b.ReportStatus(h, 500) // again at once: twice the time
	sweepAfter(3999 * time.Millisecond)
	if !b.Ejected(h) {
		t.Fatal("second ejection ended before 2 × base")
	}
	sweepAfter(time.Millisecond)
	if b.Ejected(h) {
		t.Fatal("still ejected after 2 × base")
	}
	for range 2 { // two intervals healthy: the backoff decays to 0
		sweepAfter(time.Second)
	}
	b.ReportStatus(h, 500)
	sweepAfter(2 * time.Second)
	if b.Ejected(h) {
		t.Fatal("after the backoff decayed, an ejection should last the base time again")
	}
	if len(b.od.monitors) != 1 || b.od.active != 0 {
		t.Fatalf("monitors %v active %d", b.od.monitors, b.od.active)
	}
	sweepAfter(time.Second)
	if len(b.od.monitors) != 0 {
		t.Errorf("a host back and decayed is still monitored: %v", b.od.monitors)
	}
}

// minHealthPercent is the panic threshold: below it the balancer uses
// every host, ejected or not (outlier detection is off in effect).
func TestOutlierPanicThreshold(t *testing.T) {
	od := outlierConfig(func(od *xdsresource.OutlierDetection) { od.Consecutive5xx, od.MaxEjectionPercent = 1, 100 })
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin, Outlier: od, PanicThreshold: panicAt(50)})
	defer b.Stop()
	b.Update(cla(equalWeights(4)...))
	hs := b.Hosts()
	b.ReportStatus(hs[0], 500)
	b.ReportStatus(hs[1], 500)
	if got := picked(b, 40); got[hs[0]] != 0 || got[hs[1]] != 0 {
		t.Fatalf("at 50%% healthy (not below 50%%), ejected hosts were picked: %v", got)
	}
	b.ReportStatus(hs[2], 500)
	if got := picked(b, 40); len(got) != 4 {
		t.Fatalf("below the panic threshold want all 4 hosts picked, got %v", got)
	}

	noPanic, _ := outlierBalancer(t, 2, od)
	noPanic.ReportStatus(noPanic.Hosts()[0], 500)
	noPanic.ReportStatus(noPanic.Hosts()[1], 500)
	if h := noPanic.Pick(0, false); h != nil {
		t.Errorf("every host ejected and no panic mode: picked %s, want none", h.Addr())
	}
}

// A host EDS removes takes its ejection with it; one EDS keeps stays
// ejected across the update.
func TestOutlierSurvivesUpdates(t *testing.T) {
	b, _ := outlierBalancer(t, 3, outlierConfig(func(od *xdsresource.OutlierDetection) { od.Consecutive5xx, od.MaxEjectionPercent = 1, 100 }))
	hs := b.Hosts()
	b.ReportStatus(hs[0], 500)
	b.ReportStatus(hs[2], 500)
	b.Update(cla(1, 1)) // drops 10.0.0.3, keeps 10.0.0.1
	if !b.Ejected(hs[0]) || b.od.active != 1 {
		t.Fatalf("ejected %v, active %d: want the kept host still ejected and one active", b.Ejected(hs[0]), b.od.active)
	}
	if got := picked(b, 10)[hs[0]]; got != 0 {
		t.Errorf("an ejected host got %d picks after an update", got)
	}
	b.ReportStatus(b.Hosts()[1], 500)
	if !b.Ejected(b.Hosts()[1]) {
		t.Error("with the removed host's ejection gone, the second host could be ejected (2 of 2 at 100%)")
	}
}

// Stop disarms the sweep for good: no goroutine, no more ejections.
func TestOutlierStop(t *testing.T) {
	od := outlierConfig(func(od *xdsresource.OutlierDetection) {
		od.Consecutive5xx, od.MaxEjectionPercent, od.Interval = 1, 100, time.Millisecond
	})
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin, Outlier: od})
	b.Update(cla(1, 1))
	b.ReportStatus(b.Hosts()[0], 500)
	b.mu.Lock()
	armed := b.od.armed
	b.mu.Unlock()
	if !armed {
		t.Fatal("an ejection did not arm the sweep")
	}
	b.Stop()
	b.ReportStatus(b.Hosts()[1], 500)
	if b.Ejected(b.Hosts()[1]) {
		t.Error("a stopped balancer ejected a host")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.od.timer.Stop() {
		t.Error("the sweep timer was still armed after Stop")
	}
}

// A cluster without outlier detection pays a nil check; with it, a good
// answer is a couple of atomic loads: no allocation either way.
func TestOutlierReportAllocs(t *testing.T) {
	plain := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin})
	plain.Update(cla(1, 1))
	od, _ := outlierBalancer(t, 2, outlierConfig(nil))
	for _, b := range []*Balancer{plain, od} {
		h := b.Hosts()[0]
		if n := testing.AllocsPerRun(1000, func() { b.ReportStatus(h, 200) }); n != 0 {
			t.Errorf("ReportStatus allocates %v times", n)
		}
	}
}

func BenchmarkReportStatus(b *testing.B) {
	for _, tc := range []struct {
		name string
		od   *xdsresource.OutlierDetection
	}{{"none", nil}, {"outlier", outlierConfig(nil)}} {
		b.Run(tc.name, func(b *testing.B) {
			bal := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin, Outlier: tc.od})
			defer bal.Stop()
			bal.Update(cla(1, 1, 1))
			h := bal.Hosts()[0]
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bal.ReportStatus(h, 200)
				}
			})
		})
	}
}
