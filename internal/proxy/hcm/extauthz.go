package hcm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/authz"
	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
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
	var sent checkBody
	if ext.Body != nil {
		var ok bool
		if sent, ok = s.bufferBody(x, ext.Body); !ok {
			return false
		}
	}
	timeout := ext.Timeout
	if timeout <= 0 {
		timeout = defaultExtAuthzTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if ext.GRPC {
		return s.askExternalGRPC(ctx, x, ext, cl, sent)
	}
	var checkBody io.Reader
	if len(sent.b) > 0 {
		checkBody = bytes.NewReader(sent.b)
	}
	check, err := http.NewRequestWithContext(ctx, r.Method, "http://"+ext.Authority+ext.PathPrefix+requestPath(r), checkBody)
	if err != nil {
		return s.externalFailed(x, ext, err.Error())
	}
	check.Host = r.Host
	check.Header = ext.Headers(r.Header)
	check.Header.Set("Content-Length", strconv.Itoa(len(sent.b)))
	if sent.sent {
		check.Header.Set(partialBodyHeader, strconv.FormatBool(sent.partial))
	}
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

// askExternalGRPC is askExternal for a gRPC authorizer: one unary
// envoy.service.auth.v3.Authorization/Check over the cluster (HTTP/2), the
// request described by its method, path, host, headers and both peers;
// status OK lets it on with the ok_response's headers set and removed,
// any other status answers with the denied_response (403 when it sets
// none), a failed call is the status on error.
func (s *Server) askExternalGRPC(ctx context.Context, x *exchange, ext *authz.External, cl *upstream.Cluster, body checkBody) bool {
	r, c := x.r, x.c
	in := &authz.CheckInput{Method: r.Method, Host: r.Host, Path: requestPath(r), Scheme: "http", Protocol: r.Proto,
		ID: r.Header.Get("X-Request-Id"), Header: r.Header}
	if body.sent {
		in.Body, in.RawBody = body.b, ext.Body.PackAsBytes
		in.ExtraHeaders = [][2]string{{partialBodyHeader, strconv.FormatBool(body.partial)}}
	}
	if c != nil {
		in.Source, in.Destination, in.SourcePrincipal = c.Source, c.Dst, c.PeerID
	}
	if s.cfg.LocalID != nil {
		in.DestinationPrincipal = s.cfg.LocalID()
	}
	authority := ext.Authority
	if authority == "" {
		authority = ext.Cluster
	}
	check, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+authority+authz.CheckMethod, bytes.NewReader(grpcwire.Frame(authz.EncodeCheckRequest(in))))
	if err != nil {
		return s.externalFailed(x, ext, err.Error())
	}
	check.Header = http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}}
	resp, _, err := cl.RoundTrip(ctx, check, &upstream.Call{})
	if err != nil {
		return s.externalFailed(x, ext, err.Error())
	}
	defer resp.Body.Close()
	// A trailers-only answer (an error status) carries grpc-status in
	// the head, a normal one in the trailers after the message.
	if st := grpcwire.Status(resp.Header); st != nil && st.Code != 0 {
		return s.externalFailed(x, ext, st.Error())
	}
	msg, err := grpcwire.ReadMessage(resp.Body, maxDeniedBody)
	if err != nil || resp.StatusCode != http.StatusOK {
		return s.externalFailed(x, ext, fmt.Sprintf("Check: HTTP %d: %v", resp.StatusCode, err))
	}
	io.Copy(io.Discard, resp.Body)
	if st := grpcwire.Status(resp.Trailer); st == nil || st.Code != 0 {
		why := "Check: no grpc-status"
		if st != nil {
			why = st.Error()
		}
		return s.externalFailed(x, ext, why)
	}
	res, err := authz.DecodeCheckResponse(msg)
	if err != nil {
		return s.externalFailed(x, ext, err.Error())
	}
	if res.OK {
		for _, h := range res.RemoveHeaders {
			r.Header.Del(h)
		}
		for _, h := range res.SetHeaders {
			r.Header.Set(h[0], h[1])
		}
		return true
	}
	status := res.Status
	if status == 0 {
		status = http.StatusForbidden
	}
	s.log.Debug("request denied by the external authorizer", "cluster", ext.Cluster, "status", status, "method", r.Method, "path", r.URL.Path)
	hdr := x.w.Header()
	for _, h := range res.Headers {
		switch strings.ToLower(h[0]) {
		case "content-length", "transfer-encoding", "connection":
		default:
			hdr.Add(h[0], h[1])
		}
	}
	closeIfBodyPending(hdr, x)
	s.count(status)
	hdr.Set("Content-Length", strconv.Itoa(len(res.Body)))
	x.w.WriteHeader(status)
	io.WriteString(x.w, res.Body)
	return false
}

// partialBodyHeader tells the authorizer whether the body it got is the
// whole request body, as Envoy's ext_authz sets it with a body.
const partialBodyHeader = "x-envoy-auth-partial-body"

// checkBody is the request body sent with a check: sent when the filter
// sends bodies, partial when b is only the body's first bytes.
type checkBody struct {
	b             []byte
	sent, partial bool
}

// bufferBody reads the request body up to the filter's bound for the
// check, as Envoy's ext_authz buffers it, and puts what it read back in
// front of the rest, so the app still receives the whole body after an
// allow. A longer body is refused with Envoy's 413 unless partial
// messages are allowed; a body that fails to arrive ends the request.
func (s *Server) bufferBody(x *exchange, bs *xdsresource.BodySettings) (checkBody, bool) {
	r := x.r
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return checkBody{sent: true}, true
	}
	limit := int64(bs.MaxBytes)
	if r.ContentLength > 0 && r.ContentLength < limit {
		limit = r.ContentLength
	}
	buf := make([]byte, limit+1)
	n, err := io.ReadFull(r.Body, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		s.log.Debug("request body not read for external authorization", "method", r.Method, "path", r.URL.Path, "err", err)
		closeIfBodyPending(x.w.Header(), x)
		s.count(http.StatusBadRequest)
		x.w.Header().Set("Content-Length", "0")
		x.w.WriteHeader(http.StatusBadRequest)
		return checkBody{}, false
	}
	buf = buf[:n]
	r.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(buf), r.Body), body: r.Body}
	if int64(n) <= int64(bs.MaxBytes) {
		return checkBody{b: buf, sent: true}, true
	}
	if !bs.AllowPartial {
		const msg = "Payload Too Large"
		closeIfBodyPending(x.w.Header(), x)
		s.count(http.StatusRequestEntityTooLarge)
		x.w.Header().Set("Content-Type", "text/plain")
		x.w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
		x.w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(x.w, msg)
		return checkBody{}, false
	}
	return checkBody{b: buf[:bs.MaxBytes], sent: true, partial: true}, true
}

// replayBody is a request body with its first bytes read ahead.
type replayBody struct {
	io.Reader
	body io.ReadCloser
}

func (b *replayBody) Close() error { return b.body.Close() }
