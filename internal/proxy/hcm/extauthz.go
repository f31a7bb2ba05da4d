package hcm

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/authz"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
)

// defaultExtAuthzTimeout is Envoy's ext_authz timeout when the filter
// sets none.
const defaultExtAuthzTimeout = 200 * time.Millisecond

// maxDeniedBody bounds the authorizer's denial body relayed to the client.
const maxDeniedBody = 64 << 10

// askExternal checks x with an HTTP authorizer (a CUSTOM
// AuthorizationPolicy, Envoy's ext_authz): the check carries the
// request's method, the filter's path prefix plus its path, Host and the
// allowed headers, and no body. A 200 lets the request on, with the
// answer's allowed headers set on it; any other answer is relayed to the
// client (status, body, allowed headers) and the request ends; no answer
// (the authorizer unreachable or too slow) is the filter's status on
// error, unless it fails open.
func (s *Server) askExternal(x *exchange, ext *authz.External) bool {
	r := x.r
	var cl *upstream.Cluster
	if s.cfg.Cluster != nil {
		cl = s.cfg.Cluster(ext.Cluster)
	}
	if cl == nil {
		return s.externalFailed(x, ext, "authorization cluster "+ext.Cluster+" not found")
	}
	timeout := ext.Timeout
	if timeout <= 0 {
		timeout = defaultExtAuthzTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	check, err := http.NewRequestWithContext(ctx, r.Method, "http://"+ext.Authority+ext.PathPrefix+requestPath(r), nil)
	if err != nil {
		return s.externalFailed(x, ext, err.Error())
	}
	check.Host = r.Host
	check.Header = ext.Headers(r.Header)
	check.Header.Set("Content-Length", "0")
	resp, _, err := cl.RoundTrip(ctx, check, &upstream.Call{})
	if err != nil {
		return s.externalFailed(x, ext, err.Error())
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		for k, v := range resp.Header {
			if ext.UpstreamHeader(strings.ToLower(k)) {
				r.Header[k] = v
			}
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDeniedBody))
		return true
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxDeniedBody))
	s.log.Debug("request denied by the external authorizer", "cluster", ext.Cluster, "status", resp.StatusCode, "method", r.Method, "path", r.URL.Path)
	h := x.w.Header()
	for k, v := range resp.Header {
		switch lk := strings.ToLower(k); {
		case lk == "content-length", lk == "transfer-encoding", lk == "connection":
		case ext.ClientHeader(lk):
			h[k] = v
		}
	}
	closeIfBodyPending(h, x)
	s.count(resp.StatusCode)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	x.w.WriteHeader(resp.StatusCode)
	x.w.Write(body)
	return false
}

// externalFailed answers a request whose authorizer gave no answer.
func (s *Server) externalFailed(x *exchange, ext *authz.External, why string) bool {
	s.log.Warn("external authorization failed", "cluster", ext.Cluster, "fail_open", ext.FailureModeAllow, "err", why)
	if ext.FailureModeAllow {
		return true
	}
	status := ext.StatusOnError
	if status == 0 {
		status = http.StatusForbidden
	}
	closeIfBodyPending(x.w.Header(), x)
	s.count(status)
	x.w.Header().Set("Content-Length", "0")
	x.w.WriteHeader(status)
	return false
}
