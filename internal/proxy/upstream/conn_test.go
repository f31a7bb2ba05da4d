package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// writeCounter counts the writes made on a connection.
type writeCounter struct {
	net.Conn
	writes *atomic.Int64
}

func (w writeCounter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.Conn.Write(p)
}

// A proxied request body (not in memory) makes the Transport flush the
// request head on its own; the connection sends head and body in one
// write, except when the head asks for 100-continue.
func TestRequestHeadGoesWithBody(t *testing.T) {
	leak.Check(t)
	s := startServer(t, "127.0.0.1", false, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(b))
	})
	var writes atomic.Int64
	dial := func(ctx context.Context, h *balance.Host) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", h.Addr())
		if err != nil {
			return nil, err
		}
		return writeCounter{nc, &writes}, nil
	}
	c := newCluster(t, &xdsresource.Cluster{}, Options{Dial: dial}, assignment(s))
	body := strings.Repeat("x", 1024)
	send := func(expect bool) string {
		t.Helper()
		// A reader the Transport cannot see through, as a proxied body is.
		req, _ := http.NewRequest(http.MethodPost, "http://svc.ns/", struct{ io.Reader }{strings.NewReader(body)})
		req.ContentLength = int64(len(body))
		if expect {
			req.Header.Set("Expect", "100-continue")
		}
		resp, flags, err := c.RoundTrip(context.Background(), req, &Call{})
		if err != nil {
			t.Fatalf("RoundTrip: %v (flags %v)", err, flags)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for i := range 3 {
		before := writes.Load()
		if got := send(false); got != "POST "+body {
			t.Fatalf("request %d: server read %q", i, got)
		}
		if n := writes.Load() - before; n != 1 {
			t.Errorf("request %d: %d writes for a 1 KiB POST, want head and body in 1", i, n)
		}
	}
	before := writes.Load()
	if got := send(true); got != "POST "+body {
		t.Fatalf("100-continue: server read %q", got)
	}
	if n := writes.Load() - before; n != 2 {
		t.Errorf("100-continue: %d writes, want the head on its own, then the body", n)
	}
	// Without a body nothing is held.
	before = writes.Load()
	get(t, c, 0, false)
	if n := writes.Load() - before; n != 1 {
		t.Errorf("GET: %d writes, want 1", n)
	}
}

func TestIsHeadWithBody(t *testing.T) {
	for _, tc := range []struct {
		p    string
		want bool
	}{
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", false},    // head and body together
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n\r\n", false}, // ditto, body of CRLFs
		{"\r\nContent-Length: \r\n\r\n", false},
	} {
		if got := isHeadWithBody([]byte(tc.p)); got != tc.want {
			t.Errorf("isHeadWithBody(%q) = %v, want %v", tc.p, got, tc.want)
		}
	}
}
