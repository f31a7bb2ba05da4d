package sidecar_test

import (
	"math"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// A weighted VirtualService splits real traffic within ±5 percentage
// points over 2,000 requests, through the client's forward proxy and the
// server pods' tunnels.
func TestWeightedSplitThroughTwoProxies(t *testing.T) {
	leak.Check(t)
	_, client := reviewsMesh(t, "127.77.1", 80, 20)
	c := client.Client()
	defer c.CloseIdleConnections()
	counts := map[string]int{}
	const n = 2000
	for range n {
		resp, body := meshtest.Get(t, c, "http://reviews:9080/", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		counts[body]++
	}
	share := float64(counts["v1"]) / n * 100
	if math.Abs(share-80) > 5 {
		t.Errorf("v1 got %.1f%% of %d requests (%v), want 80 ± 5", share, n, counts)
	}
	if counts["v1"]+counts["v2"] != n {
		t.Errorf("answers %v, want only v1 and v2", counts)
	}
}

// The header route wins over the split; the app sees the request as a
// proxy should pass it: X-Forwarded-For of the client, a generated
// X-Request-Id, the original Host, and the connection coming from its own
// sidecar (the pod IP), having crossed the tunnel.
func TestHeaderRouteAndForwardedHeaders(t *testing.T) {
	leak.Check(t)
	_, client := reviewsMesh(t, "127.77.2", 100, 0)
	c := client.Client()
	defer c.CloseIdleConnections()
	for range 20 {
		resp, body := meshtest.Get(t, c, "http://reviews:9080/a/b?q=1", map[string]string{"end-user": "jason"})
		if body != "v2" {
			t.Fatalf("end-user: jason went to %q (status %d), want v2", body, resp.StatusCode)
		}
	}
	resp, body := meshtest.Get(t, c, "http://reviews:9080/a/b?q=1", map[string]string{"Connection": "X-Drop", "X-Drop": "secret", "X-Keep": "yes"})
	if body != "v1" {
		t.Fatalf("default route went to %q, want v1", body)
	}
	if got := resp.Header.Get("X-Seen-Xff"); got != "127.77.2.1" {
		t.Errorf("X-Forwarded-For at the app = %q, want the client pod's IP 127.77.2.1", got)
	}
	if id := resp.Header.Get("X-Seen-Request-Id"); len(id) != 36 || id[14] != '4' {
		t.Errorf("X-Request-Id at the app = %q, want a generated UUIDv4", id)
	}
	if got := resp.Header.Get("X-Seen-Host"); got != "reviews:9080" {
		t.Errorf("Host at the app = %q, want reviews:9080", got)
	}
	if got := resp.Header.Get("X-Seen-Path"); got != "/a/b?q=1" {
		t.Errorf("path at the app = %q, want /a/b?q=1", got)
	}
	host, _, _ := net.SplitHostPort(resp.Header.Get("X-Seen-Remote"))
	if host != "127.77.2.2" {
		t.Errorf("the app saw a connection from %q, want its own sidecar at 127.77.2.2", host)
	}

	// A request id the client sent is kept.
	resp, _ = meshtest.Get(t, c, "http://reviews:9080/", map[string]string{"X-Request-Id": "abc"})
	if got := resp.Header.Get("X-Seen-Request-Id"); got != "abc" {
		t.Errorf("X-Request-Id = %q, want the client's abc", got)
	}
}

// Unknown hosts get a passthrough, unknown routes a 404 with NR, and a
// service whose endpoints are all gone a 503 with UH; each says why.
func TestLocalRepliesSayWhy(t *testing.T) {
	leak.Check(t)
	m, client := reviewsMesh(t, "127.77.3", 100, 0)
	c := client.Client()
	defer c.CloseIdleConnections()

	// Outside the mesh (ALLOW_ANY): straight to the address.
	meshtest.Backend(t, "127.77.3.9:8080", "outside", nil)
	if _, body := meshtest.Get(t, c, "http://127.77.3.9:8080/", nil); body != "outside" {
		t.Errorf("passthrough answered %q, want outside", body)
	}

	// A connect failure to a passthrough destination is a 503 UF.
	resp, body := meshtest.Get(t, c, "http://127.77.3.10:8080/", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Trellis-Flags") != "UF" {
		t.Errorf("dead passthrough: %d %q %q, want 503 UF", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"), body)
	}

	// reviews loses its endpoints: 503 UH.
	m.Write("mesh.yaml", strings.Replace(reviewsConfig("127.77.3", 100, 0), "app: reviews, version", "app: gone, version", 2))
	meshtest.Eventually(t, 5e9, func() string {
		resp, err := c.Get("http://reviews:9080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Trellis-Flags") != "UH" {
			return "still " + resp.Status + " " + resp.Header.Get("X-Trellis-Flags")
		}
		return ""
	})
}
