package sidecar_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// mirrorConfig is app (base.2, with a sidecar) and three mirror targets
// without sidecars: shadow (base.3), which records what it sees, hang
// (base.4), which never answers, and down (base.5), where nothing
// listens. app's VirtualService mirrors /copy wholly, /half half the
// time (mirrorPercentage), /legacy never (the deprecated mirrorPercent
// at 0), /hang to hang and /down to down, with mirrors[] each its own
// share.
func mirrorConfig(base string) string {
	var b strings.Builder
	for i, name := range []string{"app", "shadow", "hang", "down"} {
		tls := ""
		if name == "app" {
			tls = ", security.istio.io/tlsMode: istio"
		}
		fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %[1]s}
spec: {address: %[2]s.%[3]d, labels: {app: %[1]s%[4]s}}
---
`, name, base, i+2, tls)
	}
	b.WriteString(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - match: [{uri: {prefix: /copy}}]
    route: [{destination: {host: app}}]
    mirror: {host: shadow}
  - match: [{uri: {prefix: /half}}]
    route: [{destination: {host: app}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 50}
  - match: [{uri: {prefix: /legacy}}]
    route: [{destination: {host: app}}]
    mirror: {host: shadow}
    mirrorPercent: 0
  - match: [{uri: {prefix: /hang}}]
    route: [{destination: {host: app}}]
    mirrors:
    - destination: {host: hang}
    - destination: {host: shadow}
      percentage: {value: 0}
  - match: [{uri: {prefix: /down}}]
    route: [{destination: {host: app}}]
    mirrors: [{destination: {host: down}, percentage: {value: 100}}]
  - route: [{destination: {host: app}}]
`)
	return b.String()
}

// adminStat is a counter of the admin /stats page of the sidecar at ip.
func adminStat(t *testing.T, ip, name string) int {
	t.Helper()
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + ip + ":15000/stats")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+": "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("/stats %s: %v", name, err)
			}
			return n
		}
	}
	t.Fatalf("/stats has no %s:\n%s", name, b)
	return 0
}

// seenRequest is what the shadow backend saw of one copy.
type seenRequest struct {
	host, path, requestID, body, header string
}

// Istio's mirroring through a real client sidecar, as Envoy shadows: the
// mirror's backend gets a copy of each request (body included) with
// "-shadow" appended to the authority's host and the request's own
// X-Request-Id; the client gets the app's answer whatever the mirror
// does, even when it hangs or is down, and without waiting for it; a
// mirror that hangs holds at most 64 copies at once; mirrorPercentage 50
// copies half of 2,000 requests within ±5 points; an explicit 0 none.
func TestMirrorThroughSidecars(t *testing.T) {
	leak.Check(t)
	const base = "127.131.1"
	m := meshtest.New(t, mirrorConfig(base))
	meshtest.Backend(t, base+".2:8080", "app", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Body", string(b))
		io.WriteString(w, "app")
	})
	m.Sidecar("app", base+".2", map[string]string{"app": "app"})

	var mu sync.Mutex
	var copies []seenRequest
	count := func(prefix string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range copies {
			if strings.HasPrefix(c.path, prefix) {
				n++
			}
		}
		return n
	}
	meshtest.Backend(t, base+".3:8080", "shadow", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		copies = append(copies, seenRequest{host: r.Host, path: r.URL.RequestURI(), requestID: r.Header.Get("X-Request-Id"), body: string(b), header: r.Header.Get("X-Client")})
		mu.Unlock()
		// The mirror's answer goes nowhere: a failure changes nothing.
		w.WriteHeader(http.StatusInternalServerError)
	})
	release := make(chan struct{})
	var hungMu sync.Mutex
	hung, hungMax := 0, 0
	meshtest.Backend(t, base+".4:8080", "hang", func(w http.ResponseWriter, r *http.Request) {
		hungMu.Lock()
		hung++
		hungMax = max(hungMax, hung)
		hungMu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		hungMu.Lock()
		hung--
		hungMu.Unlock()
	})
	var releaseOnce sync.Once
	unhang := func() { releaseOnce.Do(func() { close(release) }) }
	// Released before the backends close (cleanups run last first), so
	// no handler is left waiting.
	t.Cleanup(unhang)

	c := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}).Client()
	defer c.CloseIdleConnections()
	m.WaitSynced()
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := c.Get("http://app:8080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "app answered " + resp.Status
		}
		return ""
	})

	t.Run("Copy", func(t *testing.T) {
		resp, body := meshtest.Get(t, c, "http://app:8080/copy/get?q=1", map[string]string{"X-Client": "sleep"})
		if resp.StatusCode != http.StatusOK || body != "app" {
			t.Fatalf("got %d %q, want the app's 200", resp.StatusCode, body)
		}
		req, err := http.NewRequest(http.MethodPost, "http://app:8080/copy/post", strings.NewReader("the body"))
		if err != nil {
			t.Fatal(err)
		}
		presp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		presp.Body.Close()
		if presp.StatusCode != http.StatusOK || presp.Header.Get("X-Seen-Body") != "the body" {
			t.Fatalf("POST: got %d, app saw body %q", presp.StatusCode, presp.Header.Get("X-Seen-Body"))
		}
		// A body over 64 KiB goes to the app whole but is not mirrored.
		big := strings.Repeat("b", 100<<10)
		bresp, err := c.Post("http://app:8080/copy/big", "text/plain", strings.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		bresp.Body.Close()
		if bresp.StatusCode != http.StatusOK || len(bresp.Header.Get("X-Seen-Body")) != len(big) {
			t.Fatalf("POST 100 KiB: got %d, app saw %d bytes", bresp.StatusCode, len(bresp.Header.Get("X-Seen-Body")))
		}
		// Nor is one awaiting 100-continue: reading it for the copy would
		// tell the client to go on before the app has.
		ereq, err := http.NewRequest(http.MethodPost, "http://app:8080/copy/expect", strings.NewReader("wait"))
		if err != nil {
			t.Fatal(err)
		}
		ereq.Header.Set("Expect", "100-continue")
		eresp, err := c.Do(ereq)
		if err != nil {
			t.Fatal(err)
		}
		eresp.Body.Close()
		if eresp.StatusCode != http.StatusOK || eresp.Header.Get("X-Seen-Body") != "wait" {
			t.Fatalf("POST with Expect: got %d, app saw %q", eresp.StatusCode, eresp.Header.Get("X-Seen-Body"))
		}
		if n := adminStat(t, base+".1", "http.outbound.mirror_skipped_body"); n != 2 {
			t.Errorf("mirror_skipped_body %d, want 2 (the large body, the one awaiting 100-continue)", n)
		}
		meshtest.Eventually(t, 5*time.Second, func() string {
			if n := count("/copy/"); n < 2 {
				return fmt.Sprintf("the shadow saw %d copies, want 2", n)
			}
			return ""
		})
		mu.Lock()
		got := append([]seenRequest(nil), copies...)
		mu.Unlock()
		want := map[string]seenRequest{
			"/copy/get?q=1": {host: "app-shadow:8080", path: "/copy/get?q=1", requestID: resp.Header.Get("X-Seen-Request-Id"), header: "sleep"},
			"/copy/post":    {host: "app-shadow:8080", path: "/copy/post", requestID: presp.Header.Get("X-Seen-Request-Id"), body: "the body"},
		}
		for _, g := range got {
			w, ok := want[g.path]
			if !ok {
				t.Errorf("unexpected copy %+v", g)
				continue
			}
			if g != w {
				t.Errorf("copy of %s: %+v, want %+v", g.path, g, w)
			}
			delete(want, g.path)
		}
		if len(want) > 0 {
			t.Errorf("no copies of %v", want)
		}
	})

	t.Run("HungMirror", func(t *testing.T) {
		// 100 requests, while the hang backend holds every copy it gets.
		for i := range 100 {
			start := time.Now()
			resp, body := meshtest.Get(t, c, fmt.Sprintf("http://app:8080/hang/%d", i), nil)
			if resp.StatusCode != http.StatusOK || body != "app" {
				t.Fatalf("request %d: got %d %q, want the app's 200", i, resp.StatusCode, body)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("request %d took %v with its mirror hanging", i, took)
			}
		}
		meshtest.Eventually(t, 5*time.Second, func() string {
			hungMu.Lock()
			defer hungMu.Unlock()
			if hung != 64 {
				return fmt.Sprintf("%d copies held by the hanging mirror, want the 64 in flight allowed", hung)
			}
			return ""
		})
		hungMu.Lock()
		if hungMax > 64 {
			t.Errorf("the hanging mirror held %d copies at once, want at most 64", hungMax)
		}
		hungMu.Unlock()
		if n := count("/hang/"); n != 0 {
			t.Errorf("the shadow saw %d copies of a mirror at 0%%", n)
		}
		// The 36 copies past the 64 in flight were dropped, and counted.
		if n := adminStat(t, base+".1", "http.outbound.mirror_dropped"); n != 36 {
			t.Errorf("mirror_dropped %d, want 36", n)
		}
		// Once the mirror answers, its places are free for the copies of
		// the tests below.
		unhang()
		meshtest.Eventually(t, 5*time.Second, func() string {
			resp, _ := meshtest.Get(t, c, "http://app:8080/copy/after-hang", nil)
			resp.Body.Close()
			if n := count("/copy/after-hang"); n == 0 {
				return "no copies get through after the hanging mirror answered"
			}
			return ""
		})
	})

	t.Run("DownMirror", func(t *testing.T) {
		for i := range 20 {
			start := time.Now()
			resp, body := meshtest.Get(t, c, "http://app:8080/down", nil)
			if resp.StatusCode != http.StatusOK || body != "app" {
				t.Fatalf("request %d: got %d %q (%s), want the app's 200", i, resp.StatusCode, body, resp.Header.Get("X-Trellis-Flags"))
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("request %d took %v with its mirror down", i, took)
			}
		}
	})

	t.Run("Half", func(t *testing.T) {
		const n = 2000
		for range n {
			resp, body := meshtest.Get(t, c, "http://app:8080/half", nil)
			if resp.StatusCode != http.StatusOK || body != "app" {
				t.Fatalf("got %d %q, want the app's 200", resp.StatusCode, body)
			}
		}
		for range 20 {
			meshtest.Get(t, c, "http://app:8080/legacy", nil)
		}
		// The copies are on their way on their own: wait until no more
		// arrive.
		last := -1
		meshtest.Eventually(t, 10*time.Second, func() string {
			got := count("/half")
			if got != last {
				last = got
				time.Sleep(100 * time.Millisecond) // a poll interval, not a synchronisation
				return fmt.Sprintf("copies still arriving (%d)", got)
			}
			return ""
		})
		if share := float64(last) / n * 100; math.Abs(share-50) > 5 {
			t.Errorf("%.1f%% of %d requests mirrored, want 50 ± 5", share, n)
		}
		if got := count("/legacy"); got != 0 {
			t.Errorf("mirrorPercent 0: the shadow saw %d copies, want none", got)
		}
	})
}

// An HTTPRoute's RequestMirror filter through a real client sidecar, as
// Istio translates it: a copy of each request to the mirror's backendRef
// with "-shadow" appended to the host, a fraction of 1/4 copying a
// quarter of 2,000 requests within ±5 points, and the client answered by
// the app alone.
func TestHTTPRouteMirrorThroughSidecars(t *testing.T) {
	leak.Check(t)
	const base = "127.131.2"
	cfg := strings.Replace(mirrorConfig(base), "kind: VirtualService", "kind: VirtualServiceUnused", 1)
	cfg = cfg[:strings.Index(cfg, "apiVersion: networking.istio.io/v1\nkind: VirtualServiceUnused")] + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app}
spec:
  parentRefs: [{group: "", kind: Service, name: app, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /copy}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 8080}}
    backendRefs: [{name: app, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /quarter}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 8080}, fraction: {numerator: 1, denominator: 4}}
    backendRefs: [{name: app, port: 8080}]
  - backendRefs: [{name: app, port: 8080}]
`
	m := meshtest.New(t, cfg)
	meshtest.Backend(t, base+".2:8080", "app", nil)
	m.Sidecar("app", base+".2", map[string]string{"app": "app"})
	var mu sync.Mutex
	hosts := map[string][]string{} // path → the hosts its copies named
	meshtest.Backend(t, base+".3:8080", "shadow", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts[r.URL.Path] = append(hosts[r.URL.Path], r.Host)
		mu.Unlock()
	})
	copies := func(path string) []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), hosts[path]...)
	}
	c := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}).Client()
	defer c.CloseIdleConnections()
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := c.Get("http://app:8080/copy")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != "app" {
			return "app answered " + resp.Status
		}
		if len(copies("/copy")) == 0 {
			return "no copy reached the mirror"
		}
		return ""
	})
	for _, h := range copies("/copy") {
		if h != "app-shadow:8080" {
			t.Errorf("the copy's host is %q, want app-shadow:8080", h)
		}
	}

	const n = 2000
	for range n {
		resp, body := meshtest.Get(t, c, "http://app:8080/quarter", nil)
		if resp.StatusCode != http.StatusOK || body != "app" {
			t.Fatalf("got %d %q, want the app's 200", resp.StatusCode, body)
		}
	}
	last := -1
	meshtest.Eventually(t, 10*time.Second, func() string {
		got := len(copies("/quarter"))
		if got != last {
			last = got
			time.Sleep(100 * time.Millisecond) // a poll interval, not a synchronisation
			return fmt.Sprintf("copies still arriving (%d)", got)
		}
		return ""
	})
	if share := float64(last) / n * 100; math.Abs(share-25) > 5 {
		t.Errorf("%.1f%% of %d requests mirrored, want 25 ± 5", share, n)
	}
}

// Copies in flight end with the sidecar: stopped while its mirror holds
// five copies unanswered, the client's sidecar exits without waiting for
// them (well inside the drain duration, as nothing else is in flight),
// and the mirror sees each copy's connection end.
func TestMirrorCopiesEndWithSidecar(t *testing.T) {
	leak.Check(t)
	const base = "127.131.3"
	m := meshtest.New(t, mirrorConfig(base))
	meshtest.Backend(t, base+".2:8080", "app", nil)
	m.Sidecar("app", base+".2", map[string]string{"app": "app"})
	var mu sync.Mutex
	hung := 0
	meshtest.Backend(t, base+".4:8080", "hang", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hung++
		mu.Unlock()
		<-r.Context().Done()
		mu.Lock()
		hung--
		mu.Unlock()
	})
	held := func() int {
		mu.Lock()
		defer mu.Unlock()
		return hung
	}
	client := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	c := client.Client()
	defer c.CloseIdleConnections()
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := c.Get("http://app:8080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "app answered " + resp.Status
		}
		return ""
	})
	for i := range 5 {
		if resp, body := meshtest.Get(t, c, fmt.Sprintf("http://app:8080/hang/%d", i), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	meshtest.Eventually(t, 5*time.Second, func() string {
		if n := held(); n != 5 {
			return fmt.Sprintf("the mirror holds %d copies, want 5", n)
		}
		return ""
	})
	c.CloseIdleConnections()
	start := time.Now()
	client.Stop()
	select {
	case <-client.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the sidecar did not exit within 10s")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the sidecar took %v to exit with copies in flight", took)
	}
	meshtest.Eventually(t, 5*time.Second, func() string {
		if n := held(); n != 0 {
			return fmt.Sprintf("the mirror still holds %d copies after the sidecar exited", n)
		}
		return ""
	})
}
