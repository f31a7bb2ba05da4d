package hcm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/http1"
	"github.com/trellismesh/trellis/internal/proxy/netio"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
)

// The fast path serves ordinary HTTP/1.1 requests without net/http's
// server: one goroutine per connection reads a request, runs the handler
// with a small ResponseWriter that writes straight to the connection, and
// reads the next. net/http's server additionally starts a goroutine per
// request to watch the connection while the handler runs, stops it again
// with a deadline, and clones the response header map on WriteHeader:
// per request, a goroutine hand-off and allocations the proxy does not
// need (docs/performance.md, "Sidecar").
//
// A connection stays on the fast path only while its requests are plain:
// HTTP/1.1, a head that fits fastBufSize, no body or a Content-Length one,
// no Upgrade, Expect or Transfer-Encoding, not CONNECT. At the first
// request that is not, the connection is handed to net/http with every
// byte not yet consumed, and stays there. The same headerConn sits under
// both, so 408s, 431s, CL+TE refusals and header-name case work the same.
//
// What the fast path does not do: watch for the client leaving while the
// handler runs. A request whose client closed its connection runs to its
// end (or its route timeout) and its answer is then discarded, where
// net/http would have cancelled it at once.

// crlfcrlf ends a request head.
var crlfcrlf = []byte("\r\n\r\n")

// fastBufSize is the read buffer of a fast connection; a request head
// longer than this goes to net/http.
const fastBufSize = 4 << 10

// maxDrainBody is what the fast path reads of a body the handler left
// unread before reusing the connection; more closes it.
const maxDrainBody = 256 << 10

// fastConn is one connection on the fast path.
type fastConn struct {
	s    *Server
	c    *Conn
	hc   *headerConn
	br   *bufio.Reader
	bw   *bufio.Writer
	ctx  context.Context
	idle atomic.Bool
	w    fastWriter
	x    exchange // the current request's
	hp   *http1.RequestParser
	// timer gives the connection's requests their route timeouts.
	timer *upstream.ConnTimer
	// remoteAddr is the requests' RemoteAddr, formatted once.
	remoteAddr string
	// spareHeader is the last response's header map, emptied, for the
	// next response (see TakeHeader); donate says it is still there.
	spareHeader http.Header
	donate      atomic.Bool
	// requestHeaderFree says that nothing uses the current request's
	// header map once its handler returns (it went upstream on the direct
	// path), so the parser may reuse it for the next request.
	requestHeaderFree bool

	// For hold and step: stepFn is step, bound once; answered says a
	// response just went out; held is a request parsed there whose body
	// has yet to arrive; holdEnd is why step left.
	stepFn   func() bool
	answered bool
	held     *http.Request
	holdEnd  int
}

// TakeHeader is upstream.HeaderDonor's (the exchange's Call.Donor): the
// direct path reads the upstream's response header into the map of the
// connection's previous response, which the writer then adopts (adoptHeader) instead of
// copying it, so that a response costs no header map of its own.
func (fc *fastConn) TakeHeader() http.Header {
	if !fc.donate.CompareAndSwap(true, false) {
		return nil
	}
	h := fc.spareHeader
	fc.spareHeader = nil
	return h
}

// serveFast runs c's requests until it closes or is handed to net/http.
func (s *Server) serveFast(c *Conn) {
	hc := &headerConn{Conn: c, stats: &s.stats, raw: netio.NewRawIO(c.Conn), fast: true}
	fc := &fastConn{s: s, c: c, hc: hc}
	fc.br = bufio.NewReaderSize(hc, fastBufSize)
	fc.bw = bufio.NewWriterSize(hc, fastBufSize)
	// The requests' context never ends (see upstream.ConnTimer); what
	// the request path needs of the connection it has from the exchange.
	fc.ctx = context.Background()
	fc.hp = http1.NewRequestParser((&http.Request{}).WithContext(fc.ctx))
	fc.timer = upstream.NewConnTimer(fc.ctx)
	fc.remoteAddr = c.Source.String()
	fc.stepFn = fc.step
	if !s.trackFast(fc) {
		c.Close()
		return
	}
	s.stats.CxTotal.Add(1)
	s.stats.CxActive.Add(1)
	handed := false
	defer func() {
		s.untrackFast(fc)
		if !handed {
			s.stats.CxActive.Add(-1)
			c.Close()
		}
	}()
	for {
		var ok, handoff bool
		if fc.hc.raw != nil {
			ok, handoff = fc.hold()
		} else {
			ok, handoff = fc.next()
		}
		if handoff {
			// The connection goes on under net/http, which counts it.
			s.stats.CxTotal.Add(-1)
			s.stats.CxActive.Add(-1)
			handed = true
			s.handOff(fc)
			return
		}
		if !ok {
			return
		}
	}
}

// hold serves the connection's requests inside one poller read operation
// (netio.RawIO.Serve) for as long as each arrives whole, so that the
// wait for the next request costs no read that finds nothing. A request
// whose head or body is still on its way is served the ordinary way
// (next), with the header timeout and reads that wait, and the loop
// returns here after it.
func (fc *fastConn) hold() (ok, handoff bool) {
	fc.holdEnd, fc.answered = holdOrdinary, false
	if err := fc.hc.raw.Serve(fc.stepFn); err != nil {
		return false, false // idle too long, or closed
	}
	switch fc.holdEnd {
	case holdClose:
		return false, false
	case holdHandoff:
		return false, true
	}
	if req := fc.held; req != nil {
		// Its body has no deadline, as on next's way: the idle one
		// armed for the wait before this request is lifted.
		fc.held = nil
		fc.hc.SetReadDeadline(time.Time{})
		return fc.serveRequest(req), false
	}
	return fc.next()
}

// Why step left Serve.
const (
	holdOrdinary = iota // next, or held, goes on the ordinary way
	holdClose
	holdHandoff
)

// step is hold's loop, run by the poller when the connection may have
// something to read (see netio.RawIO.Serve): it serves the requests that
// are whole in the buffer and returns true to wait for more.
func (fc *fastConn) step() (wait bool) {
	for {
		if fc.br.Buffered() == 0 {
			if fc.answered {
				// The client sends its next request after reading this
				// answer (or had it on the way, which the poller then
				// remembers), so there is nothing to read yet.
				fc.answered = false
				return fc.idleWait()
			}
			if _, err := fc.br.Peek(1); err != nil {
				if err == netio.ErrWouldBlock {
					return fc.idleWait()
				}
				fc.holdEnd = holdClose
				return false
			}
		}
		fc.idle.Store(false)
		b, _ := fc.br.Peek(fc.br.Buffered())
		end := bytes.Index(b, crlfcrlf)
		if end < 0 || !http1.PlainHead(b[:end+4]) {
			return false // next reads on, or hands off
		}
		req, handoff := fc.parse(b[:end+4])
		if req == nil {
			fc.holdEnd = holdClose
			if handoff {
				fc.holdEnd = holdHandoff
			}
			return false
		}
		if req.ContentLength > int64(fc.br.Buffered()) {
			fc.held = req // the body's reads must be able to wait
			return false
		}
		// The idle deadline stays: nothing waits on a read until the
		// next idleWait moves it.
		if !fc.serveRequest(req) {
			fc.holdEnd = holdClose
			return false
		}
		fc.answered = true
	}
}

// idleWait readies the connection for its wait between requests; false
// when it is draining, which next then closes.
func (fc *fastConn) idleWait() bool {
	fc.idle.Store(true)
	if fc.s.draining.Load() {
		return false
	}
	fc.hc.SetReadDeadline(time.Now().Add(positive(fc.s.cfg.IdleTimeout, DefaultIdleTimeout)))
	return true
}

// next serves one request; ok false ends the connection, handoff true
// passes it to net/http before anything of the request was consumed.
func (fc *fastConn) next() (ok, handoff bool) {
	s := fc.s
	fc.idle.Store(true)
	if s.draining.Load() {
		return false, false
	}
	fc.hc.SetReadDeadline(time.Now().Add(positive(s.cfg.IdleTimeout, DefaultIdleTimeout)))
	if _, err := fc.br.Peek(1); err != nil {
		return false, false
	}
	fc.idle.Store(false)
	fc.hc.SetReadDeadline(time.Now().Add(positive(s.cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)))
	head, err := http1.PeekHead(fc.br)
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return false, true // a long head: net/http, with its limit and 431
		}
		return false, false // timed out (headerConn wrote the 408) or gone
	}
	req, handoff := fc.parse(head)
	if req == nil {
		return false, handoff
	}
	fc.hc.SetReadDeadline(time.Time{})
	return fc.serveRequest(req), false
}

// parse reads the request whose head is buffered; nil when the
// connection must end (after a 400) or, with handoff, go to net/http.
func (fc *fastConn) parse(head []byte) (req *http.Request, handoff bool) {
	if !http1.PlainHead(head) {
		return nil, true
	}
	req, err := fc.hp.Parse(head, fc.br)
	fc.hc.spare = nil
	switch {
	case err == nil:
		fc.br.Discard(len(head))
		fc.hc.spare = fc.hp.Spare
		fc.hc.fastNames = fc.hp.Names
	case errors.Is(err, http1.ErrFallback):
		fc.hc.fastNames = http1.HeadNames(head)
		if req, err = http.ReadRequest(fc.br); err == nil {
			req = req.WithContext(fc.ctx)
		}
	}
	if err != nil {
		io.WriteString(fc.hc, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return nil, false
	}
	req.RemoteAddr = fc.remoteAddr
	return req, false
}

// serveRequest answers req; false ends the connection.
func (fc *fastConn) serveRequest(req *http.Request) bool {
	w := &fc.w
	w.reset(fc, req)
	if req.Method == http.MethodOptions && req.RequestURI == "*" {
		// As net/http answers it, without the handler.
		w.Header()["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusOK)
		if err := w.finish(); err != nil {
			return false
		}
		return !req.Close
	}
	fc.requestHeaderFree = false
	if !fc.serve(w, req) {
		return false
	}
	if fc.requestHeaderFree {
		clear(req.Header)
		fc.hp.Header = req.Header
	}
	if err := w.finish(); err != nil {
		return false
	}
	// What the handler left of the body must go before the next request.
	if b, ok := req.Body.(*http1.Body); ok {
		if !b.SkipRest(maxDrainBody) {
			return false
		}
	} else {
		if n, _ := io.CopyN(io.Discard, req.Body, maxDrainBody+1); n > maxDrainBody {
			return false
		}
		req.Body.Close()
	}
	return !w.closeAfter && !req.Close
}

// serve runs the handler; false when it aborted the response.
func (fc *fastConn) serve(w *fastWriter, req *http.Request) (ok bool) {
	defer func() {
		// An idle connection keeps nothing of its last request's way.
		fc.x = exchange{}
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				fc.s.log.Error("handler panic", "panic", v)
			}
			ok = false
		}
	}()
	fc.x = exchange{w: w, r: req, c: fc.c, hc: fc.hc, call: upstream.Call{Donor: fc}}
	fc.s.serveFramed(&fc.x)
	return true
}

// handOff gives the connection, with what was read ahead, to net/http.
func (s *Server) handOff(fc *fastConn) {
	var rest []byte
	if n := fc.br.Buffered(); n > 0 {
		b, _ := fc.br.Peek(n)
		rest = bytes.Clone(b)
	}
	// Everything the listener learned goes along: a connection handed
	// over (HTTP/2, which gRPC is) is judged by the same policies and
	// carries the same peer identity as one the fast path serves.
	nc := &Conn{Conn: netio.Replay(fc.c.Conn, rest), Dst: fc.c.Dst, Source: fc.c.Source, Routes: fc.c.Routes, Done: fc.c.Done,
		PeerID: fc.c.PeerID, PeerCertHash: fc.c.PeerCertHash, SNI: fc.c.SNI, Authz: fc.c.Authz, JWT: fc.c.JWT, Paths: fc.c.Paths}
	fc.c.Done = nil // the new Conn reports done now
	fc.hc.SetReadDeadline(time.Time{})
	if !s.ln.push(nc) {
		nc.Close()
	}
}

func (s *Server) trackFast(fc *fastConn) bool {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	if s.fastClosed {
		return false
	}
	if s.fast == nil {
		s.fast = map[*fastConn]struct{}{}
	}
	s.fast[fc] = struct{}{}
	s.fastWG.Add(1)
	return true
}

func (s *Server) untrackFast(fc *fastConn) {
	s.fastMu.Lock()
	delete(s.fast, fc)
	s.fastMu.Unlock()
	s.fastWG.Done()
}

// closeFast closes the fast connections, only the idle ones unless all.
func (s *Server) closeFast(all bool) (left int) {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	for fc := range s.fast {
		if all || fc.idle.Load() {
			fc.c.Conn.Close()
		} else {
			left++
		}
	}
	return left
}

// shutdownFast stops new fast connections, closes idle ones as they
// become idle, and waits for the rest; when ctx ends it closes them all.
func (s *Server) shutdownFast(ctx context.Context) error {
	s.fastMu.Lock()
	s.fastClosed = true
	s.fastMu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.closeFast(false) > 0 {
		select {
		case <-ctx.Done():
			s.closeFast(true)
			s.fastWG.Wait()
			return ctx.Err()
		case <-tick.C:
		}
	}
	s.fastWG.Wait()
	return nil
}

// fastWriter is the fast path's ResponseWriter: the response goes
// straight into the connection's buffered writer, with Content-Length
// when the handler set one and chunked otherwise.
type fastWriter struct {
	fc          *fastConn
	req         *http.Request
	header      http.Header
	wroteHeader bool
	chunked     bool
	noBody      bool
	closeAfter  bool
	length      int64 // -1: none
	written     int64
	code        int // the final status written
	err         error
	// The request path's (responseWriter): the route timeout is running,
	// the request body is bound by the connection's read deadline, or by
	// a watch of its context.
	timed        bool
	bodyDeadline bool
	body         bodyWatch
}

// reset readies w for the connection's next response; the last one's
// header map, emptied, becomes the connection's spare.
func (w *fastWriter) reset(fc *fastConn, req *http.Request) {
	if h := w.header; h != nil {
		clear(h)
		fc.spareHeader = h
	}
	*w = fastWriter{fc: fc, req: req, length: -1}
	fc.donate.Store(fc.spareHeader != nil)
}

// Header returns the response's header map: the connection's spare one
// unless the upstream took it, or a new one.
func (w *fastWriter) Header() http.Header {
	if w.header == nil {
		if w.header = w.fc.TakeHeader(); w.header == nil {
			w.header = http.Header{}
		}
	}
	return w.header
}

// adoptHeader makes h the response's header map when nothing was set in
// the writer's own and the head is not written yet, and reports whether
// it did. The writer then owns h: it clears and reuses it for the
// connection's next response, so h must be the caller's to give (an
// upstream response's map, read by no one after).
func (w *fastWriter) adoptHeader(h http.Header) bool {
	if w.wroteHeader || len(w.header) != 0 || h == nil {
		return false
	}
	w.header = h
	return true
}

func (w *fastWriter) WriteHeader(code int) {
	if w.wroteHeader || w.err != nil {
		return
	}
	bw := w.fc.bw
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An interim response goes out on its own; the final one follows.
		w.writeStatus(code)
		w.writeHeaders(false)
		bw.WriteString("\r\n")
		w.err = bw.Flush()
		return
	}
	w.wroteHeader = true
	w.code = code
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.length = n
		}
	}
	if w.length < 0 && !w.noBody {
		w.chunked = true
	}
	for _, v := range w.header["Connection"] {
		if bytes.EqualFold([]byte(v), []byte("close")) {
			w.closeAfter = true
		}
	}
	if (w.req.Close || w.fc.s.draining.Load()) && !w.closeAfter {
		w.closeAfter = true
		w.Header()["Connection"] = []string{"close"}
	}
	w.writeStatus(code)
	w.writeHeaders(true)
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	_, w.err = bw.WriteString("\r\n")
}

func (w *fastWriter) writeStatus(code int) {
	bw := w.fc.bw
	bw.WriteString("HTTP/1.1 ")
	if code >= 100 && code <= 999 {
		bw.WriteByte(byte('0' + code/100))
		bw.WriteByte(byte('0' + code/10%10))
		bw.WriteByte(byte('0' + code%10))
	} else {
		bw.WriteString(strconv.Itoa(code))
	}
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
}

// writeHeaders writes the header map, without trailers and, for a final
// response, with a Date when the handler set none, as net/http adds.
func (w *fastWriter) writeHeaders(final bool) {
	bw := w.fc.bw
	for k, vv := range w.header {
		if len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
			continue
		}
		if k == "Transfer-Encoding" || http1.HasLineBreak(k) {
			continue
		}
		for _, v := range vv {
			if http1.HasLineBreak(v) {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if _, ok := w.header["Date"]; final && !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
}

var dateCache struct {
	mu   sync.Mutex
	sec  int64
	text string
}

// httpDate is the current time in HTTP's format, formatted once a second.
func httpDate() string {
	now := time.Now()
	dateCache.mu.Lock()
	defer dateCache.mu.Unlock()
	if s := now.Unix(); s != dateCache.sec {
		dateCache.sec = s
		dateCache.text = now.UTC().Format(http.TimeFormat)
	}
	return dateCache.text
}

func (w *fastWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.fc.bw
	if w.chunked {
		var size [16]byte
		bw.Write(strconv.AppendInt(size[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, w.err = bw.WriteString("\r\n")
	} else {
		if w.length >= 0 && w.written+int64(len(p)) > w.length {
			return 0, http.ErrContentLength
		}
		_, w.err = bw.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	w.written += int64(len(p))
	return len(p), nil
}

func (w *fastWriter) result() (int, int64) { return w.code, w.written }

// FlushError sends what is buffered (http.ResponseController's Flush).
func (w *fastWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	w.err = w.fc.bw.Flush()
	return w.err
}

// Flush is http.Flusher's.
func (w *fastWriter) Flush() { w.FlushError() }

// SetReadDeadline and SetWriteDeadline are http.ResponseController's.
func (w *fastWriter) SetReadDeadline(t time.Time) error  { return w.fc.hc.SetReadDeadline(t) }
func (w *fastWriter) SetWriteDeadline(t time.Time) error { return w.fc.hc.SetWriteDeadline(t) }

// EnableFullDuplex is http.ResponseController's: the fast path reads and
// writes the connection from one goroutine and never blocks one on the
// other, so there is nothing to enable.
func (w *fastWriter) EnableFullDuplex() error { return nil }

// finish ends the response: the last chunk and trailers, and the flush.
func (w *fastWriter) finish() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	bw := w.fc.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for k, vv := range w.header {
			if len(k) <= len(http.TrailerPrefix) || k[:len(http.TrailerPrefix)] != http.TrailerPrefix || http1.HasLineBreak(k) {
				continue
			}
			for _, v := range vv {
				if http1.HasLineBreak(v) {
					continue
				}
				bw.WriteString(k[len(http.TrailerPrefix):])
				bw.WriteString(": ")
				bw.WriteString(v)
				bw.WriteString("\r\n")
			}
		}
		bw.WriteString("\r\n")
	} else if w.length >= 0 && w.written < w.length && !w.noBody {
		// A body cut short: the client must not read the next response
		// as the rest of this one.
		w.closeAfter = true
	}
	return bw.Flush()
}
