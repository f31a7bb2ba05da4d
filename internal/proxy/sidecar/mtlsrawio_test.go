package sidecar_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/tunnel"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// An mTLS tunnel connection is served on raw I/O through TLS (the fast
// path's Serve, netio.TLSConn), and no byte the TLS layer has read may be
// stranded there: requests in records that arrive together are all
// answered without the client sending more, and a chunked request whose
// record is larger than the fast path's buffer, handed to net/http,
// reaches the app whole, as does the keep-alive request after it. The
// tunnel is dialed as a peer sidecar dials it, with a CA-issued client
// identity, straight to the real server sidecar.
func TestMTLSTunnelRecordsReachTheAppWhole(t *testing.T) {
	leak.Check(t)
	const base = "127.77.171"
	ca := certtest.NewCA(t)
	payment := certtest.SPIFFE("default", "payment")
	m := meshtest.New(t, paymentConfig(base, ""))
	m.Backend(base+".2:9080", "payment", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %d %x", r.URL.Path, len(b), sha256.Sum256(b))
	})
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment"}, withIdentity(t, ca, payment, certtest.LeafOptions{}))
	m.WaitSynced()

	d := &tunnel.Dialer{Source: netip.MustParseAddr(base + ".1")}
	t.Cleanup(func() { d.Close() })
	id := certs.NewStatic(ca.Leaf(t, certtest.SPIFFE("default", "sleep"), certtest.LeafOptions{}), ca.Pool())
	cfg := certs.ClientConfig(id, func(s string) bool { return s == payment })
	c, err := d.DialHTTP1TLS(context.Background(), netip.MustParseAddrPort(base+".2:15008"), base+".2:9080", nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a stranded request fails, not hangs
	br := bufio.NewReader(c)
	expect := func(what, path string, body []byte) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: reading the answer: %v", what, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%s %d %x", path, len(body), sha256.Sum256(body)); resp.StatusCode != 200 || string(got) != want {
			t.Fatalf("%s: %d %q, want 200 %q", what, resp.StatusCode, got, want)
		}
	}

	// Two requests, two records, written back to back: one read(2) on
	// the server usually takes both.
	for round := range 20 {
		for _, p := range []string{"/one", "/two"} {
			if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: payment:9080\r\n\r\n", p); err != nil {
				t.Fatal(err)
			}
		}
		expect(fmt.Sprintf("round %d, first of two records", round), "/one", nil)
		expect(fmt.Sprintf("round %d, second of two records", round), "/two", nil)
	}

	// A chunked request in one record of 12 KB: the fast path reads 4 KB
	// of it and hands the connection to net/http, which reads the rest.
	body := bytes.Repeat([]byte("0123456789abcdef"), 750)
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST /chunked HTTP/1.1\r\nHost: payment:9080\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", len(body))
	req.Write(body)
	req.WriteString("\r\n0\r\n\r\n")
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	expect("a chunked request in one 12 KB record", "/chunked", body)
	// And a known-length one in one record, on the same connection.
	req.Reset()
	fmt.Fprintf(&req, "POST /after HTTP/1.1\r\nHost: payment:9080\r\nContent-Length: %d\r\n\r\n", len(body))
	req.Write(body)
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	expect("the request after it", "/after", body)
}
