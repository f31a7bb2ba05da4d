package translate_test

import (
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/translate"
)

// retrySummary is what a route's retry policy says, in a form cmp can
// compare; nil when the route has none.
type retrySummary struct {
	On            string
	Retries       uint32
	Codes         []uint32
	PerTry        time.Duration
	Backoff       time.Duration
	PreviousHosts bool
	Remote        bool
}

func summarizeRetry(rp *routev3.RetryPolicy) *retrySummary {
	if rp == nil {
		return nil
	}
	return &retrySummary{
		On: rp.GetRetryOn(), Retries: rp.GetNumRetries().GetValue(), Codes: rp.GetRetriableStatusCodes(),
		PerTry: rp.GetPerTryTimeout().AsDuration(), Backoff: rp.GetRetryBackOff().GetBaseInterval().AsDuration(),
		PreviousHosts: len(rp.GetRetryHostPredicate()) > 0, Remote: rp.GetRetryPriority() != nil,
	}
}

const istioDefaultRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

// HTTPRoute.retries (istio.io): "Retry policy for HTTP requests", with
// istiod's conversion (pilot/pkg/networking/core/route/retry): no
// retries means the mesh default — 2 retries on connect-failure,
// refused-stream, unavailable, cancelled, retriable-status-codes with no
// code (503 excluded) — attempts 0 means none, retryOn numbers become
// status codes, previous hosts are avoided except on a hashing route.
// Retries are off beside a fault, as Istio documents.
func TestIstioRetries(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - name: user
    match: [{uri: {prefix: /user}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset,connect-failure,409", retryRemoteLocalities: true, backoff: 50ms}
    route: [{destination: {host: ratings}}]
  - name: never
    match: [{uri: {prefix: /off}}]
    retries: {attempts: 0}
    route: [{destination: {host: ratings}}]
  - name: samehost
    match: [{uri: {prefix: /same}}]
    retries: {attempts: 1, retryIgnorePreviousHosts: false}
    route: [{destination: {host: ratings}}]
  - name: faulty
    match: [{uri: {prefix: /fault}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}
    route: [{destination: {host: ratings}}]
  - name: default
    route: [{destination: {host: ratings}}]
`)
	got := map[string]*retrySummary{}
	for _, r := range ratingsRoutesFor(t, w, sidecarProxy) {
		got[r.GetName()] = summarizeRetry(r.GetRoute().GetRetryPolicy())
	}
	want := map[string]*retrySummary{
		"user":     {On: "5xx,reset,connect-failure,retriable-status-codes", Retries: 3, Codes: []uint32{409}, PerTry: 2 * time.Second, Backoff: 50 * time.Millisecond, PreviousHosts: true, Remote: true},
		"never":    nil,
		"samehost": {On: istioDefaultRetryOn, Retries: 1},
		"faulty":   nil,
		"default":  {On: istioDefaultRetryOn, Retries: 2, PreviousHosts: true},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("retry policies (-want +got):\n%s", d)
	}
}

// MeshConfig.defaultHttpRetryPolicy: "Configures the default retry policy
// for all HTTP requests in the mesh ... if not set, defaults to 2
// retries". It replaces Istio's default wherever a route sets none;
// attempts 0 turns retries off mesh-wide.
func TestMeshDefaultRetryPolicy(t *testing.T) {
	for _, c := range []struct {
		mesh string
		want *retrySummary
	}{
		{"defaultHttpRetryPolicy: {attempts: 5, retryOn: gateway-error}", &retrySummary{On: "gateway-error", Retries: 5, PreviousHosts: true}},
		{"defaultHttpRetryPolicy: {attempts: 0}", nil},
	} {
		w := bareWorld(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    "+c.mesh+"\n")
		rs := ratingsRoutesFor(t, w, sidecarProxy)
		if len(rs) == 0 {
			t.Fatal("no ratings routes")
		}
		if d := cmp.Diff(c.want, summarizeRetry(rs[len(rs)-1].GetRoute().GetRetryPolicy())); d != "" {
			t.Errorf("%s: retry policy (-want +got):\n%s", c.mesh, d)
		}
	}
}

// HTTPRouteRule.retry and .timeouts (Gateway API), as istiod converts
// them: retry becomes a VirtualService retry (attempts default 2;
// connect-failure, refused-stream, unavailable, cancelled and the codes;
// backoff), timeouts.request the route timeout, timeouts.backendRequest
// the per-try timeout under a retry.
func TestHTTPRouteRetryAndTimeouts(t *testing.T) {
	w := bareWorld(t, shopServices, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: shop, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /retry}}]
    retry: {codes: [503, 504], attempts: 4, backoff: 100ms}
    timeouts: {request: 10s, backendRequest: 1s}
    backendRefs: [{name: shop-a, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 3s}
    backendRefs: [{name: shop-a, port: 8080}]
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "8080"), "shop.default.svc.cluster.local:8080")
	got := map[string]*retrySummary{}
	timeouts := map[string]time.Duration{}
	for _, rt := range vh.Routes {
		p := rt.GetMatch().GetPathSeparatedPrefix() + rt.GetMatch().GetPrefix()
		got[p] = summarizeRetry(rt.GetRoute().GetRetryPolicy())
		timeouts[p] = rt.GetRoute().GetTimeout().AsDuration()
	}
	if d := cmp.Diff(&retrySummary{On: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", Retries: 4, Codes: []uint32{503, 504},
		PerTry: time.Second, Backoff: 100 * time.Millisecond, PreviousHosts: true}, got["/retry"]); d != "" {
		t.Errorf("/retry policy (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&retrySummary{On: istioDefaultRetryOn, Retries: 2, PreviousHosts: true}, got["/slow"]); d != "" {
		t.Errorf("/slow keeps the mesh default (-want +got):\n%s", d)
	}
	if timeouts["/retry"] != 10*time.Second || timeouts["/slow"] != 3*time.Second {
		t.Errorf("timeouts %v, want /retry 10s and /slow 3s", timeouts)
	}
}

// DestinationRule.trafficPolicy.retryBudget bounds the retries in flight
// by a share of the active requests; every cluster otherwise has
// istiod's unbounded max_retries, and connectionPool.http.maxRetries
// replaces that.
func TestRetryBudget(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    retryBudget: {percent: 25, minRetryConcurrency: 2}
    connectionPool: {http: {maxRetries: 7}}
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	for _, c := range r.Clusters {
		th := c.GetCircuitBreakers().GetThresholds()
		if len(th) == 0 {
			continue
		}
		switch c.GetName() {
		case "outbound|9080||ratings.default.svc.cluster.local":
			rb := th[0].GetRetryBudget()
			if rb.GetBudgetPercent().GetValue() != 25 || rb.GetMinRetryConcurrency().GetValue() != 2 || th[0].GetMaxRetries().GetValue() != 7 {
				t.Errorf("ratings thresholds %v, want budget 25%% min 2 and max_retries 7", th[0])
			}
		case "outbound|9080||reviews.default.svc.cluster.local":
			if th[0].GetMaxRetries().GetValue() != 1<<32-1 || th[0].GetRetryBudget() != nil {
				t.Errorf("reviews thresholds %v, want istiod's unbounded max_retries", th[0])
			}
		}
	}
}
