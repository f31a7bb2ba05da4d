package balance

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Outlier detection, as Envoy's consecutive-error detectors do it
// (source/common/upstream/outlier_detection_impl.cc):
//
//   - The caller reports each request's outcome: the status the host
//     answered (ReportStatus) or a failure on the proxy's side, a
//     connection refused, reset or timed out (ReportLocalFailure). A 5xx
//     adds to the host's consecutive 5xx count, a 502/503/504 to its
//     gateway-error count as well, and anything else resets both. Unless
//     split_external_local_origin_errors, a local failure counts as a
//     503 (Envoy maps connect failures to 503 and timeouts to 504, both
//     gateway errors); with it, it counts against its own threshold, and
//     any response the host gives resets that count, as a connection
//     that worked does in Envoy.
//   - The count that reaches its threshold (exactly: further errors do
//     not re-trigger until it is reset) is a detection. Unless the host
//     is already ejected, the detection resets that count and ejects the
//     host when (ejected+1)/hosts stays within max_ejection_percent (or
//     always_eject_one_host and none is ejected) and the enforcing
//     percentage draws it.
//   - An ejected host is unhealthy to the balancer: the host set is
//     rebuilt with it unhealthy, so priority spillover and panic mode
//     (healthy_panic_threshold, which Istio sets from minHealthPercent,
//     0 by default) treat it as Envoy's FAILED_OUTLIER_CHECK.
//   - Every interval a sweep returns hosts whose ejection has lasted
//     min(base_ejection_time × backoff, max_ejection_time) + jitter; the
//     backoff grows by one per ejection and shrinks by one per interval a
//     host stays healthy after it came back, so a host that keeps failing
//     is ejected for longer each time.
//
// Cost: a report reads the host's counters and writes only when they
// change, so a cluster answering well costs an atomic load or two per
// request and takes no lock; the balancer's lock is taken only on a
// detection and by the sweep. The sweep's timer is armed only while a
// host is ejected or its backoff has not decayed, and Stop disarms it
// for good.

// ejectionKind is what a host was detected for.
type ejectionKind uint8

const (
	eject5xx ejectionKind = iota
	ejectGateway
	ejectLocalOrigin
	ejectionKinds
)

// kindNames are Envoy's stat suffixes for each kind.
var kindNames = [ejectionKinds]string{"consecutive_5xx", "consecutive_gateway_failure", "consecutive_local_origin_failure"}

// hostOutlier is a host's consecutive-error counts, written on the
// request path.
type hostOutlier struct {
	c5xx, gateway, local atomic.Uint32
}

func (o *hostOutlier) reset(kind ejectionKind) {
	switch kind {
	case eject5xx:
		o.c5xx.Store(0)
	case ejectGateway:
		o.gateway.Store(0)
	case ejectLocalOrigin:
		o.local.Store(0)
	}
}

// monitor is a host's ejection state, by address, from its first
// ejection until its backoff has decayed; under Balancer.mu.
type monitor struct {
	ejected                bool
	backoff                uint32
	ejectedAt, unejectedAt time.Time
	jitter                 time.Duration
}

// detector is a cluster's outlier detection. Fields other than cfg and
// the stats are under Balancer.mu.
type detector struct {
	cfg xdsresource.OutlierDetection
	now func() time.Time

	cla      *xdsresource.ClusterLoadAssignment // as last given to Update
	monitors map[string]*monitor
	active   int // ejected hosts
	timer    *time.Timer
	armed    bool
	stopped  bool

	// Stats, read by the admin pages without the lock.
	ejectionsActive         atomic.Int64
	overflow, enforcedTotal atomic.Uint64
	detected, enforced      [ejectionKinds]atomic.Uint64
}

// applyOutlier sets up what the cluster's outlier_detection and
// common_lb_config ask of the balancer; New calls it before the options,
// which may override the panic threshold.
func (b *Balancer) applyOutlier(c *xdsresource.Cluster) {
	if c.PanicThreshold != nil {
		b.panicThreshold = *c.PanicThreshold
	}
	if c.Outlier == nil || c.Type == xdsresource.ClusterOriginalDst {
		// ORIGINAL_DST hosts are made per destination, outside the set
		// the balancer could mark unhealthy.
		return
	}
	b.od = &detector{cfg: *c.Outlier, now: time.Now, monitors: map[string]*monitor{}}
}

// ReportStatus records the HTTP status h answered a request with, for
// outlier detection; a no-op for clusters without it.
func (b *Balancer) ReportStatus(h *Host, status int) {
	if d := b.od; d != nil {
		d.status(b, h, status)
	}
}

// ReportLocalFailure records a request to h that failed on the proxy's
// side of the exchange: the connection could not be made (connected
// false), or was reset or timed out once it was.
func (b *Balancer) ReportLocalFailure(h *Host, connected bool) {
	if d := b.od; d != nil {
		d.localFailure(b, h, connected)
	}
}

// ReportConnected records a TCP proxy connection made to h, which Envoy's
// tcp_proxy reports as a success (LocalOriginConnectSuccessFinal).
func (b *Balancer) ReportConnected(h *Host) {
	if d := b.od; d != nil {
		if d.cfg.SplitLocalOrigin {
			clear32(&h.outlier.local)
			return
		}
		d.status(b, h, 200)
	}
}

func clear32(v *atomic.Uint32) {
	if v.Load() != 0 {
		v.Store(0)
	}
}

func (d *detector) status(b *Balancer, h *Host, code int) {
	o := &h.outlier
	if d.cfg.SplitLocalOrigin {
		// An answer means the connection worked.
		clear32(&o.local)
	}
	if code < 500 || code > 599 {
		clear32(&o.c5xx)
		clear32(&o.gateway)
		return
	}
	d.serverError(b, h, code)
}

func (d *detector) serverError(b *Balancer, h *Host, code int) {
	o := &h.outlier
	if code >= 502 && code <= 504 {
		if o.gateway.Add(1) == d.cfg.ConsecutiveGatewayFailure {
			d.detect(b, h, ejectGateway)
		}
	} else {
		clear32(&o.gateway)
	}
	if o.c5xx.Add(1) == d.cfg.Consecutive5xx {
		d.detect(b, h, eject5xx)
	}
}

func (d *detector) localFailure(b *Balancer, h *Host, connected bool) {
	if !d.cfg.SplitLocalOrigin {
		d.serverError(b, h, 503)
		return
	}
	var n uint32
	if connected {
		// Envoy counted the connection's success first.
		h.outlier.local.Store(1)
		n = 1
	} else {
		n = h.outlier.local.Add(1)
	}
	if n == d.cfg.ConsecutiveLocalOrigin {
		d.detect(b, h, ejectLocalOrigin)
	}
}

// detect handles a count reaching its threshold.
func (d *detector) detect(b *Balancer, h *Host, kind ejectionKind) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d.stopped || b.hosts[h.addr] != h {
		return // the host left the set, or the cluster was retired
	}
	if m := d.monitors[h.addr]; m != nil && m.ejected {
		return
	}
	d.detected[kind].Add(1)
	d.eject(b, h, kind)
	h.outlier.reset(kind)
}

// eject ejects h if max_ejection_percent and the enforcing percentage
// let it. b.mu is held.
func (d *detector) eject(b *Balancer, h *Host, kind ejectionKind) {
	allowed := 100*float64(d.active+1)/float64(len(b.hosts)) <= float64(d.cfg.MaxEjectionPercent) ||
		(d.cfg.AlwaysEjectOneHost && d.active == 0)
	if !allowed {
		d.overflow.Add(1)
		return
	}
	if !d.enforce(b, kind) {
		return
	}
	m := d.monitors[h.addr]
	if m == nil {
		m = &monitor{}
		d.monitors[h.addr] = m
	}
	m.ejected, m.ejectedAt, m.jitter = true, d.now(), 0
	if j := d.cfg.MaxEjectionJitter; j > 0 {
		m.jitter = time.Duration(bounded(b.rand.Uint64(), uint64(j)+1))
	}
	if time.Duration(m.backoff)*d.cfg.BaseEjectionTime < d.cfg.MaxEjectionTime+d.cfg.BaseEjectionTime {
		m.backoff++
	}
	d.active++
	d.ejectionsActive.Store(int64(d.active))
	d.enforcedTotal.Add(1)
	d.enforced[kind].Add(1)
	b.update(d.effective(d.cla))
	d.arm(b)
}

func (d *detector) enforce(b *Balancer, kind ejectionKind) bool {
	p := d.cfg.Enforcing5xx
	switch kind {
	case ejectGateway:
		p = d.cfg.EnforcingGatewayFailure
	case ejectLocalOrigin:
		p = d.cfg.EnforcingLocalOrigin
	}
	return p >= 100 || (p > 0 && bounded(b.rand.Uint64(), 100) < uint64(p))
}

// sweep is the interval timer's work: hosts whose ejection is over come
// back, and the backoff of those back for an interval decays.
func (d *detector) sweep(b *Balancer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d.armed = false
	if d.stopped {
		return
	}
	now := d.now()
	back := false
	for addr, m := range d.monitors {
		switch {
		case m.ejected:
			ejection := min(time.Duration(m.backoff)*d.cfg.BaseEjectionTime, d.cfg.MaxEjectionTime) + m.jitter
			if now.Sub(m.ejectedAt) >= ejection {
				m.ejected, m.unejectedAt = false, now
				d.active--
				back = true
				if h := b.hosts[addr]; h != nil {
					// So that a few new errors do not eject it again at once.
					for k := range ejectionKinds {
						h.outlier.reset(k)
					}
				}
			}
		case now.Sub(m.unejectedAt) >= d.cfg.Interval && m.backoff > 0:
			m.backoff--
		}
		if !m.ejected && m.backoff == 0 {
			delete(d.monitors, addr)
		}
	}
	d.ejectionsActive.Store(int64(d.active))
	if back {
		b.update(d.effective(d.cla))
	}
	if len(d.monitors) > 0 {
		d.arm(b)
	}
}

// arm schedules the next sweep unless one is scheduled. b.mu is held.
func (d *detector) arm(b *Balancer) {
	if d.armed || d.stopped {
		return
	}
	d.armed = true
	if d.timer == nil {
		d.timer = time.AfterFunc(d.cfg.Interval, func() { d.sweep(b) })
		return
	}
	d.timer.Reset(d.cfg.Interval)
}

// Stop ends the balancer's background work, outlier detection's sweeps,
// for a cluster that is retired: no host is ejected or brought back
// after it. The balancer still picks.
func (b *Balancer) Stop() {
	d := b.od
	if d == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d.stopped = true
	if d.timer != nil {
		d.timer.Stop()
	}
}

// outlierView records cla as the assignment ejections are applied to,
// forgets hosts it no longer has (their ejection ends with them, as in
// Envoy), and returns it with the ejected hosts unhealthy. b.mu is held.
func (b *Balancer) outlierView(cla *xdsresource.ClusterLoadAssignment) *xdsresource.ClusterLoadAssignment {
	d := b.od
	if d == nil {
		return cla
	}
	d.cla = cla
	if len(d.monitors) > 0 {
		present := map[string]bool{}
		var buf []byte
		for _, l := range claLocalities(cla) {
			for _, ep := range l.Endpoints {
				buf = appendAddr(buf[:0], ep.Address, ep.Port)
				present[string(buf)] = true
			}
		}
		for addr, m := range d.monitors {
			if !present[addr] {
				if m.ejected {
					d.active--
				}
				delete(d.monitors, addr)
			}
		}
		d.ejectionsActive.Store(int64(d.active))
	}
	return d.effective(cla)
}

func claLocalities(cla *xdsresource.ClusterLoadAssignment) []xdsresource.LocalityEndpoints {
	if cla == nil {
		return nil
	}
	return cla.Localities
}

// effective is cla with the ejected hosts unhealthy (not degraded
// either: Envoy's FAILED_OUTLIER_CHECK makes a host unhealthy whatever
// EDS said), copied only where it differs.
func (d *detector) effective(cla *xdsresource.ClusterLoadAssignment) *xdsresource.ClusterLoadAssignment {
	if d.active == 0 || cla == nil {
		return cla
	}
	out := *cla
	out.Localities = slices.Clone(cla.Localities)
	var buf []byte
	for i := range out.Localities {
		l := &out.Localities[i]
		copied := false
		for j, ep := range l.Endpoints {
			buf = appendAddr(buf[:0], ep.Address, ep.Port)
			if m := d.monitors[string(buf)]; m == nil || !m.ejected {
				continue
			}
			if !copied {
				l.Endpoints, copied = slices.Clone(l.Endpoints), true
			}
			l.Endpoints[j].Healthy, l.Endpoints[j].Degraded = false, false
		}
	}
	return &out
}

// Ejected reports whether outlier detection has h ejected.
func (b *Balancer) Ejected(h *Host) bool {
	d := b.od
	if d == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := d.monitors[h.addr]
	return m != nil && m.ejected && b.hosts[h.addr] == h
}

// OutlierCounters adds the cluster's outlier detection stats, by Envoy's
// names (outlier_detection.*), to counters; none without it.
func (b *Balancer) OutlierCounters(counters map[string]uint64) {
	d := b.od
	if d == nil {
		return
	}
	const p = "outlier_detection."
	counters[p+"ejections_active"] = uint64(d.ejectionsActive.Load())
	counters[p+"ejections_overflow"] = d.overflow.Load()
	counters[p+"ejections_enforced_total"] = d.enforcedTotal.Load()
	for k, name := range kindNames {
		counters[p+"ejections_enforced_"+name] = d.enforced[k].Load()
		counters[p+"ejections_detected_"+name] = d.detected[k].Load()
	}
}
