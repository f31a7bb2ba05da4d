package tracing

import "net/http"

// Header names (canonical form, as http.Header stores them).
const (
	hdrTraceparent  = "Traceparent"
	hdrTracestate   = "Tracestate"
	hdrB3           = "B3"
	hdrB3TraceID    = "X-B3-Traceid"
	hdrB3SpanID     = "X-B3-Spanid"
	hdrB3ParentSpan = "X-B3-Parentspanid"
	hdrB3Sampled    = "X-B3-Sampled"
	hdrB3Flags      = "X-B3-Flags"
)

// format bits: which propagation forms a request came with, so Inject
// answers in the same ones (a B3-only app keeps getting B3).
const (
	fmtW3C uint8 = 1 << iota
	fmtB3Single
	fmtB3Multi
)

// decision is what the incoming context said about sampling.
type decision uint8

const (
	deferred decision = iota // no flag: the proxy decides
	sampledYes
	sampledNo
)

// parent is the extracted incoming context.
type parent struct {
	traceID    [16]byte
	spanID     [8]byte
	hasIDs     bool
	decision   decision
	debug      bool
	trace64    bool // B3 with a 64-bit trace id: answered in 64 bits
	formats    uint8
	tracestate string
}

// extract reads the incoming context: W3C first, then B3 single, then B3
// multi. A malformed header is ignored, as if absent, so a bad client
// starts a new trace rather than failing its request.
func extract(h http.Header) parent {
	var p parent
	if v := h[hdrTraceparent]; len(v) > 0 && parseTraceparent(v[0], &p) {
		p.formats |= fmtW3C
		if ts := h[hdrTracestate]; len(ts) > 0 {
			p.tracestate = ts[0]
		}
	}
	if v := h[hdrB3]; len(v) > 0 {
		var b parent
		if parseB3Single(v[0], &b) {
			p.formats |= fmtB3Single
			if p.formats&fmtW3C == 0 {
				b.formats = p.formats
				p = b
			}
		}
	}
	if v := h[hdrB3TraceID]; len(v) > 0 || len(h[hdrB3Sampled]) > 0 || len(h[hdrB3Flags]) > 0 {
		var b parent
		if parseB3Multi(h, &b) {
			p.formats |= fmtB3Multi
			if p.formats&(fmtW3C|fmtB3Single) == 0 {
				b.formats = p.formats
				p = b
			}
		}
	}
	return p
}

// parseTraceparent reads "00-<32 hex>-<16 hex>-<2 hex>" (W3C Trace Context
// level 1). A later version may append fields after a dash; version ff is
// invalid, and so are all-zero ids and upper-case hex.
func parseTraceparent(s string, p *parent) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	if !isLowerHex(s[:2]) || s[:2] == "ff" {
		return false
	}
	if s[:2] == "00" && len(s) != 55 {
		return false
	}
	if len(s) > 55 && s[55] != '-' {
		return false
	}
	var flags [1]byte
	if !decodeHex(p.traceID[:], s[3:35]) || !decodeHex(p.spanID[:], s[36:52]) || !decodeHex(flags[:], s[53:55]) {
		return false
	}
	if isZero(p.traceID[:]) || isZero(p.spanID[:]) {
		return false
	}
	p.hasIDs = true
	if flags[0]&1 == 1 {
		p.decision = sampledYes
	} else {
		p.decision = sampledNo
	}
	return true
}

// parseB3Single reads "{traceid}-{spanid}[-{sampling}[-{parentspanid}]]" or
// a lone sampling state ("0", "1", "d").
func parseB3Single(s string, p *parent) bool {
	if len(s) == 1 {
		return b3Sampling(s, p)
	}
	i := indexByte(s, '-')
	if i < 0 {
		return false
	}
	if !b3TraceID(s[:i], p) {
		return false
	}
	s = s[i+1:]
	j := indexByte(s, '-')
	span := s
	if j >= 0 {
		span = s[:j]
	}
	if len(span) != 16 || !decodeHex(p.spanID[:], span) || isZero(p.spanID[:]) {
		return false
	}
	p.hasIDs = true
	if j < 0 {
		return true
	}
	s = s[j+1:]
	k := indexByte(s, '-')
	samp := s
	if k >= 0 {
		samp = s[:k]
		var pid [8]byte
		if len(s[k+1:]) != 16 || !decodeHex(pid[:], s[k+1:]) {
			return false
		}
	}
	return b3Sampling(samp, p)
}

func b3Sampling(s string, p *parent) bool {
	switch s {
	case "1", "true":
		p.decision = sampledYes
	case "0", "false":
		p.decision = sampledNo
	case "d":
		p.decision, p.debug = sampledYes, true
	default:
		return false
	}
	return true
}

func b3TraceID(s string, p *parent) bool {
	switch len(s) {
	case 32:
		if !decodeHex(p.traceID[:], s) {
			return false
		}
	case 16:
		if !decodeHex(p.traceID[8:], s) {
			return false
		}
		p.trace64 = true
	default:
		return false
	}
	return !isZero(p.traceID[:])
}

// parseB3Multi reads the x-b3-* headers. A sampling state alone (no ids) is
// a valid B3 context: it carries only the decision.
func parseB3Multi(h http.Header, p *parent) bool {
	tid, sid := h.Get(hdrB3TraceID), h.Get(hdrB3SpanID)
	if tid != "" || sid != "" {
		if !b3TraceID(tid, p) || len(sid) != 16 || !decodeHex(p.spanID[:], sid) || isZero(p.spanID[:]) {
			return false
		}
		p.hasIDs = true
	}
	if f := h.Get(hdrB3Flags); f == "1" {
		p.decision, p.debug = sampledYes, true
		return true
	}
	if s := h.Get(hdrB3Sampled); s != "" {
		return b3Sampling(s, p)
	}
	return true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// decodeHex decodes lower-case hex of exactly 2*len(dst) characters without
// allocating.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) || !isLowerHex(s) {
		return false
	}
	for i := range dst {
		dst[i] = unhex(s[2*i])<<4 | unhex(s[2*i+1])
	}
	return true
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
