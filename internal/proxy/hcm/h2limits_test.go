package hcm_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// h2Client speaks h2c (prior knowledge) frame by frame, so that a test
// can send what net/http's client would refuse to: header blocks over the
// server's advertised limit, or ones that never end.
type h2Client struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &h2Client{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = 1 << 20
	h.enc = hpack.NewEncoder(&h.buf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// block encodes a GET's header block with the extra fields.
func (h *h2Client) block(extra ...hpack.HeaderField) []byte {
	return h.fields(append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "svc"}, {Name: ":path", Value: "/"},
	}, extra...)...)
}

// fields encodes a header block of just these fields (trailers), without
// Huffman coding so that sizes on the wire are what the test says.
func (h *h2Client) fields(fields ...hpack.HeaderField) []byte {
	h.buf.Reset()
	for _, f := range fields {
		f.Sensitive = true // never indexed: the tables stay small
		h.enc.WriteField(f)
	}
	return bytes.Clone(h.buf.Bytes())
}

// open starts a request on stream whose trailers are to follow (with
// send): its header block with the extra fields in one HEADERS frame,
// then "hello" as its body so far.
func (h *h2Client) open(stream uint32, extra ...hpack.HeaderField) {
	h.t.Helper()
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: h.block(extra...), EndHeaders: true}); err != nil {
		h.t.Fatalf("writing stream %d: %v", stream, err)
	}
	if err := h.fr.WriteData(stream, false, []byte("hello")); err != nil {
		h.t.Fatalf("writing stream %d: %v", stream, err)
	}
}

// send writes block on stream as HEADERS and CONTINUATION frames of at
// most 16 KiB; with end false the last frame lacks END_HEADERS.
func (h *h2Client) send(stream uint32, block []byte, end bool) {
	h.t.Helper()
	const max = hcm.MaxFrameSize
	first := true
	for first || len(block) > 0 {
		k := min(len(block), max)
		frag := block[:k]
		block = block[k:]
		last := len(block) == 0 && end
		var err error
		if first {
			err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: frag, EndStream: true, EndHeaders: last})
		} else {
			err = h.fr.WriteContinuation(stream, last, frag)
		}
		if err != nil {
			h.t.Fatalf("writing stream %d: %v", stream, err)
		}
		first = false
	}
}

// outcome is how the server answered a stream, or ended the connection.
type outcome struct {
	Status string         // :status of the stream's response
	Reset  http2.ErrCode  // RST_STREAM on the stream
	GoAway *http2.ErrCode // GOAWAY
	Closed bool           // the connection closed
}

// await reads until the server answers stream, resets it, sends GOAWAY
// or closes the connection.
func (h *h2Client) await(stream uint32) outcome {
	h.t.Helper()
	h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset") {
				return outcome{Closed: true}
			}
			h.t.Fatalf("reading frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == stream {
				return outcome{Status: f.PseudoValue("status")}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == stream {
				return outcome{Reset: f.ErrCode}
			}
		case *http2.GoAwayFrame:
			code := f.ErrCode
			return outcome{GoAway: &code}
		}
	}
}

func big(n int) hpack.HeaderField {
	return hpack.HeaderField{Name: "x-big", Value: strings.Repeat("b", n)}
}

// TestH2HeadersTooLarge sends HTTP/2 header blocks over the 60 KiB limit
// with a real framer: each refusal is counted in RqHeaderTooLarge, as
// HTTP/1.1's 431s are, and none reaches the backend. A block a little
// over gets net/http's 431 and the connection serves on; a block that goes
// on after that gets GOAWAY.
func TestH2HeadersTooLarge(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{}, 0)
	st := f.Server.Stats()

	h := dialH2(t, f.Addr)
	// 50 KiB of headers are under the limit and reach the backend.
	h.send(1, h.block(big(50<<10)), true)
	if got := h.await(1); got.Status != "200" {
		t.Fatalf("50 KiB of headers: %+v, want 200", got)
	}
	// 62,000 bytes in two fields, over four frames: 431, counted.
	h.send(3, h.block(big(31000), big(31000)), true)
	if got, want := h.await(3), (outcome{Status: "431"}); got != want {
		t.Errorf("62,000 bytes of headers: %+v, want %+v", got, want)
	}
	if n, m := st.RqHeaderTooLarge.Load(), st.HeaderOverflow.Load(); n != 1 || m != 1 {
		t.Errorf("RqHeaderTooLarge = %d, HeaderOverflow = %d after one oversized HTTP/2 request, want 1 and 1", n, m)
	}
	// The connection goes on.
	h.send(5, h.block(), true)
	if got := h.await(5); got.Status != "200" {
		t.Errorf("request after the 431: %+v, want 200", got)
	}

	// Past the limit and still sending: GOAWAY PROTOCOL_ERROR; one
	// field over the limit on its own: GOAWAY COMPRESSION_ERROR. Each
	// counted once.
	for i, tc := range goawayBlocks {
		h := dialH2(t, f.Addr)
		h.send(1, h.block(tc.fields...), true)
		if got := h.await(1); got.GoAway == nil || *got.GoAway != tc.code {
			t.Errorf("case %d: %+v, want GOAWAY %v", i, got, tc.code)
		}
		if n, m := st.RqHeaderTooLarge.Load(), st.HeaderOverflow.Load(); n != uint64(2+i) || m != n {
			t.Errorf("case %d: RqHeaderTooLarge = %d, HeaderOverflow = %d, want %d and %d", i, n, m, 2+i, 2+i)
		}
	}
	if n := f.Backend.Requests.Load(); n != 2 {
		t.Errorf("the backend saw %d requests, want the 2 under the limit", n)
	}
	if n := st.RqHeaderTimeout.Load(); n != 0 {
		t.Errorf("RqHeaderTimeout = %d, want 0", n)
	}
}

// TestH2TrailersTooLarge sends request trailers over the 60 KiB limit
// with a real framer, after a request's headers and some of its body.
// net/http's server cuts a trailer block a little over the limit to the
// fields that fit and serves the request on; it ends the connection with
// GOAWAY for one that goes on past the limit or has one field over it.
// Each is counted in HeaderOverflow (Envoy's http2.header_overflow), the
// refused ones also in RqHeaderTooLarge; small trailers in neither.
func TestH2TrailersTooLarge(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{}, 0)
	st := f.Server.Stats()
	declared := hpack.HeaderField{Name: "trailer", Value: "x-t, x-u"}
	counts := func() [2]uint64 { return [2]uint64{st.HeaderOverflow.Load(), st.RqHeaderTooLarge.Load()} }

	h := dialH2(t, f.Addr)
	h.open(1, declared)
	h.send(1, h.fields(hpack.HeaderField{Name: "x-t", Value: "small"}), true)
	if got := h.await(1); got.Status != "200" {
		t.Fatalf("small trailers: %+v, want 200", got)
	}
	if got := counts(); got != [2]uint64{} {
		t.Errorf("after small trailers: HeaderOverflow, RqHeaderTooLarge = %v, want none", got)
	}

	// 1,035 bytes of one field, then 61,035 of another, in four frames:
	// 62,070 in all, over the 61,760 the server takes. The request goes
	// on with the first field only.
	h.open(3, declared)
	h.send(3, h.fields(hpack.HeaderField{Name: "x-t", Value: strings.Repeat("t", 1000)}, hpack.HeaderField{Name: "x-u", Value: strings.Repeat("u", 61000)}), true)
	if got := h.await(3); got.Status != "200" {
		t.Fatalf("62,070 bytes of trailers: %+v, want 200", got)
	}
	if got, want := counts(), [2]uint64{1, 0}; got != want {
		t.Errorf("after trailers cut: HeaderOverflow, RqHeaderTooLarge = %v, want %v", got, want)
	}
	h.send(5, h.block(), true)
	if got := h.await(5); got.Status != "200" {
		t.Errorf("request after the cut trailers: %+v, want 200", got)
	}
	var seen [][]int
	for _, tr := range f.Backend.Trailers() {
		seen = append(seen, []int{len(tr.Get("X-T")), len(tr.Get("X-U"))})
	}
	if diff := cmp.Diff([][]int{{5, 0}, {1000, 0}, {0, 0}}, seen); diff != "" {
		t.Errorf("X-T and X-U lengths the backend saw in each request's trailers (-want +got):\n%s", diff)
	}

	// Past the limit and still sending: GOAWAY PROTOCOL_ERROR; one field
	// over the limit on its own: GOAWAY COMPRESSION_ERROR. Each a refusal.
	for i, tc := range goawayBlocks {
		h := dialH2(t, f.Addr)
		h.open(1, declared)
		h.send(1, h.fields(tc.fields...), true)
		if got := h.await(1); got.GoAway == nil || *got.GoAway != tc.code {
			t.Errorf("case %d: %+v, want GOAWAY %v", i, got, tc.code)
		}
		if got, want := counts(), [2]uint64{uint64(2 + i), uint64(1 + i)}; got != want {
			t.Errorf("case %d: HeaderOverflow, RqHeaderTooLarge = %v, want %v", i, got, want)
		}
	}
}

// TestH2HeaderTimeout stalls an HTTP/2 header block (HEADERS without
// END_HEADERS): the connection, which can carry nothing else until the
// block ends, is closed after ReadHeaderTimeout and counted in
// RqHeaderTimeout; a connection idle between requests is not.
func TestH2HeaderTimeout(t *testing.T) {
	leak.Check(t)
	const timeout = 300 * time.Millisecond
	f := startFrontEnd(t, hcm.Config{ReadHeaderTimeout: timeout}, 0)
	st := f.Server.Stats()

	// Idle longer than the timeout between two requests: both served.
	h := dialH2(t, f.Addr)
	h.send(1, h.block(), true)
	first := h.await(1)
	time.Sleep(2 * timeout)
	h.send(3, h.block(), true)
	if diff := cmp.Diff([]outcome{{Status: "200"}, {Status: "200"}}, []outcome{first, h.await(3)}); diff != "" {
		t.Errorf("requests around an idle gap (-want +got):\n%s", diff)
	}

	// A header block that stops half-way.
	h2 := dialH2(t, f.Addr)
	h2.send(1, h2.block(), true)
	h2.await(1)
	start := time.Now()
	h2.send(3, h2.block(big(100)), false)
	got := h2.await(3)
	took := time.Since(start)
	if !got.Closed && got.GoAway == nil {
		t.Errorf("stalled header block: %+v, want the connection ended", got)
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("stalled header block ended after %v, want about %v", took, timeout)
	}
	if n := st.RqHeaderTimeout.Load(); n != 1 {
		t.Errorf("RqHeaderTimeout = %d, want 1", n)
	}
	if n := st.RqHeaderTooLarge.Load(); n != 0 {
		t.Errorf("RqHeaderTooLarge = %d, want 0", n)
	}
	if n := f.Backend.Requests.Load(); n != 3 {
		t.Errorf("the backend saw %d requests, want 3", n)
	}
}

// goawayBlock is a header block over the limit that ends the connection,
// and the GOAWAY code it gets.
type goawayBlock struct {
	fields []hpack.HeaderField
	code   http2.ErrCode
}

// goawayBlocks: fields past the limit that keep coming (PROTOCOL_ERROR),
// and one field over it on its own (COMPRESSION_ERROR).
var goawayBlocks = []goawayBlock{
	{[]hpack.HeaderField{big(31000), big(31000), big(30000)}, http2.ErrCodeProtocol},
	{[]hpack.HeaderField{big(62000)}, http2.ErrCodeCompression},
}
