package upstream

import (
	"net/http"
	"net/netip"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/http1"
)

// Call is what a caller tells a Cluster about one request besides the
// request itself, and what it learns back. It is passed explicitly, not
// in the request's context: these are the HTTP connection manager's
// facts about the request (its hash, its destination, its writer), which
// the cluster acts on, and a context value would hide that dependency.
type Call struct {
	// Hash is the request's hash key for ring hash and Maglev (HasHash).
	Hash    uint64
	HasHash bool
	// Dst is where an ORIGINAL_DST cluster sends the request or
	// connection: a captured connection's original destination, or the
	// forward proxy's target. Other clusters ignore it.
	Dst netip.AddrPort
	// Donor, when set, gives the direct path an empty header map to read
	// the response's header into.
	Donor HeaderDonor

	// ResponseNames is RoundTrip's answer: the header names of an
	// HTTP/1.1 response that were not spelled canonically (nil when all
	// were), for the response to go on spelled as it came.
	ResponseNames http1.HeaderNames

	// Tried lists the hosts the request's earlier tries went to, when
	// Reselect > 0 (a retry policy's previous_hosts): a pick that lands
	// on one of them is made again, up to Reselect times, and RoundTrip
	// appends the host it sent to.
	Tried    []*balance.Host
	Reselect int
	// AvoidPriorities (a retry policy's previous_priorities) has a retry
	// prefer a priority level not in TriedPriorities (balance.PriorityBit
	// of each), which RoundTrip adds the picked host's priority to.
	AvoidPriorities bool
	TriedPriorities uint64
	// Host is RoundTrip's answer: the host the request was sent to (the
	// last try's), for telemetry's destination labels and access logs;
	// nil when none was picked.
	Host *balance.Host
}

// tried reports whether h is among the call's earlier hosts.
func (c *Call) tried(h *balance.Host) bool {
	for _, t := range c.Tried {
		if t == h {
			return true
		}
	}
	return false
}

// HeaderDonor gives the direct path an empty header map to read a
// response's header into, instead of a new one: the downstream writer
// whose previous response header it was (hcm's fast path), which takes
// the filled map back as its own (docs/performance.md, "Sidecar").
type HeaderDonor interface {
	// TakeHeader returns an empty map that is the caller's from now on,
	// or nil when there is none to give.
	TakeHeader() http.Header
}

// SentDirect reports whether resp, returned by a Cluster's RoundTrip,
// came over the direct path: then nothing of the request, its header map
// included, is used once RoundTrip has returned (the Transport's writer
// may still be sending a request after it, and reads its header).
func SentDirect(resp *http.Response) bool {
	b, ok := resp.Body.(*body)
	if !ok {
		return false
	}
	_, ok = b.ReadCloser.(*directBody)
	return ok
}

// spareHeader is an empty map from d, if it has one to give.
func spareHeader(d HeaderDonor) http.Header {
	if d != nil {
		return d.TakeHeader()
	}
	return nil
}
