// Package demo holds the small HTTP services of the shop demo
// (examples/shop), built into the trellis binary so that `trellis up` can run
// them as pod containers with no extra build: `trellis demo reviews`.
//
// The services mirror Istio's Bookinfo where it has an equivalent (frontend
// → reviews v1/v2/v3 → ratings) and add the payment trio the seed examples
// secure (checkout-service and refund-service → payment-service), plus a
// sleep client. Each one serves plain HTTP on $POD_IP:9080, answers
// /healthz for readiness probes, calls its upstreams by their mesh names
// through the environment's HTTP proxy (which explicit-mode sidecars set)
// and forwards the headers that mesh routing and tracing look at.
//
// To make the mesh's retries visible without changing the user's config,
// payment-service fails the first try of an order whose id starts with
// "flaky-" with a 503 (logged as "simulated failure") and pays the next
// try: a checkout of "flaky-1" through the shop's sidecars comes back paid,
// because checkout-service's sidecar retried (payment-retries.yaml), while
// the same checkout without a retrying proxy answers 502. It remembers the
// failed orders awaiting their retry up to a bound (the oldest forgotten
// first), and forgets an order once paid, so each new checkout of the same
// order fails once again.
package demo
