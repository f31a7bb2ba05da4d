package sidecar_test

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// slowReviews is the reviews mesh whose v1 app takes a while to answer
// and counts the requests it is working on.
func slowReviews(t *testing.T, base string, delay time.Duration) (*meshtest.Mesh, *meshtest.Pod, *meshtest.Pod, *atomic.Int64) {
	m := meshtest.New(t, reviewsConfig(base, 100, 0))
	var inFlight atomic.Int64
	meshtest.Backend(t, base+".2:9080", "v1", func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		time.Sleep(delay)
		io.WriteString(w, "v1")
	})
	meshtest.Backend(t, base+".3:9080", "v2", nil)
	server := m.Sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"})
	m.Sidecar("reviews-v2", base+".3", map[string]string{"app": "reviews", "version": "v2"})
	client := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	return m, client, server, &inFlight
}

// inFlight sends n requests at once and returns their outcomes once all
// have answered.
func sendConcurrently(c *http.Client, n int) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		var mu sync.Mutex
		var results []string
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := "ok"
				resp, err := c.Get("http://reviews:9080/slow")
				if err != nil {
					res = err.Error()
				} else {
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 || string(b) != "v1" {
						res = fmt.Sprintf("%d %q %v", resp.StatusCode, b, err)
					}
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}()
		}
		wg.Wait()
		out <- results
	}()
	return out
}

func checkAllOK(t *testing.T, results []string) {
	t.Helper()
	for _, r := range results {
		if r != "ok" {
			t.Errorf("an in-flight request failed during the drain: %s", r)
		}
	}
}

// Stopping the server pod's sidecar (SIGTERM) lets the requests it is
// carrying finish; it stops accepting, and exits cleanly within the drain
// time.
func TestDrainServerSidecarFinishesInFlight(t *testing.T) {
	leak.Check(t)
	_, client, server, inFlight := slowReviews(t, "127.77.6", 400*time.Millisecond)
	c := client.Client()
	defer c.CloseIdleConnections()
	const n = 8
	results := sendConcurrently(c, n)
	meshtest.Eventually(t, 5*time.Second, func() string {
		if got := inFlight.Load(); got < n {
			return fmt.Sprintf("%d of %d requests reached the app", got, n)
		}
		return ""
	})
	start := time.Now()
	server.Stop()
	checkAllOK(t, <-results)
	select {
	case <-server.Exited():
		if err := server.Err(); err != nil {
			t.Errorf("drained proxy returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the proxy did not exit within its drain time")
	}
	if ready, _ := server.Proxy.Ready(); ready {
		t.Errorf("a drained proxy still reports ready")
	}
	t.Logf("drained in %v", time.Since(start).Round(time.Millisecond))
}

// Stopping the client pod's sidecar lets the app's in-flight requests
// through it finish, each answered with Connection: close so the app's
// keep-alive connections do not outlive the proxy.
func TestDrainClientSidecarFinishesInFlight(t *testing.T) {
	leak.Check(t)
	_, client, _, inFlight := slowReviews(t, "127.77.7", 400*time.Millisecond)
	c := client.Client()
	defer c.CloseIdleConnections()
	const n = 8
	results := sendConcurrently(c, n)
	meshtest.Eventually(t, 5*time.Second, func() string {
		if got := inFlight.Load(); got < n {
			return fmt.Sprintf("%d of %d requests reached the app", got, n)
		}
		return ""
	})
	client.Stop()
	checkAllOK(t, <-results)
	if _, err := c.Get("http://reviews:9080/"); err == nil {
		t.Errorf("a drained sidecar still accepts new requests")
	}
}
