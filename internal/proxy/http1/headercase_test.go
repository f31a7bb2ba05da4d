package http1

import (
	"maps"
	"testing"
)

func TestAddHeaderName(t *testing.T) {
	var m HeaderNames
	for _, n := range []string{"Content-Type", "X-Forwarded-For", "A", "X-1", "Www-Authenticate"} {
		if m = addHeaderName(m, []byte(n)); m != nil {
			t.Fatalf("canonical %q recorded: %v", n, m)
		}
	}
	for _, n := range []string{"x-lower", "X-MiXeD-CaSe", "SOAPAction", "x-lower", "X-LOWER", "bad name", "bad\x00", ""} {
		m = addHeaderName(m, []byte(n))
	}
	want := HeaderNames{"X-Lower": "x-lower", "X-Mixed-Case": "X-MiXeD-CaSe", "Soapaction": "SOAPAction"}
	if !maps.Equal(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
	if n := testing.AllocsPerRun(100, func() { addHeaderName(nil, []byte("X-Canonical-Name")) }); n != 0 {
		t.Errorf("a canonical name costs %v allocations", n)
	}
}

// scanSplit feeds the response heads scanner a request and then the
// response bytes in two reads split at i.
func scanSplit(wire string, i int) *ResponseHeads {
	rh := &ResponseHeads{}
	rh.RequestWritten()
	rh.Read([]byte(wire[:i]))
	rh.Read([]byte(wire[i:]))
	return rh
}

func names(rh *ResponseHeads) HeaderNames {
	if p := rh.names.Load(); p != nil {
		return *p
	}
	return nil
}

func TestResponseHeadsSplitAnywhere(t *testing.T) {
	const final = "HTTP/1.1 200 OK\r\nx-custom-Case: 1\r\nContent-Type: text/plain\r\nX-UP: 2\r\n continued\r\nTransfer-Encoding: chunked\r\n\r\n"
	// A chunked body whose data looks like a response head.
	const body = "21\r\nHTTP/1.1 200 OK\r\nx-in-body: 1\r\n\r\n\r\n0\r\n\r\n"
	for _, tc := range []struct {
		name, wire string
		want       HeaderNames
		after      uint32
	}{
		{"Final", final + body, HeaderNames{"X-Custom-Case": "x-custom-Case", "X-Up": "X-UP"}, rhIdle},
		{"Continue", "HTTP/1.1 100 Continue\r\n\r\n" + final + body, HeaderNames{"X-Custom-Case": "x-custom-Case", "X-Up": "X-UP"}, rhIdle},
		{"EarlyHintsNamesDoNotLeak", "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\nX-Fine: 1\r\n\r\n", nil, rhIdle},
		{"Canonical", "HTTP/1.1 200 OK\r\nContent-Length: 33\r\n\r\nHTTP/1.1 200 OK\r\nx-in-body: 1\r\n\r\n", nil, rhIdle},
		{"Upgrade", "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nx-in-frames: 1\r\n\r\n", HeaderNames{"Upgrade": "upgrade"}, rhOff},
		{"NotAResponse", "SSH-2.0-OpenSSH\r\nx-foo: 1\r\n\r\n", nil, rhIdle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i <= len(tc.wire); i++ {
				rh := scanSplit(tc.wire, i)
				if got := names(rh); !maps.Equal(got, tc.want) {
					t.Fatalf("split at %d: names %v, want %v", i, got, tc.want)
				}
				if st := rh.state.Load(); st != tc.after {
					t.Fatalf("split at %d: state %d after, want %d", i, st, tc.after)
				}
			}
		})
	}
}

// Bytes read while no request is outstanding (a body, say) are not
// scanned; the next request re-arms the scanner and replaces the names.
func TestResponseHeadsOnlyAfterARequest(t *testing.T) {
	rh := &ResponseHeads{}
	rh.Read([]byte("HTTP/1.1 200 OK\r\nx-unasked: 1\r\n\r\n"))
	if got := names(rh); got != nil {
		t.Fatalf("unarmed scanner recorded %v", got)
	}
	rh.RequestWritten()
	rh.Read([]byte("HTTP/1.1 200 OK\r\nx-first: 1\r\nContent-Length: 33\r\n\r\n"))
	// Body bytes written after an early response re-arm it: the one case
	// where a response body that starts like a head is scanned (names
	// only, so case only).
	rh.RequestWritten()
	rh.Read([]byte("HTTP/1.1 200 OK\r\nx-second: 1\r\n\r\n"))
	rh.RequestWritten()
	rh.Read([]byte("HTTP/1.1 204 No Content\r\nX-Canonical: 1\r\n\r\n"))
	if got := names(rh); got != nil {
		t.Fatalf("names of an earlier response kept: %v", got)
	}
}
