package hcm

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 §7.6.1), which a proxy must not forward.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop strips hop-by-hop headers and those the Connection header
// names, keeping "TE: trailers", which gRPC needs end to end.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	trailers := false
	for _, v := range h["Te"] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "trailers") {
				trailers = true
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
	if trailers {
		h["Te"] = []string{"trailers"}
	}
}

// upgradeType is the protocol a request asks to upgrade to ("websocket"),
// when its Connection header says upgrade.
func upgradeType(h http.Header) string {
	up := h.Get("Upgrade")
	if up == "" {
		return ""
	}
	for _, v := range h["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return up
			}
		}
	}
	return ""
}

func appendForwardedFor(h http.Header, ip netip.Addr) {
	s := ip.Unmap().String()
	if prior, ok := h["X-Forwarded-For"]; ok && len(prior) > 0 {
		s = strings.Join(prior, ", ") + ", " + s
	}
	h["X-Forwarded-For"] = []string{s}
}

// newRequestID returns a random (version 4) UUID, as Envoy generates.
func newRequestID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

func applyRequestHeaders(h http.Header, add []xdsresource.HeaderValueOption, remove []string) {
	for _, name := range remove {
		h.Del(name)
	}
	for _, o := range add {
		if o.Append {
			h.Add(o.Name, o.Value)
		} else {
			h.Set(o.Name, o.Value)
		}
	}
}

func applyResponseHeaders(h http.Header, add []xdsresource.HeaderValueOption, remove []string) {
	applyRequestHeaders(h, add, remove)
}

func copyResponseHeaders(dst, src http.Header) {
	stripResponseHeaders(src)
	for k, vv := range src {
		dst[k] = vv
	}
}

// stripResponseHeaders removes from an upstream's response header what
// does not go on to the client.
func stripResponseHeaders(h http.Header) {
	removeHopByHop(h)
	delete(h, "Te")
}

// copyTrailers sends the upstream's trailers (known only once its body
// ended) as the response's, which net/http then writes on the chunked
// HTTP/1.1 body or the HTTP/2 stream.
func copyTrailers(h, trailer http.Header) {
	for k, vv := range trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }
