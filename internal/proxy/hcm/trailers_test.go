package hcm_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// TestHTTP1TrailersTooLarge sends chunked requests whose trailer sections
// are over what net/http's HTTP/1 server reads of one (4 KiB, its read
// buffer): each is answered 431 and its connection closed, counted in
// RqHeaderTooLarge, and what follows the refused section on the wire is
// never read as a request. A section of exactly 4 KiB, or a small one, is
// forwarded and not counted. Chunked requests leave the fast path for
// net/http, so each connection starts with a plain request served on the
// fast path, and the limit holds after the hand-over too.
func TestHTTP1TrailersTooLarge(t *testing.T) {
	leak.Check(t)
	f := startFrontEnd(t, hcm.Config{}, 0)
	st := f.Server.Stats()
	const plain = "GET / HTTP/1.1\r\nHost: svc\r\n\r\n"
	// chunked is a POST whose body, "hello", ends with the trailer
	// section trailers (its fields and the empty line that ends it).
	chunked := func(trailers string) string {
		return "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\n" + trailers
	}
	// section is a trailer section of n bytes.
	section := func(n int) string {
		return "X-T: " + strings.Repeat("t", n-len("X-T: \r\n\r\n")) + "\r\n\r\n"
	}

	resps, closed := exchange(t, f.Addr, plain+chunked(section(4096))+chunked("X-T: small\r\n\r\n")+plain, false)
	if got, want := statuses(resps), []string{"200", "200", "200", "200"}; !cmp.Equal(got, want) || closed {
		t.Errorf("trailer sections of 4,096 and 14 bytes: %v, closed %v; want %v, open", got, closed, want)
	}
	var lengths []int
	for _, tr := range f.Backend.Trailers() {
		lengths = append(lengths, len(tr.Get("X-T")))
	}
	if diff := cmp.Diff([]int{0, 4096 - len("X-T: \r\n\r\n"), len("small"), 0}, lengths); diff != "" {
		t.Errorf("X-T lengths the backend saw (-want +got):\n%s", diff)
	}
	if n := st.RqHeaderTooLarge.Load(); n != 0 {
		t.Errorf("RqHeaderTooLarge = %d after trailers within the limit, want 0", n)
	}

	// One byte more, and a section over the 60 KiB header limit that
	// starts like a request, which net/http read as one before: the
	// backend must never see it.
	hidden := "GET /hidden HTTP/1.1\r\nHost: svc\r\nX-Hidden: " + strings.Repeat("h", 62000) + "\r\n\r\n"
	for i, trailers := range []string{section(4097), hidden} {
		resps, closed := exchange(t, f.Addr, plain+chunked(trailers)+plain, false)
		if got, want := statuses(resps), []string{"200", "431"}; !cmp.Equal(got, want) || !closed {
			t.Errorf("case %d: %v, closed %v; want %v and the connection closed", i, got, closed, want)
		}
		if n := st.RqHeaderTooLarge.Load(); n != uint64(1+i) {
			t.Errorf("case %d: RqHeaderTooLarge = %d, want %d", i, n, 1+i)
		}
	}
	for _, h := range f.Backend.Headers() {
		if h.Get("X-Hidden") != "" {
			t.Errorf("the backend saw the request hidden in the trailer section")
		}
	}
	if n := st.Rq5xx.Load(); n != 0 {
		t.Errorf("Rq5xx = %d: a refused trailer section blamed on the upstream", n)
	}
}
