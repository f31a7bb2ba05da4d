package meshdns

import (
	"errors"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	// ttl is the TTL of every answer, as kube-dns and CoreDNS use: short, so
	// that a Service's change reaches clients within seconds.
	ttl = 5
	// udpMinSize is what a UDP answer may hold without EDNS0 (RFC 1035).
	udpMinSize = 512
	// udpMaxSize caps what EDNS0 may ask for: 1232 is the size DNS Flag Day
	// 2020 settled on to avoid IP fragmentation, and the buffer UDP reads into.
	udpMaxSize = 1232
	// rcodeBadVers is EDNS0's BADVERS (RFC 6891), an extended RCODE.
	rcodeBadVers dnsmessage.RCode = 16
	// typeIXFR is an incremental zone transfer (RFC 1995); dnsmessage
	// names AXFR but not IXFR.
	typeIXFR dnsmessage.Type = 251
)

// request is what respond needs from a parsed query.
type request struct {
	header dnsmessage.Header
	q      dnsmessage.Question
	// edns is whether the query carried an OPT record; the answer then
	// carries one too (RFC 6891 section 7).
	edns    bool
	udpSize int
	version uint8
}

var errFormat = errors.New("malformed query")

// parse reads a query. It fails with errFormat when the message is
// malformed but its header was read, so a FORMERR can carry the query's id.
func parse(msg []byte) (request, error) {
	var (
		p   dnsmessage.Parser
		req request
		err error
	)
	if req.header, err = p.Start(msg); err != nil {
		return req, err
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		// RFC 9619: a query has exactly one question.
		return req, errFormat
	}
	req.q = qs[0]
	if err := p.SkipAllAnswers(); err != nil {
		return req, errFormat
	}
	if err := p.SkipAllAuthorities(); err != nil {
		return req, errFormat
	}
	for {
		h, err := p.AdditionalHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return req, errFormat
		}
		if h.Type == dnsmessage.TypeOPT {
			// RFC 6891 section 6.1.1: more than one OPT, or one not at the
			// root, is a FORMERR.
			if req.edns || h.Name.String() != "." {
				req.edns = false
				return req, errFormat
			}
			req.edns = true
			req.udpSize = int(h.Class)
			req.version = uint8(h.TTL >> 16)
		}
		if err := p.SkipAdditional(); err != nil {
			req.edns = false
			return req, errFormat
		}
	}
	return req, nil
}

// respond answers one query message that came over UDP (answers limited to
// 512 bytes, or the EDNS0 size) or TCP. It returns nil when the message
// deserves no answer at all.
func (s *Server) respond(msg []byte, udp bool) []byte {
	req, err := parse(msg)
	if err != nil && !errors.Is(err, errFormat) {
		return nil // not even a header: there is no id to answer to
	}
	if req.header.Response {
		// Never answer an answer: two servers could otherwise reflect
		// messages at each other forever.
		return nil
	}
	h := dnsmessage.Header{
		ID:               req.header.ID,
		Response:         true,
		OpCode:           req.header.OpCode,
		RecursionDesired: req.header.RecursionDesired,
	}
	limit := 65535
	if udp {
		limit = udpMinSize
		if req.edns && req.udpSize > udpMinSize {
			limit = min(req.udpSize, udpMaxSize)
		}
	}
	a := answer{h: h, req: req, limit: limit}
	switch {
	case err != nil:
		a.h.RCode = dnsmessage.RCodeFormatError
		a.noQuestion = true
	case req.header.OpCode != 0:
		// Only QUERY: no NOTIFY, UPDATE, IQUERY, STATUS.
		a.h.RCode = dnsmessage.RCodeNotImplemented
		a.noQuestion = true
	case req.edns && req.version != 0:
		a.rcode = rcodeBadVers
	default:
		s.lookup(&a)
	}
	return a.build()
}

// lookup fills in the answer to a well-formed QUERY.
func (s *Server) lookup(a *answer) {
	z := s.zone.Load()
	q := a.req.q
	inZone, exists, addrs := z.lookup(lowerASCII(q.Name.String()))
	if !inZone || (q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY) {
		// REFUSED, not SERVFAIL: there is no outside world to ask (the node
		// namespace has no route out) and nothing failed. SERVFAIL means "I
		// tried and failed, try again": Go's resolver reports it as a
		// temporary error and callers retry in vain. REFUSED is what an
		// authoritative-only server says for a name outside its zones, a
		// final answer.
		a.h.RCode = dnsmessage.RCodeRefused
		return
	}
	a.h.Authoritative = true
	a.zone = z
	if !exists {
		a.h.RCode = dnsmessage.RCodeNameError
		a.soa = true
		return
	}
	switch q.Type {
	case dnsmessage.TypeAXFR, typeIXFR:
		// Zone transfers would list every Service to anyone who asks and
		// no secondary server exists to need them.
		a.h.Authoritative = false
		a.h.RCode = dnsmessage.RCodeRefused
		return
	case dnsmessage.TypeSOA:
		if lowerASCII(q.Name.String()) == z.origin {
			a.soaAnswer = true
			return
		}
	}
	for _, addr := range addrs {
		switch {
		case addr.Is4() && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL):
			a.addrs = append(a.addrs, addr)
		case addr.Is6() && (q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL):
			a.addrs = append(a.addrs, addr)
		}
	}
	if len(a.addrs) == 0 {
		// NOERROR with no data: the name exists but has nothing of this
		// type; the SOA lets resolvers cache that for its minimum (RFC 2308).
		a.soa = true
	}
}

// answer is a response being assembled.
type answer struct {
	h   dnsmessage.Header
	req request
	// rcode is an extended RCODE (over 15), carried partly in the OPT record.
	rcode      dnsmessage.RCode
	limit      int
	noQuestion bool
	zone       *zone
	addrs      []netip.Addr
	soa        bool // an SOA in the authority section (negative answer)
	soaAnswer  bool // the SOA as the answer (an SOA query at the apex)
}

// build packs the answer; if it exceeds the limit it drops answer records
// from the end until it fits and sets TC, so a UDP client retries over TCP
// (RFC 2181 section 9) while still getting what fits.
func (a *answer) build() []byte {
	n := len(a.addrs)
	msg, err := a.pack(n)
	if err == nil && len(msg) <= a.limit {
		return msg
	}
	// Binary search for the most answers that fit.
	lo, hi := 0, n-1
	for lo <= hi {
		mid := (lo + hi) / 2
		if m, err := a.packTruncated(mid); err == nil && len(m) <= a.limit {
			msg, lo = m, mid+1
		} else {
			hi = mid - 1
		}
	}
	if lo == 0 {
		msg, _ = a.packTruncated(0)
	}
	return msg
}

func (a *answer) packTruncated(n int) ([]byte, error) {
	h := a.h
	h.Truncated = true
	b := *a
	b.h = h
	return b.pack(n)
}

// pack builds the message with the first n answer records.
func (a *answer) pack(n int) ([]byte, error) {
	h := a.h
	if a.rcode > 15 {
		h.RCode = a.rcode & 0xF
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if !a.noQuestion {
		if err := b.Question(a.req.q); err != nil {
			return nil, err
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	// Answers echo the question's name as sent, case included: resolvers
	// that randomise case (DNS 0x20) check it.
	rh := dnsmessage.ResourceHeader{Name: a.req.q.Name, Class: dnsmessage.ClassINET, TTL: ttl}
	for _, addr := range a.addrs[:n] {
		var err error
		if addr.Is4() {
			err = b.AResource(rh, dnsmessage.AResource{A: addr.As4()})
		} else {
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: addr.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	if a.soaAnswer {
		if err := a.packSOA(&b); err != nil {
			return nil, err
		}
	}
	if err := b.StartAuthorities(); err != nil {
		return nil, err
	}
	if a.soa {
		if err := a.packSOA(&b); err != nil {
			return nil, err
		}
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	if a.req.edns {
		var oh dnsmessage.ResourceHeader
		if err := oh.SetEDNS0(udpMaxSize, a.rcode, false); err != nil {
			return nil, err
		}
		if err := b.OPTResource(oh, dnsmessage.OPTResource{}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func (a *answer) packSOA(b *dnsmessage.Builder) error {
	origin := dnsmessage.MustNewName(a.zone.origin)
	return b.SOAResource(
		dnsmessage.ResourceHeader{Name: origin, Class: dnsmessage.ClassINET, TTL: ttl},
		dnsmessage.SOAResource{
			NS:     dnsmessage.MustNewName("ns.dns." + a.zone.origin),
			MBox:   dnsmessage.MustNewName("hostmaster." + a.zone.origin),
			Serial: a.zone.serial,
			// Refresh, retry and expire matter only to secondaries, which
			// do not exist; CoreDNS's values. MinTTL is the negative-caching
			// TTL (RFC 2308): as short as the positive one, so a Service
			// that appears is found within seconds.
			Refresh: 7200,
			Retry:   1800,
			Expire:  86400,
			MinTTL:  ttl,
		})
}
