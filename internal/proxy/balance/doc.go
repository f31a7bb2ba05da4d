// Package balance holds the sidecar's load balancers: for one cluster, a
// Balancer keeps the current set of upstream hosts (from EDS or a static
// load assignment) and picks one per request.
//
// Pick sits on every request's hot path, so it never allocates and never
// takes a lock: the host set is an immutable snapshot that Update builds
// off to the side and swaps in with one atomic store. Per-host state that
// must outlive updates (in-flight request counts, latency estimates) lives
// on *Host, and Update carries a Host over to the new snapshot whenever the
// endpoint stays, so least-request keeps seeing the requests already in
// flight to it.
//
// The algorithms follow Envoy's:
//
//   - ROUND_ROBIN: a shared counter (one per priority level) over the
//     hosts; with unequal weights the counter walks a precomputed
//     earliest-deadline-first schedule (see buildSchedule).
//   - RANDOM: uniform, or proportional to weight.
//   - LEAST_REQUEST: power of two choices by active requests (Envoy's
//     choice_count 2); see pickLeastRequest for weights.
//   - RING_HASH: a ketama ring of xxHash64("address:port_i") points
//     (minimum 1024, maximum 8M entries); see buildRing for its sizing.
//   - MAGLEV: the Maglev paper's table population with Envoy's weighting,
//     65537 entries by default.
//   - Peak EWMA (WithPeakEWMA, not an Envoy policy): least-request whose
//     load is latency_estimate * (active+1), as Linkerd and Finagle do.
//
// Endpoint selection follows Envoy's priority levels and panic mode
// (see priorityLoad). Each priority level's health is
// min(100%, 1.4 * healthy/all endpoints) (overprovisioning factor 1.4);
// traffic fills the levels in priority order up to their health, so a
// level with 2 of 4 endpoints healthy keeps 70% and spills 30% to the
// next, and is scaled up when the healths add up to less than 100%.
// While they do, a level whose healthy share is below the panic threshold
// (50% unless WithPanicThreshold) balances over all its endpoints,
// healthy or not, so that a mass health-check failure does not pile all
// traffic onto the few survivors; with every level in panic, traffic
// splits by endpoint count. Unhealthy endpoints are therefore kept in the
// set (Hosts, Host.Healthy) but picked only in panic. Update builds each
// level's policy structures on their own; Pick chooses a level by the
// split (by the request's hash for the hash policies, so a key stays on
// its level and its host) and then runs the policy within it. Locality
// weights are folded into host weights within a level (see flattenTier),
// which gives the same long-run share as Envoy's two-level
// locality-then-host pick; a level in panic uses endpoint weights alone,
// as Envoy does.
//
// Degraded endpoints (EDS DEGRADED) are Envoy's too (see tierLoad): each
// level's degraded hosts form a tier of their own, below the healthy
// hosts of every level, with availability min(100%, 1.4 * degraded/all);
// they take only the traffic that the healthy hosts' availability leaves,
// so 71 healthy and 29 degraded of 100 send 99% to the healthy and 1% to
// the degraded. Degraded hosts count with the healthy ones against the
// panic threshold, and a level in panic balances over all its hosts. A
// per-assignment overprovisioning factor and weighted priority health
// are not modelled.
package balance
