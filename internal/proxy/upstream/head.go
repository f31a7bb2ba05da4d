package upstream

import (
	"io"
	"net/http"

	"github.com/trellismesh/trellis/internal/proxy/http1"
)

// The direct path reads responses with http1's parser: a response, its
// body (with the Cluster's wrapper) and its header values' array are one
// allocation. Anything the parser leaves (chunked or close-delimited
// bodies, obs-fold, a head that does not fit the connection's buffer, a
// malformed one) goes to http.ReadResponse, which answers it as before.

// directResponse is a response read by the parser: the response, its
// body (with the Cluster's wrapper) and its values' array in one
// allocation.
type directResponse struct {
	resp http.Response
	body directBody
	wrap body // the Cluster's accounting around it
	vals [inlineValues]string
}

// inlineValues is the room for header values a directResponse has; a
// response with more fields allocates their array apart.
const inlineValues = 8

// readResponse reads the next response on dc for req, into a header map
// from donor when it has one.
//
// The spelling of the head's header names (ResponseHeaderNames) comes
// from the head itself: the direct path does not arm the connection's
// http1.ResponseHeads, which would scan every byte read a second time, except
// for a head longer than the buffer, which it scans from the buffer on.
func (dc *directConn) readResponse(req *http.Request, donor HeaderDonor) (*http.Response, error) {
	head := http1.PeekResponseHead(dc.br)
	if head == nil {
		if n := dc.br.Buffered(); n > 0 && dc.cn != nil {
			b, _ := dc.br.Peek(n)
			dc.cn.heads.RequestWritten()
			dc.cn.heads.Read(b)
		}
		return http.ReadResponse(dc.br, req)
	}
	if dc.cn != nil { // nil in the parser's own tests
		dc.cn.heads.PublishNames(http1.HeadNames(head))
	}
	if dc.hp.Scan(head) {
		r := &directResponse{}
		if !dc.hp.Fill(&r.resp, r.vals[:], req, spareHeader(donor)) {
			return http.ReadResponse(dc.br, req)
		}
		dc.br.Discard(len(head))
		r.body.br = dc.br
		r.body.wrap = &r.wrap
		if r.resp.ContentLength > 0 && req.Method != http.MethodHead { // 0 for 1xx, 204, 304
			r.body.remaining = r.resp.ContentLength
		}
		r.resp.Body = &r.body
		return &r.resp, nil
	}
	return http.ReadResponse(dc.br, req)
}

// readLength reads a parsed response's body, its remaining bytes, from
// the connection's reader: a body cut short is io.ErrUnexpectedEOF, as
// net/http's.
func (b *directBody) readLength(p []byte) (int, error) {
	if b.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	b.remaining -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && b.remaining == 0 {
		err = io.EOF
	}
	return n, err
}
