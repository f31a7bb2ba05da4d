package hcm

import (
	"net/http"

	"github.com/trellismesh/trellis/internal/proxy/upstream"
)

// Header case on HTTP/1.1, as Envoy's header_key_format with the
// preserve_case stateful formatter: a header name reaches the next hop
// spelled as it arrived (x-lower, X-MiXeD-CaSe, SOAPAction), in both
// directions. net/http canonicalises names when it parses a message but
// writes a Header map's keys as they are, so the spelling is learnt from
// the raw bytes (headerConn's framing for requests, upstream's connection
// for responses) and the keys are renamed just before the message is
// written on. Names are case-insensitive (RFC 9110 §5.1): a name
// remembered wrongly can only change the case it is written with, never
// what the message means, and a name is renamed only when its canonical
// key is in the map. HTTP/2 names are lower case by the protocol.
//
// A few names stay canonical because net/http reads or writes them
// itself from the canonical key, so renaming would change the message:
// the framing and connection fields and those the Transport interprets
// (requestKept, responseKept). User-Agent (requests) and Content-Type
// and Date (responses) are renamed with an empty value left under the
// canonical key, net/http's documented way to keep it from adding its
// own.

var requestKept = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true,
	"Connection": true, "Upgrade": true, "Te": true, "Expect": true,
	"Idempotency-Key": true, "X-Idempotency-Key": true,
}

var requestPlaceholder = map[string]bool{"User-Agent": true}

var responseKept = map[string]bool{
	"Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Connection": true,
}

var responsePlaceholder = map[string]bool{"Content-Type": true, "Date": true}

// restoreNames renames the keys of h that names spells otherwise.
func restoreNames(h http.Header, names upstream.HeaderNames, kept, placeholder map[string]bool) {
	for canon, orig := range names {
		vv, ok := h[canon]
		if !ok || len(vv) == 0 || kept[canon] {
			continue
		}
		delete(h, canon)
		if prior, ok := h[orig]; ok {
			vv = append(prior, vv...)
		}
		h[orig] = vv
		if placeholder[canon] {
			h[canon] = nil
		}
	}
}
