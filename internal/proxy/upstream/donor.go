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

// spareHeader is an empty map from ctx's donor, if it has one to give.
func spareHeader(ctx context.Context) http.Header {
	if d, ok := ctx.Value(donorKey{}).(HeaderDonor); ok {
		return d.TakeHeader()
	}
	return nil
}
