package dnsproxy

import (
	"errors"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	// TTL is the TTL of the answers the proxy gives from its table, as
	// Istio's DNS proxy gives.
	TTL = 30
	// udpMinSize is what a UDP answer may hold without EDNS0 (RFC 1035).
	udpMinSize = 512
	// udpMaxSize caps the EDNS0 size a client may ask for, and is the size
	// our own answers advertise (DNS Flag Day 2020).
	udpMaxSize = 1232
)

// query is what the proxy needs from a parsed query.
type query struct {
	header dnsmessage.Header
	q      dnsmessage.Question
	// edns is whether the query carried an OPT record; a local answer then
	// carries one too (RFC 6891 section 7).
	edns    bool
	udpSize int
}

var errFormat = errors.New("malformed query")

// parseQuery reads a query. It fails with errFormat when the message is
// malformed but its header was read, so a FORMERR can carry the query's id.
func parseQuery(msg []byte) (query, error) {
	var (
		p   dnsmessage.Parser
		q   query
		err error
	)
	if q.header, err = p.Start(msg); err != nil {
		return q, err
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return q, errFormat
	}
	q.q = qs[0]
	if err := p.SkipAllAnswers(); err != nil {
		return q, errFormat
	}
	if err := p.SkipAllAuthorities(); err != nil {
		return q, errFormat
	}
	for {
		h, err := p.AdditionalHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return q, errFormat
		}
		if h.Type == dnsmessage.TypeOPT {
			q.edns = true
			q.udpSize = int(h.Class)
		}
		if err := p.SkipAdditional(); err != nil {
			return q, errFormat
		}
	}
	return q, nil
}

// udpLimit is how large a UDP answer to q may be.
func (q *query) udpLimit() int {
	if q.edns && q.udpSize > udpMinSize {
		return min(q.udpSize, udpMaxSize)
	}
	return udpMinSize
}

// reply builds a response to q with rcode and, for A or AAAA, the addresses
// of that family, authoritative when aa. Over limit it drops the answers and
// sets TC so the client retries over TCP.
func reply(q *query, rcode dnsmessage.RCode, aa bool, addrs []netip.Addr, limit int) []byte {
	var keep []netip.Addr
	for _, a := range addrs {
		if a.Is4() && q.q.Type == dnsmessage.TypeA || a.Is6() && q.q.Type == dnsmessage.TypeAAAA {
			keep = append(keep, a)
		}
	}
	msg, err := pack(q, rcode, aa, keep, false)
	if err == nil && len(msg) <= limit {
		return msg
	}
	msg, _ = pack(q, rcode, aa, nil, true)
	return msg
}

func pack(q *query, rcode dnsmessage.RCode, aa bool, addrs []netip.Addr, truncated bool) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{
		ID:                 q.header.ID,
		Response:           true,
		OpCode:             q.header.OpCode,
		Authoritative:      aa,
		Truncated:          truncated,
		RecursionDesired:   q.header.RecursionDesired,
		RecursionAvailable: true,
		RCode:              rcode,
	})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if q.q.Name.Length > 0 {
		if err := b.Question(q.q); err != nil {
			return nil, err
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	// Answers echo the question's name as sent, case included: resolvers
	// that randomise case (DNS 0x20) check it.
	rh := dnsmessage.ResourceHeader{Name: q.q.Name, Class: dnsmessage.ClassINET, TTL: TTL}
	for _, a := range addrs {
		var err error
		if a.Is4() {
			err = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		} else {
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	if q.edns {
		var oh dnsmessage.ResourceHeader
		if err := oh.SetEDNS0(udpMaxSize, dnsmessage.RCodeSuccess, false); err != nil {
			return nil, err
		}
		if err := b.OPTResource(oh, dnsmessage.OPTResource{}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// header reads a message's id and flags, or fails on fewer than 12 bytes.
func header(msg []byte) (id uint16, response, truncated bool, ok bool) {
	if len(msg) < 12 {
		return 0, false, false, false
	}
	return uint16(msg[0])<<8 | uint16(msg[1]), msg[2]&0x80 != 0, msg[2]&0x02 != 0, true
}
