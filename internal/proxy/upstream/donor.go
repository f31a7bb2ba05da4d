package upstream

import (
	"context"
	"net/http"
)

// HeaderDonor gives the direct path an empty header map to read a
// response's header into, instead of a new one: the downstream writer
// whose previous response header it was (hcm's fast path), which takes
// the filled map back as its own (docs/performance.md, "Sidecar").
type HeaderDonor interface {
	// TakeHeader returns an empty map that is the caller's from now on,
	// or nil when there is none to give.
	TakeHeader() http.Header
}

type donorKey struct{}

// WithHeaderDonor returns ctx carrying d for the requests made with it.
func WithHeaderDonor(ctx context.Context, d HeaderDonor) context.Context {
	return context.WithValue(ctx, donorKey{}, d)
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

// spareHeader is an empty map from ctx's donor, if it has one to give.
func spareHeader(ctx context.Context) http.Header {
	if d, ok := ctx.Value(donorKey{}).(HeaderDonor); ok {
		return d.TakeHeader()
	}
	return nil
}
