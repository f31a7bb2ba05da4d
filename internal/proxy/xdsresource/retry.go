package xdsresource

import (
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// RetryOn is the set of conditions a route retries on (Envoy's retry_on,
// x-envoy-retry-on and x-envoy-retry-grpc-on tokens), as bits.
type RetryOn uint32

// The retry conditions, by Envoy's token names.
const (
	Retry5xx                   RetryOn = 1 << iota // 5xx: any 5xx answer, a reset, a connect failure, a per-try timeout
	RetryGatewayError                              // gateway-error: 502, 503, 504, a reset, a connect failure, a per-try timeout
	RetryReset                                     // reset: no answer at all (disconnect, reset, per-try timeout)
	RetryResetBeforeRequest                        // reset-before-request: the request never reached the upstream
	RetryConnectFailure                            // connect-failure
	RetryRefusedStream                             // refused-stream: HTTP/2 REFUSED_STREAM
	RetryRetriable4xx                              // retriable-4xx: 409
	RetryRetriableStatusCodes                      // retriable-status-codes: RetryPolicy.StatusCodes
	RetryRetriableHeaders                          // retriable-headers: a header the caller's x-envoy-retriable-header-names lists, in the answer
	RetryEnvoyRateLimited                          // envoy-ratelimited: x-envoy-ratelimited in the answer
	RetryGRPCCancelled                             // cancelled: grpc-status 1
	RetryGRPCDeadlineExceeded                      // deadline-exceeded: grpc-status 4
	RetryGRPCResourceExhausted                     // resource-exhausted: grpc-status 8
	RetryGRPCInternal                              // internal: grpc-status 13
	RetryGRPCUnavailable                           // unavailable: grpc-status 14
)

var retryTokens = map[string]RetryOn{
	"5xx":                        Retry5xx,
	"gateway-error":              RetryGatewayError,
	"reset":                      RetryReset,
	"reset-before-request":       RetryResetBeforeRequest,
	"connect-failure":            RetryConnectFailure,
	"refused-stream":             RetryRefusedStream,
	"retriable-4xx":              RetryRetriable4xx,
	"retriable-status-codes":     RetryRetriableStatusCodes,
	"retriable-headers":          RetryRetriableHeaders,
	"envoy-ratelimited":          RetryEnvoyRateLimited,
	"cancelled":                  RetryGRPCCancelled,
	"deadline-exceeded":          RetryGRPCDeadlineExceeded,
	"resource-exhausted":         RetryGRPCResourceExhausted,
	"internal":                   RetryGRPCInternal,
	"unavailable":                RetryGRPCUnavailable,
	"http3-post-connect-failure": 0, // no HTTP/3 upstreams: nothing to retry
}

// ParseRetryOn reads a comma-separated list of Envoy's retry tokens. It
// reports the first token it does not know; Envoy ignores unknown tokens
// in headers but refuses them in config, and so do the callers.
func ParseRetryOn(s string) (RetryOn, string) {
	var on RetryOn
	for tok := range strings.SplitSeq(s, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		bit, ok := retryTokens[tok]
		if !ok {
			return on, tok
		}
		on |= bit
	}
	return on, ""
}

// Envoy's retry back-off defaults: 25 ms base, ten times that at most.
const (
	DefaultRetryBaseInterval = 25 * time.Millisecond
	maxIntervalFactor        = 10
)

// RetryPolicy is a route's retry policy (Envoy's RetryPolicy).
type RetryPolicy struct {
	On         RetryOn
	NumRetries uint32 // retries after the first try; Envoy's default 1
	// PerTryTimeout bounds each try (0: only the route timeout).
	PerTryTimeout time.Duration
	StatusCodes   []int // retriable_status_codes
	// PreviousHosts is the previous_hosts host predicate: a retry picks,
	// up to HostSelectionAttempts times, until it gets a host not tried
	// yet for the request.
	PreviousHosts         bool
	HostSelectionAttempts int
	// PreviousPriorities is the previous_priorities retry priority
	// (Istio's retryRemoteLocalities): a retry prefers a priority (a
	// locality, under locality failover) not tried yet.
	PreviousPriorities bool
	// Backoff: each wait is random in [0, min(Base·(2ⁿ−1), Max)], n the
	// retry's number, as Envoy's jittered back-off.
	BackoffBase, BackoffMax time.Duration
}

// RetriesStatus reports whether the policy retries an answer with status
// code (the status-code conditions only; grpc-status and headers are the
// caller's).
func (p *RetryPolicy) RetriesStatus(code int) bool {
	switch {
	case p.On&Retry5xx != 0 && code >= 500 && code <= 599:
		return true
	case p.On&RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case p.On&RetryRetriable4xx != 0 && code == 409:
		return true
	case p.On&RetryRetriableStatusCodes != 0:
		for _, c := range p.StatusCodes {
			if c == code {
				return true
			}
		}
	}
	return false
}

// Envoy's built-in retry extensions that istiod names.
const (
	previousHostsPredicate   = "envoy.retry_host_predicates.previous_hosts"
	previousPrioritiesName   = "envoy.retry_priorities.previous_priorities"
	previousPrioritiesConfig = "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig"
)

// decodeRetryPolicy reads a RetryPolicy. What the proxy cannot honour (a
// per-try idle timeout, rate-limited back-off, request-header conditions,
// other predicates or priorities) is refused.
func decodeRetryPolicy(b []byte) (*RetryPolicy, error) {
	p := &RetryPolicy{NumRetries: 1}
	m := msg{b: b, varints: 1<<6 | 1<<14}
	for m.next() {
		switch m.num {
		case 1:
			s := m.str("retry_on")
			on, bad := ParseRetryOn(s)
			if bad != "" {
				m.fail(errorf("unknown retry condition %q", bad), "retry_on")
			}
			p.On = on
		case 2:
			p.NumRetries = m.wrappedUint32("num_retries")
		case 3:
			p.PerTryTimeout = m.duration("per_try_timeout")
		case 4:
			pb, _ := m.bytes()
			m.fail(decodeRetryPriority(pb), "retry_priority")
			p.PreviousPriorities = true
		case 5:
			pb, _ := m.bytes()
			name, err := extensionName(pb)
			if err == nil && name != previousHostsPredicate {
				err = errorf("host predicate %q is not supported (only %s)", name, previousHostsPredicate)
			}
			m.failIndex(err, "retry_host_predicate", 0)
			p.PreviousHosts = true
		case 6:
			p.HostSelectionAttempts = int(min(m.varint(), 100))
		case 7:
			// Packed, as proto3 encodes it.
			pb, _ := m.bytes()
			for len(pb) > 0 {
				v, n := protowire.ConsumeVarint(pb)
				if n < 0 {
					m.fail(errorf("malformed packed varints"), "retriable_status_codes")
					break
				}
				p.StatusCodes = append(p.StatusCodes, int(v))
				pb = pb[n:]
			}
		case 8:
			bb, _ := m.bytes()
			base, maxI, err := decodeBackOff(bb)
			m.fail(err, "retry_back_off")
			p.BackoffBase, p.BackoffMax = base, maxI
		case 9:
			// istiod never sends them (HTTPRetry has no such field); the
			// retriable-headers condition reads the caller's
			// x-envoy-retriable-header-names instead.
			m.fail(errNotSupported, "retriable_headers")
		case 10:
			m.fail(errNotSupported, "retriable_request_headers")
		case 11:
			m.fail(errNotSupported, "rate_limited_retry_back_off")
		case 12:
			m.fail(errNotSupported, "retry_options_predicates")
		case 13:
			if m.duration("per_try_idle_timeout") != 0 {
				m.fail(errNotSupported, "per_try_idle_timeout")
			}
		case 14:
			m.bool() // refresh_cluster_on_retry: clusters are looked up per try anyway
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if p.BackoffBase == 0 {
		p.BackoffBase = DefaultRetryBaseInterval
	}
	if p.BackoffMax == 0 {
		p.BackoffMax = maxIntervalFactor * p.BackoffBase
	}
	if p.HostSelectionAttempts == 0 {
		p.HostSelectionAttempts = 1
	}
	return p, nil
}

func decodeBackOff(b []byte) (base, maxI time.Duration, err error) {
	m := msg{b: b}
	hasBase := false
	for m.next() {
		switch m.num {
		case 1:
			base, hasBase = m.duration("base_interval"), true
		case 2:
			maxI = m.duration("max_interval")
		}
	}
	if m.err != nil {
		return 0, 0, m.err
	}
	switch {
	case !hasBase || base <= 0:
		return 0, 0, within(errorf("must be > 0"), "base_interval")
	case maxI != 0 && maxI < base:
		return 0, 0, within(errorf("must be >= base_interval"), "max_interval")
	}
	return base, maxI, nil
}

// decodeRetryPriority accepts the previous_priorities priority, whose
// update frequency the proxy does not need: it tracks the priorities a
// request tried, not a frequency of recomputation.
func decodeRetryPriority(b []byte) error {
	m := msg{b: b}
	var name string
	for m.next() {
		switch m.num {
		case 1:
			name = m.str("name")
		case 2:
			ab, _ := m.bytes()
			tn, _, err := anyValue(ab)
			if err == nil && tn != previousPrioritiesConfig {
				err = errorf("unexpected type %s", tn)
			}
			m.fail(err, "typed_config")
		}
	}
	if m.err != nil {
		return m.err
	}
	if name != previousPrioritiesName {
		return within(errorf("retry priority %q is not supported (only %s)", name, previousPrioritiesName), "name")
	}
	return nil
}

// extensionName reads the name of an extension reference whose config,
// if any, the proxy has no use for (RetryHostPredicate).
func extensionName(b []byte) (string, error) {
	m := msg{b: b}
	var name string
	for m.next() {
		if m.num == 1 {
			name = m.str("name")
		}
	}
	return name, m.err
}

// RetryBudget bounds a cluster's retries in flight to Percent of its
// active and pending requests, and never below MinConcurrency (Envoy's
// circuit_breakers retry_budget; it replaces max_retries when set).
type RetryBudget struct {
	Percent        float64 // default 20
	MinConcurrency uint32  // default 3
}

func decodeRetryBudget(b []byte) (*RetryBudget, error) {
	rb := &RetryBudget{Percent: 20, MinConcurrency: 3}
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			pb, _ := m.bytes()
			v, err := percentValue(pb)
			m.fail(err, "budget_percent")
			rb.Percent = v
		case 2:
			rb.MinConcurrency = m.wrappedUint32("min_retry_concurrency")
		case 3:
			if m.duration("budget_interval") != 0 {
				m.fail(errNotSupported, "budget_interval")
			}
		}
	}
	return rb, m.err
}
