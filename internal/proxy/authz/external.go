package authz

import (
	"net/http"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/strmatch"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// External is an HTTP authorization service (Envoy's ext_authz with an
// http_service, Istio's envoyExtAuthzHttp provider) as the connection
// manager asks it: the check request is the original's method and path
// (after PathPrefix) with the allowed headers and no body; a 200 allows
// the request, with the allowed upstream headers of the answer set on
// it; any other answer denies it with that answer's status, body and
// allowed client headers; no answer is StatusOnError unless
// FailureModeAllow.
type External struct {
	// GRPC: ask with envoy.service.auth.v3.Authorization/Check
	// (external_grpc.go) instead of an HTTP request.
	GRPC             bool
	Cluster          string
	Authority        string
	PathPrefix       string
	Timeout          time.Duration
	HeadersToAdd     []xdsresource.HeaderValueOption
	FailureModeAllow bool
	StatusOnError    int
	// Body, when set, sends the request body with the check.
	Body *xdsresource.BodySettings

	allowed, upstream, client []strmatch.Matcher
	allClient                 bool
	gated                     bool
	prefix                    string
	policy                    strmatch.Matcher
}

// defaultCheckHeaders are the request headers Envoy always sends to an
// HTTP authorizer.
var defaultCheckHeaders = map[string]bool{"authorization": true, "content-length": true}

func compileExternal(x *xdsresource.ExtAuthz) (*External, error) {
	e := &External{GRPC: x.GRPC, Cluster: x.Cluster, Authority: x.Authority, PathPrefix: x.PathPrefix, Timeout: x.Timeout,
		HeadersToAdd: x.HeadersToAdd, FailureModeAllow: x.FailureModeAllow, StatusOnError: x.StatusOnError, Body: x.Body}
	var err error
	if e.allowed, err = compileStrings(x.AllowedHeaders); err != nil {
		return nil, err
	}
	if e.upstream, err = compileStrings(x.AllowedUpstreamHeaders); err != nil {
		return nil, err
	}
	if e.client, err = compileStrings(x.AllowedClientHeaders); err != nil {
		return nil, err
	}
	e.allClient = len(x.AllowedClientHeaders) == 0
	if x.EnabledBy != nil {
		e.gated, e.prefix = true, x.EnabledBy.StatPrefix
		if e.policy, err = compileString(x.EnabledBy.Policy); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func compileStrings(ms []xdsresource.StringMatcher) ([]strmatch.Matcher, error) {
	var out []strmatch.Matcher
	for _, m := range ms {
		c, err := compileString(m)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func anyString(ms []strmatch.Matcher, v string) bool {
	for i := range ms {
		if ms[i].Match(v) {
			return true
		}
	}
	return false
}

// CheckHeader says whether a request header (lower case) goes to the
// authorizer.
func (e *External) CheckHeader(name string) bool {
	return defaultCheckHeaders[name] || anyString(e.allowed, name)
}

// UpstreamHeader says whether a header of the authorizer's 200 is set on
// the request sent on (lower case name).
func (e *External) UpstreamHeader(name string) bool { return anyString(e.upstream, name) }

// ClientHeader says whether a header of the authorizer's denial goes back
// to the client (lower case name): every header but Host when the filter
// lists none.
func (e *External) ClientHeader(name string) bool {
	if e.allClient {
		return name != "host"
	}
	return anyString(e.client, name)
}

// lowerName is an http.Header key as the matchers compare it.
func lowerName(k string) string { return strings.ToLower(k) }

// Headers copies the request headers the authorizer is to see from h.
func (e *External) Headers(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		if e.CheckHeader(lowerName(k)) {
			out[k] = v
		}
	}
	for _, a := range e.HeadersToAdd {
		out.Set(a.Name, a.Value)
	}
	return out
}
