package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// load sends requests through c from workers goroutines until stop is
// closed or max requests were sent, and records every failure. It is
// bounded in both requests and time.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	byBackend  map[string]int
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(c *http.Client, target string, workers int, max int64) *load {
	l := &load{stop: make(chan struct{}), byBackend: map[string]int{}}
	var sent atomic.Int64
	deadline := time.Now().Add(30 * time.Second)
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for sent.Add(1) <= max && time.Now().Before(deadline) {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(target)
				if err != nil {
					l.fail(err.Error())
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					l.fail(fmt.Sprintf("%d %s %q %v", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"), b, err))
					continue
				}
				l.ok.Add(1)
				l.mu.Lock()
				l.byBackend[string(b)]++
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, msg)
	}
	l.mu.Unlock()
}

// waitFor lets the load run until n more requests succeeded.
func (l *load) waitFor(t testing.TB, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(10 * time.Second)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled at %d ok, %d failed: %v", l.ok.Load(), l.failed.Load(), l.failures)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *load) finish(t testing.TB) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.failed.Load() > 0 {
		t.Errorf("%d of %d requests failed, e.g. %v", l.failed.Load(), l.failed.Load()+l.ok.Load(), l.failures)
	}
}

// Routing and endpoint changes apply under load without failing a request
// or closing keep-alive connections, and the last change wins.
func TestConfigChangeUnderLoad(t *testing.T) {
	leak.Check(t)
	const base = "127.77.4"
	m, client := reviewsMesh(t, base, 100, 0)
	c := client.Client()
	defer c.CloseIdleConnections()
	var closedByProxy atomic.Int64
	tr := c.Transport.(*http.Transport)
	inner := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := inner(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &eofConn{Conn: nc, eofs: &closedByProxy}, nil
	}

	l := startLoad(c, "http://reviews:9080/", 4, 20000)
	l.waitFor(t, 200)
	for _, w := range [][2]int{{0, 100}, {50, 50}, {100, 0}, {0, 100}} {
		m.Write("mesh.yaml", reviewsConfig(base, w[0], w[1]))
		l.waitFor(t, 300)
	}
	// An endpoint change: v2 moves to a new pod (a new IP).
	meshtest.Backend(t, base+".4:9080", "v2-moved", nil)
	m.Sidecar("reviews-v2-moved", base+".4", map[string]string{"app": "reviews", "version": "v2"})
	moved := replaceOnce(reviewsConfig(base, 0, 100), base+".3", base+".4")
	m.Write("mesh.yaml", moved)
	meshtest.Eventually(t, 10*time.Second, func() string {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.byBackend["v2-moved"] < 100 {
			return fmt.Sprintf("the moved endpoint got %d requests", l.byBackend["v2-moved"])
		}
		return ""
	})
	l.finish(t)
	if n := closedByProxy.Load(); n > 0 {
		t.Errorf("the sidecar closed %d keep-alive connections during the updates", n)
	}
}

// eofConn counts connections the peer closed (a read ending in EOF).
type eofConn struct {
	net.Conn
	eofs *atomic.Int64
	seen atomic.Bool
}

func (c *eofConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF && c.seen.CompareAndSwap(false, true) {
		c.eofs.Add(1)
	}
	return n, err
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

// With the control plane gone, sidecars keep serving the last config
// without a failed request; once it is back they resync and apply changes.
func TestControlPlaneKilledUnderLoad(t *testing.T) {
	leak.Check(t)
	const base = "127.77.5"
	m, client := reviewsMesh(t, base, 100, 0)
	c := client.Client()
	defer c.CloseIdleConnections()

	l := startLoad(c, "http://reviews:9080/", 4, 20000)
	l.waitFor(t, 200)
	addr := m.XDSAddr()
	if err := m.StopControlPlane(); err != nil {
		t.Fatalf("stopping the control plane: %v", err)
	}
	l.waitFor(t, 1000)

	// A new control plane on the same address, with a changed config.
	m.Write("mesh.yaml", reviewsConfig(base, 0, 100))
	var lis net.Listener
	meshtest.Eventually(t, 5*time.Second, func() string {
		var err error
		lis, err = net.Listen("tcp", addr)
		if err != nil {
			return err.Error()
		}
		return ""
	})
	m.StartControlPlane(lis)
	meshtest.Eventually(t, 10*time.Second, func() string {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.byBackend["v2"] < 100 {
			return fmt.Sprintf("after the restart v2 got %d requests", l.byBackend["v2"])
		}
		return ""
	})
	l.finish(t)
}
