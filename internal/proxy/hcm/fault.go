package hcm

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// faultAbortBody is Envoy's fault filter's local reply text, which
// clients and tests of Istio's fault injection look for.
const faultAbortBody = "fault filter abort"

// injectFault is the route's fault injection (a VirtualService's fault),
// between finding the route and calling upstream as Envoy's fault filter
// sits ahead of the router: the delay first, then, drawn apart, the
// abort. A delay lasts at most its fixed time, and ends early, ending
// the request, when the request's context does (an HTTP/2 stream reset).
// An HTTP/1 client that leaves is not noticed while the request is held:
// neither the fast path nor net/http, before the body is read, watches
// the connection then, so the request goes on after the delay and its
// answer is discarded, as for any request whose client left.
func (s *Server) injectFault(x *exchange) bool {
	f := x.route.Fault
	if f == nil {
		return true
	}
	var flags upstream.Flags
	if d := f.Delay; d != nil && d.Fixed > 0 && drawn(d.Percent) {
		flags |= upstream.DelayInjected
		t := time.NewTimer(d.Fixed)
		select {
		case <-t.C:
		case <-x.r.Context().Done():
			t.Stop()
			return false
		}
	}
	a := f.Abort
	if a == nil || !drawn(a.Percent) {
		return true
	}
	flags |= upstream.FaultInjected
	if !a.GRPC {
		s.reply(x, a.HTTPStatus, flags, faultAbortBody)
		return false
	}
	if !isGRPC(x.r) {
		// Envoy answers a gRPC-status abort 200, and only a gRPC
		// client reads the status from it.
		x.tel.flags |= flags
		s.local(x.w, http.StatusOK, flags, faultAbortBody)
		return false
	}
	closeIfBodyPending(x.w.Header(), x)
	s.count(http.StatusOK)
	h := x.w.Header()
	h.Set(FlagsHeader, flags.String())
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(a.GRPCStatus))
	h.Set("Grpc-Message", grpcMessage(faultAbortBody))
	x.w.WriteHeader(http.StatusOK)
	return false
}

// drawn says whether a request falls in share p.
func drawn(p xdsresource.PerMillion) bool {
	return p >= xdsresource.Million || (p > 0 && rand.Uint32N(uint32(xdsresource.Million)) < uint32(p))
}
