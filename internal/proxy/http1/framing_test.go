package http1

import (
	"fmt"
	"maps"
	"testing"
)

// The framing remembers each request head's non-canonical names, read in
// any pieces and ahead of the handlers (pipelining), and never those of
// lines in bodies; the handler of each request takes its own.
func TestRequestNamesSplitAnywhere(t *testing.T) {
	inner := "GET / HTTP/1.1\r\nx-in-body: 1\r\n\r\n"
	wire := "GET /1 HTTP/1.1\r\nx-lower: 1\r\nHost: a\r\nx-lower: 2\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\nx-trailer: 1\r\n\r\n", len(inner), inner) +
		fmt.Sprintf("POST /3 HTTP/1.1\r\nSOAPAction: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n%s", len(inner), inner) +
		"OPTIONS * HTTP/1.1\r\nx-options: 1\r\n\r\n" +
		"\r\nGET /4 HTTP/1.1\r\nX-MiXeD-CaSe: 1\r\nUser-Agent: canonical\r\n\r\n"
	want := []HeaderNames{
		{"X-Lower": "x-lower"},
		nil,
		{"Soapaction": "SOAPAction"},
		{"X-Mixed-Case": "X-MiXeD-CaSe"},
	}
	for i := 0; i <= len(wire); i++ {
		f := &Framing{}
		var got []HeaderNames
		// Each handler runs once its head is read, as net/http's do.
		handle := func() {
			for int64(len(got)) < f.heads.Load() {
				f.NextRequest()
				got = append(got, f.TakeNames())
			}
		}
		f.Scan([]byte(wire[:i]))
		handle()
		f.Scan([]byte(wire[i:]))
		handle()
		if len(got) != len(want) {
			t.Fatalf("split at %d: %d requests, want %d", i, len(got), len(want))
		}
		for k := range want {
			if !maps.Equal(got[k], want[k]) {
				t.Fatalf("split at %d: request %d names %v, want %v", i, k+1, got[k], want[k])
			}
		}
		if n := f.nCased.Load(); n != 0 || len(f.cased) != 0 {
			t.Fatalf("split at %d: %d heads' names left", i, n)
		}
	}
}

// Requests answered by net/http itself (no handler) leave their names
// behind, which the next handler drops.
func TestRequestNamesSkipped(t *testing.T) {
	f := &Framing{}
	f.Scan([]byte("GET /1 HTTP/1.1\r\nx-a: 1\r\n\r\nGET /2 HTTP/1.1\r\nx-b: 1\r\n\r\nGET /3 HTTP/1.1\r\nX-C: 1\r\n\r\n"))
	f.served.Add(2) // request 1 never reached a handler
	if got := f.TakeNames(); !maps.Equal(got, HeaderNames{"X-B": "x-b"}) {
		t.Errorf("names %v", got)
	}
	f.served.Add(1)
	if got := f.TakeNames(); got != nil || len(f.cased) != 0 {
		t.Errorf("names %v, left %v", got, f.cased)
	}
}

func TestCanonicalRequestsAllocateNothing(t *testing.T) {
	f := &Framing{}
	f.Scan([]byte("GET / HTTP/1.1\r\n\r\n")) // the line buffer
	head := []byte("GET /x HTTP/1.1\r\nHost: svc\r\nUser-Agent: x\r\nX-Request-Id: 1\r\nAccept: */*\r\n\r\n")
	if n := testing.AllocsPerRun(100, func() {
		f.Scan(head)
		f.NextRequest()
		f.TakeNames()
	}); n != 0 {
		t.Errorf("%v allocations per canonical request", n)
	}
}

// The framing tells the handler whether its request's body has been read
// to the end (bodyPending) and whether net/http has started a request
// where the client's framing has no head (desynced), in any split of the
// bytes and with requests answered by net/http itself in between.
func TestFramingBodyPendingAndDesync(t *testing.T) {
	type step struct {
		wire              string
		handle            bool // a handler starts (net/http read a head)
		pending, desynced bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"content-length body in pieces", []step{
			{"POST /1 HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello", true, true, false},
			{"world", false, false, false},
			{"GET /2 HTTP/1.1\r\n\r\n", true, false, false},
		}},
		{"chunked body ends with its trailers", []step{
			{"POST /1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", true, true, false},
			{"X-T: 1\r\n", false, true, false},
			{"\r\n", false, false, false},
		}},
		{"malformed chunk", []step{
			{"POST /1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nGET /2 HTTP/1.1\r\n\r\n", true, true, false},
			// net/http failed the body and read on: not a head.
			{"", true, true, true},
		}},
		{"a body read as a request", []step{
			{"POST /1 HTTP/1.1\r\nContent-Length: 19\r\n\r\n", true, true, false},
			{"GET /2 HTTP/1.1\r\n\r\n", true, true, true},
		}},
		{"OPTIONS * answered by net/http", []step{
			{"OPTIONS * HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", false, false, false},
			{"POST /1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nh", true, true, false},
			{"i", false, false, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &Framing{}
			for i, s := range tc.steps {
				f.Scan([]byte(s.wire))
				if s.handle {
					f.NextRequest()
				}
				if got := f.BodyPending(); got != s.pending {
					t.Errorf("step %d: bodyPending %v, want %v", i, got, s.pending)
				}
				if got := f.Desynced(); got != s.desynced {
					t.Errorf("step %d: desynced %v, want %v", i, got, s.desynced)
				}
			}
		})
	}
}
