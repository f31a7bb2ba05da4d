package hcm

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 refusals that net/http's server makes on its own, counted.
//
// net/http's HTTP/2 server enforces the request header limit and answers
// an oversized header block itself: a 431 from its own handler when the
// block goes over by a little, a GOAWAY (PROTOCOL_ERROR, or
// COMPRESSION_ERROR for a single string over the limit) when a further
// fragment arrives after that or a fragment is over twice what is left.
// Neither reaches our handler, and it has no hook for them. Nor does it
// bound how long a header block may take: a client that sends HEADERS
// without END_HEADERS and stalls holds the connection (no other stream
// can proceed until the block ends, RFC 9113 §6.10) until the idle
// timeout.
//
// Request trailers go through the same decoder and the same limit, with
// one difference: a trailer block a little over the limit is not refused.
// The server drops the fields past the limit, passes the rest on as the
// request's trailers and ends the stream as usual (its
// processTrailerHeaders ignores MetaHeadersFrame.Truncated); only the
// GOAWAYs refuse trailers.
//
// So the connection wrapper follows the client's frames (h2Watch): it
// decodes each header block, requests' and trailers', with its own HPACK
// decoder, in step with the server's (same bytes, same table size, same
// limits), to tell when the server will refuse or cut one and count it
// (see overflow); and it bounds each header block by ReadHeaderTimeout
// from its first frame, closing the connection and counting
// RqHeaderTimeout when it runs out.

// h2Limits are a server's limits on HTTP/2 header blocks.
type h2Limits struct {
	// maxList is the server's SETTINGS_MAX_HEADER_LIST_SIZE, as net/http
	// derives it from MaxHeaderBytes.
	maxList uint32
	// headerTimeout bounds a header block from its first frame to the end
	// of its last.
	headerTimeout time.Duration
}

func newH2Limits(maxHeaderBytes int, headerTimeout time.Duration) *h2Limits {
	// net/http's http2adjustHTTP1MaxHeaderSize: 32 bytes of overhead for
	// 10 fields.
	return &h2Limits{maxList: uint32(maxHeaderBytes + 10*32), headerTimeout: headerTimeout}
}

// HTTP/2 frame types and flags the watch needs (RFC 9113 §6).
const (
	h2FrameHeaders      = 0x1
	h2FrameContinuation = 0x9
	h2FlagEndHeaders    = 0x4
	h2FlagPadded        = 0x8
	h2FlagPriority      = 0x20
	h2FrameHeaderLen    = 9
	// h2PrefaceRest is the client preface after h2Preface, which
	// headerConn.Read has matched when the watch starts.
	h2PrefaceRest = len("\r\n\r\nSM\r\n\r\n")
)

// h2Watch follows the frames a client sends on an HTTP/2 connection. Only
// the goroutine reading the connection uses it (net/http's HTTP/1 reader
// until the preface, then the HTTP/2 frame reader), one read at a time.
type h2Watch struct {
	lim *h2Limits
	// off stops the watch for good: the connection broke a rule the
	// server will end it for, or the watch lost step with the server.
	off  bool
	skip int // preface bytes still to come

	hdr  [h2FrameHeaderLen]byte
	nhdr int
	// The frame being read: its type, flags and stream, and the bytes of
	// its payload still to come; a HEADERS or CONTINUATION payload is
	// kept in payload until whole.
	ftype, flags uint8
	stream       uint32
	remain       int
	payload      []byte

	dec *hpack.Decoder
	// The header block being read: its stream, whether it opens a request
	// (not trailers), and its state in the decoder as net/http keeps it.
	inBlock   bool
	blockNew  bool
	lastNew   uint32 // highest stream a request was opened on
	left      uint32 // header list bytes the block may still use
	truncated bool
	invalid   bool
	sawField  bool // a regular field seen, for pseudo-header order
	// armed is set while the connection carries our header deadline.
	armed    bool
	timedOut bool
}

// watchH2 feeds p, the next bytes read from an HTTP/2 connection, and the
// read's error to the connection's watch.
func (c *headerConn) watchH2(p []byte, err error) {
	w := c.h2w
	if w == nil {
		w = &h2Watch{lim: c.h2lim, skip: h2PrefaceRest}
		c.h2w = w
	}
	if w.off {
		return
	}
	for len(p) > 0 && !w.off {
		p = w.feed(c, p)
	}
	if w.inBlock && !w.armed && !w.off && w.lim.headerTimeout > 0 {
		// A header block started in this read and goes on past it. (One
		// that arrives whole, as nearly all do, costs no deadline.)
		w.armed = true
		c.Conn.SetReadDeadline(time.Now().Add(w.lim.headerTimeout))
	}
	if err != nil && w.armed && !w.timedOut && errors.Is(err, os.ErrDeadlineExceeded) {
		// The header block ran out of time; the server closes the
		// connection on this error.
		w.timedOut = true
		c.stats.RqHeaderTimeout.Add(1)
	}
}

// feed consumes a prefix of p and returns the rest.
func (w *h2Watch) feed(c *headerConn, p []byte) []byte {
	if w.skip > 0 {
		k := min(w.skip, len(p))
		w.skip -= k
		return p[k:]
	}
	if w.remain == 0 && w.nhdr < h2FrameHeaderLen {
		k := copy(w.hdr[w.nhdr:], p)
		w.nhdr += k
		if w.nhdr == h2FrameHeaderLen {
			w.startFrame(c)
		}
		return p[k:]
	}
	k := min(w.remain, len(p))
	if w.ftype == h2FrameHeaders || w.ftype == h2FrameContinuation {
		w.payload = append(w.payload, p[:k]...)
	}
	w.remain -= k
	if w.remain == 0 {
		w.endFrame(c)
	}
	return p[k:]
}

// startFrame reads the frame header in w.hdr.
func (w *h2Watch) startFrame(c *headerConn) {
	length := int(w.hdr[0])<<16 | int(w.hdr[1])<<8 | int(w.hdr[2])
	w.ftype, w.flags = w.hdr[3], w.hdr[4]
	w.stream = binary.BigEndian.Uint32(w.hdr[5:]) & (1<<31 - 1)
	w.remain = length
	w.payload = w.payload[:0]
	if length > MaxFrameSize {
		w.stop(c) // FRAME_SIZE_ERROR: the server ends the connection
		return
	}
	if w.inBlock != (w.ftype == h2FrameContinuation) {
		w.stop(c) // out of order (RFC 9113 §6.10): PROTOCOL_ERROR
		return
	}
	if w.ftype == h2FrameHeaders {
		w.startBlock(c)
	}
	if length == 0 {
		w.endFrame(c)
	}
}

// startBlock starts a header block at a HEADERS frame.
func (w *h2Watch) startBlock(c *headerConn) {
	w.inBlock = true
	w.blockNew = w.stream > w.lastNew
	if w.blockNew {
		w.lastNew = w.stream
	}
	w.left, w.truncated, w.invalid, w.sawField = w.lim.maxList, false, false, false
	if w.dec == nil {
		// As the server's: net/http's default decoder table size (it
		// advertises the same in SETTINGS_HEADER_TABLE_SIZE) and string
		// limit.
		w.dec = hpack.NewDecoder(4096, w.emit)
		w.dec.SetMaxStringLength(int(w.lim.maxList))
	}
	w.dec.SetEmitEnabled(true)
}

// emit mirrors the server's accounting of one decoded field (net/http's
// Framer.readMetaFrame): the block is truncated, and answered 431, once
// its fields' sizes pass the list size; an invalid field stops the
// accounting.
func (w *h2Watch) emit(f hpack.HeaderField) {
	pseudo := strings.HasPrefix(f.Name, ":")
	switch {
	case !httpguts.ValidHeaderFieldValue(f.Value),
		pseudo && w.sawField,
		!pseudo && !validWireName(f.Name):
		w.invalid = true
		w.dec.SetEmitEnabled(false)
		return
	}
	if !pseudo {
		w.sawField = true
	}
	size := f.Size()
	if size > w.left {
		w.truncated = true
		w.left = 0
		w.dec.SetEmitEnabled(false)
		return
	}
	w.left -= size
}

// validWireName is net/http's validWireHeaderFieldName: a token in lower
// case.
func validWireName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || ('A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// endFrame handles a frame whose payload has all arrived.
func (w *h2Watch) endFrame(c *headerConn) {
	w.nhdr = 0
	if !w.inBlock {
		return
	}
	frag := w.payload
	if w.ftype == h2FrameHeaders {
		var ok bool
		if frag, ok = headersFragment(frag, w.flags); !ok {
			w.stop(c) // bad padding or priority: PROTOCOL_ERROR
			return
		}
	}
	// The order of net/http's checks, fragment by fragment.
	if uint64(len(frag)) > 2*uint64(w.left) {
		// Far over the limit: the server sends GOAWAY without decoding.
		w.overflow(c, true)
		w.stop(c)
		return
	}
	if w.invalid {
		w.stop(c)
		return
	}
	if _, err := w.dec.Write(frag); err != nil {
		if errors.Is(err, hpack.ErrStringLength) {
			w.overflow(c, true) // one string over the limit: COMPRESSION_ERROR
		}
		w.stop(c)
		return
	}
	if w.flags&h2FlagEndHeaders == 0 {
		return
	}
	w.inBlock = false
	w.disarm(c)
	if cap(w.payload) > 4<<10 {
		w.payload = nil // an idle connection keeps no large buffer
	}
	if err := w.dec.Close(); err != nil {
		w.stop(c)
		return
	}
	if w.truncated {
		// The server answers a request 431, and cuts trailers.
		w.overflow(c, w.blockNew)
	}
}

// headersFragment returns a HEADERS payload's header block fragment.
func headersFragment(p []byte, flags uint8) ([]byte, bool) {
	pad := 0
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// overflow counts a header block over the limit, and its request as
// refused when the server refuses it (refused).
func (w *h2Watch) overflow(c *headerConn, refused bool) {
	c.stats.HeaderOverflow.Add(1)
	if refused {
		c.stats.RqHeaderTooLarge.Add(1)
	}
}

// stop ends the watch, leaving the connection to the server.
func (w *h2Watch) stop(c *headerConn) {
	w.off = true
	w.disarm(c)
	w.payload = nil
}

// disarm lifts the header block's deadline.
func (w *h2Watch) disarm(c *headerConn) {
	if w.armed && !w.timedOut {
		w.armed = false
		c.Conn.SetReadDeadline(time.Time{})
	}
}
