package translate

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previouspriorities "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Retries as istiod sets them (pilot's route/retry package, for our
// istio.io/api pin):
//
//   - a route whose VirtualService sets no retries gets MeshConfig's
//     defaultHttpRetryPolicy, or without one Istio's default: 2 retries on
//     connect-failure, refused-stream, unavailable, cancelled and
//     retriable-status-codes with no status code listed (istiod's
//     EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, on by default, leaves 503
//     out, so an app's own 503 is not retried);
//   - attempts 0 turns retries off;
//   - otherwise the default with the user's fields over it: attempts,
//     retryOn (numbers become retriable_status_codes, and
//     retriable-status-codes is added for them), perTryTimeout,
//     retryIgnorePreviousHosts, retryRemoteLocalities, backoff;
//   - a retry prefers a host not tried yet (previous_hosts, up to 5
//     picks), except on a route that hashes, whose retries must stay on
//     the hashed host.
const (
	defaultRetryOn         = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	defaultRetries         = 2
	hostSelectionAttempts  = 5
	previousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"
	previousPrioritiesName = "envoy.retry_priorities.previous_priorities"
)

// retryPolicy is the route's retry policy for VirtualService retries in
// (nil: the mesh's default), or nil when retries are off. A proxyless
// gRPC client gets none: grpc-go reads only part of Envoy's policy
// (gRPC status conditions), so it keeps its own retry behaviour.
func (t *translation) retryPolicy(in *networking.HTTPRetry, hashed bool) *routev3.RetryPolicy {
	if t.proxy.Generator == GeneratorGRPC {
		return nil
	}
	if in == nil {
		in = t.w.Mesh.GetDefaultHttpRetryPolicy()
	}
	out := &routev3.RetryPolicy{
		NumRetries:                    wrapperspb.UInt32(defaultRetries),
		RetryOn:                       defaultRetryOn,
		HostSelectionRetryMaxAttempts: hostSelectionAttempts,
	}
	previousHosts := !hashed
	if in != nil {
		if in.GetAttempts() <= 0 {
			return nil
		}
		out.NumRetries = wrapperspb.UInt32(uint32(in.GetAttempts()))
		if in.GetRetryOn() != "" {
			out.RetryOn, out.RetriableStatusCodes = splitRetryOn(in.GetRetryOn())
			if len(out.RetriableStatusCodes) > 0 && !strings.Contains(out.RetryOn, "retriable-status-codes") {
				out.RetryOn = joinNonEmpty(out.RetryOn, "retriable-status-codes")
			}
		}
		if d := in.GetPerTryTimeout(); d != nil {
			out.PerTryTimeout = d
		}
		if v := in.GetRetryIgnorePreviousHosts(); v != nil {
			previousHosts = v.GetValue()
		}
		if in.GetRetryRemoteLocalities().GetValue() {
			cfg, _ := anypb.New(&previouspriorities.PreviousPrioritiesConfig{UpdateFrequency: 2})
			out.RetryPriority = &routev3.RetryPolicy_RetryPriority{
				Name:       previousPrioritiesName,
				ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: cfg},
			}
		}
		if b := in.GetBackoff(); b != nil {
			out.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: b}
		}
	}
	if previousHosts {
		out.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{{Name: previousHostsPredicate}}
	}
	return out
}

// splitRetryOn parts retryOn into Envoy's conditions and the HTTP status
// codes among them, as istiod does: a number that is a known HTTP status
// is a code.
func splitRetryOn(s string) (string, []uint32) {
	var on []string
	var codes []uint32
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if n, err := strconv.Atoi(part); err == nil && http.StatusText(n) != "" {
			codes = append(codes, uint32(n))
			continue
		}
		on = append(on, part)
	}
	return strings.Join(on, ","), codes
}

func joinNonEmpty(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

// hashes reports whether the route action hashes requests to hosts.
func hashes(a *routev3.RouteAction) bool { return len(a.GetHashPolicy()) > 0 }

// applyRetryBudget bounds the cluster's retries in flight: by a share of
// its active requests when the DestinationRule sets trafficPolicy.
// retryBudget (on the circuit breaker thresholds, where Envoy has it
// replace max_retries; Envoy's defaults, 20 % and at least 3, fill what
// is unset), else by connectionPool.http.maxRetries, else not at all.
// The last is istiod's default (max_retries 2³²−1): Envoy's own 3 is
// too few for a busy client whose retries wait out their back-off, and
// would refuse most retries exactly when endpoints churn.
func (t *translation) applyRetryBudget(c *clusterv3.Cluster, rb *networking.TrafficPolicy_RetryBudget) {
	if t.proxy.Generator == GeneratorGRPC {
		return
	}
	if c.CircuitBreakers == nil || len(c.CircuitBreakers.Thresholds) == 0 {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{}}}
	}
	th := c.CircuitBreakers.Thresholds[0]
	if th.MaxRetries == nil {
		th.MaxRetries = wrapperspb.UInt32(math.MaxUint32)
	}
	if rb == nil {
		return
	}
	b := &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}
	if p := rb.GetPercent(); p != nil {
		b.BudgetPercent = &typev3.Percent{Value: p.GetValue()}
	}
	if n := rb.GetMinRetryConcurrency(); n > 0 {
		b.MinRetryConcurrency = wrapperspb.UInt32(n)
	}
	th.RetryBudget = b
}

// applyRuleTimeouts gives an HTTPRoute rule's routes its timeouts and
// retry, as istiod converts them: retry becomes a VirtualService retry
// policy (attempts, default 2; connect-failure, refused-stream,
// unavailable, cancelled and the rule's codes; backoff), timeouts.request
// the route's timeout, and timeouts.backendRequest the per-try timeout
// under a retry, else the route's timeout. Without retry the mesh's
// default policy stays.
func (t *translation) applyRuleTimeouts(routes []rankedRoute, timeouts *gatewayv1.HTTPRouteTimeouts, rr *gatewayv1.HTTPRouteRetry) {
	if timeouts == nil && rr == nil {
		return
	}
	var retry *networking.HTTPRetry
	if rr != nil {
		on := []string{"connect-failure", "refused-stream", "unavailable", "cancelled"}
		for _, c := range rr.Codes {
			on = append(on, strconv.Itoa(int(c)))
		}
		retry = &networking.HTTPRetry{Attempts: 2, RetryOn: strings.Join(on, ",")}
		if rr.Attempts != nil {
			retry.Attempts = int32(*rr.Attempts)
		}
		if rr.Backoff != nil {
			if d, err := time.ParseDuration(string(*rr.Backoff)); err == nil && d > 0 {
				retry.Backoff = durationpb.New(d)
			}
		}
	}
	var timeout *durationpb.Duration
	if timeouts != nil {
		if d := gwDuration(timeouts.Request); d > 0 {
			timeout = durationpb.New(d)
		}
		if d := gwDuration(timeouts.BackendRequest); d > 0 {
			if retry != nil && retry.Attempts > 0 {
				retry.PerTryTimeout = durationpb.New(d)
			} else {
				timeout = durationpb.New(d)
			}
		}
	}
	for _, r := range routes {
		a := r.route.GetRoute()
		if a == nil {
			continue
		}
		t.applyTimeout(a, timeout)
		if rr != nil {
			a.RetryPolicy = t.retryPolicy(retry, hashes(a))
		}
	}
}

// gwDuration reads a Gateway API duration (GEP-2257, a subset of Go's
// syntax); 0 when unset or unreadable, which validation refuses.
func gwDuration(d *gatewayv1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil {
		return 0
	}
	return v
}
