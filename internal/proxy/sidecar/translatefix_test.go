package sidecar_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// Config the control plane accepts must reach the sidecars with its
// meaning (issue 12): each test here sends real requests through real
// sidecars to real backends and checks what happened on the wire.

// getCtx is get with a deadline of its own, so a request the config
// should have ended does not hang the test for the client's 10 s.
func getCtx(t *testing.T, c *http.Client, within time.Duration, target string, header map[string]string) (*http.Response, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// A VirtualService route timeout ends a slower request with 504 and flag
// UT at the client's sidecar, as Envoy does. Routes without a timeout wait
// for the backend (Istio's default: no timeout).
func TestVirtualServiceTimeoutOnTheWire(t *testing.T) {
	leak.Check(t)
	slow, wait := make(chan struct{}), make(chan struct{})
	_, c := versionsMesh(t, "127.91.1", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /slow}}]
    timeout: 300ms
    route: [{destination: {host: reviews-v1}}]
  - route: [{destination: {host: reviews-v1}}]
`, []string{"v1"}, func(w http.ResponseWriter, r *http.Request) {
		var release chan struct{}
		switch {
		case strings.HasPrefix(r.URL.Path, "/slow"):
			release = slow
		case strings.HasPrefix(r.URL.Path, "/wait"):
			release = wait
		}
		if release != nil {
			select {
			case <-r.Context().Done():
				return
			case <-release:
			}
		}
		io.WriteString(w, "done")
	})
	t.Cleanup(func() { close(slow) })

	start := time.Now()
	resp, body, err := getCtx(t, c, 5*time.Second, "http://reviews:9080/slow", nil)
	if err != nil {
		t.Fatalf("GET /slow with a 300ms route timeout: %v (the timeout did not end it)", err)
	}
	took := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("X-Trellis-Flags") != "UT" {
		t.Fatalf("GET /slow: %d %q %q, want 504 with flag UT", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"), body)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("the 504 came after %s, want about the route's 300ms", took)
	}

	// The other route has no timeout: a request slower than the first
	// route's timeout still gets its answer.
	done := make(chan struct{})
	var (
		wresp *http.Response
		wbody string
		werr  error
	)
	go func() {
		defer close(done)
		wresp, wbody, werr = getCtx(t, c, 5*time.Second, "http://reviews:9080/wait", nil)
	}()
	select {
	case <-done:
		t.Fatalf("GET /wait ended before the backend answered: %v %v", wresp, werr)
	case <-time.After(600 * time.Millisecond):
	}
	close(wait)
	<-done
	if werr != nil || wresp.StatusCode != http.StatusOK || wbody != "done" {
		t.Fatalf("GET /wait without a route timeout: %v, status %v, body %q; want 200 done", werr, wresp, wbody)
	}
}

// A subset's own consistentHash holds for routes to that subset: each user
// (header) stays on one backend of the subset, users spread over several.
// Before, the route hashed by the top-level policy only, which has none
// here, and the subset's ring-hash cluster picked at random.
func TestSubsetConsistentHashOnTheWire(t *testing.T) {
	leak.Check(t)
	_, c := versionsMesh(t, "127.91.2", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - name: sticky
    labels: {app: reviews}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: sticky}}]
`, []string{"a", "b", "c"}, nil)
	used := map[string]bool{}
	for u := range 20 {
		got := countAnswers(t, c, 10, map[string]string{"x-user": fmt.Sprintf("user-%d", u)})
		if len(got) != 1 {
			t.Errorf("user-%d was spread over %v, want one backend", u, got)
		}
		for k := range got {
			used[k] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("20 users all hashed to %v, want several backends", used)
	}
}

// A VirtualService match on scheme holds: a route for https does not take
// a plain http request, which falls to the next route; a route for http
// takes it. As in Envoy, a client's X-Forwarded-Proto names the scheme of
// a request sent in origin form (as a transparently captured app sends
// it), not of one whose target names its own scheme.
func TestSchemeMatchOnTheWire(t *testing.T) {
	leak.Check(t)
	m, c := versionsMesh(t, "127.91.3", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{scheme: {exact: https}}]
    route: [{destination: {host: reviews-v2}}]
  - match: [{scheme: {exact: http}, headers: {x-want: {exact: plain}}}]
    route: [{destination: {host: reviews-v3}}]
  - route: [{destination: {host: reviews-v1}}]
`, []string{"v1", "v2", "v3"}, nil)
	if got := countAnswers(t, c, 10, nil); got["v1"] != 10 {
		t.Errorf("plain http requests went to %v, want all to v1 (the https route must not match)", got)
	}
	if got := countAnswers(t, c, 10, map[string]string{"x-want": "plain"}); got["v3"] != 10 {
		t.Errorf("plain http requests with x-want: plain went to %v, want all to v3 (scheme http)", got)
	}
	if got := countAnswers(t, c, 10, map[string]string{"X-Forwarded-Proto": "https"}); got["v1"] != 10 {
		t.Errorf("absolute-form requests with X-Forwarded-Proto: https went to %v, want all to v1 (the target's scheme is http)", got)
	}

	// Origin form, straight to the sidecar's outbound port.
	client := m.Pod("sleep")
	origin := func(header string) string {
		t.Helper()
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: client.IP.AsSlice()}, Timeout: 5 * time.Second}).Dial("tcp", net.JoinHostPort(client.IP.String(), "15001"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: reviews:9080\r\n%sConnection: close\r\n\r\n", header)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	if got := origin("X-Forwarded-Proto: https\r\n"); got != "200 v2" {
		t.Errorf("origin-form request with X-Forwarded-Proto: https answered %q, want 200 v2 (the https route)", got)
	}
	if got := origin(""); got != "200 v1" {
		t.Errorf("origin-form request without X-Forwarded-Proto answered %q, want 200 v1", got)
	}
}

// An HTTPRoute RequestRedirect rule (no backends) answers with its
// redirect, not a 500: the Gateway API's 302 by default, the path's
// matched prefix replaced, the query kept, the service port kept unless a
// scheme is given (then that scheme's default port, left out). URLRewrite
// rewrites the path and Host the backend sees.
func TestHTTPRouteRedirectAndRewriteOnTheWire(t *testing.T) {
	leak.Check(t)
	_, c := versionsMesh(t, "127.91.5", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
        statusCode: 301
  - matches: [{path: {type: Exact, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: example.com}
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: backend.internal
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        path: {type: ReplaceFullPath, replaceFullPath: /index.html}
    backendRefs: [{name: reviews-v1, port: 9080}]
  - backendRefs: [{name: reviews-v1, port: 9080}]
`, []string{"v1"}, nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	for _, tc := range []struct {
		url      string
		status   int
		location string
	}{
		{"http://reviews:9080/old/a?q=1", http.StatusMovedPermanently, "http://reviews:9080/new/a?q=1"},
		{"http://reviews:9080/old", http.StatusMovedPermanently, "http://reviews:9080/new"},
		{"http://reviews:9080/moved?x=y", http.StatusFound, "https://example.com/moved?x=y"},
	} {
		resp, body := meshtest.Get(t, c, tc.url, nil)
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("GET %s: %d Location %q (%q), want %d Location %q", tc.url, resp.StatusCode, resp.Header.Get("Location"), body, tc.status, tc.location)
		}
		if b := resp.Header.Get("X-Backend"); b != "" {
			t.Errorf("GET %s reached backend %s; a redirect is answered by the client's sidecar", tc.url, b)
		}
	}

	for _, tc := range []struct{ url, path, host string }{
		{"http://reviews:9080/api/items?x=1", "/v2/items?x=1", "backend.internal"},
		{"http://reviews:9080/api", "/v2", "backend.internal"},
		{"http://reviews:9080/full/a/b?x=1", "/index.html?x=1", "reviews:9080"},
		{"http://reviews:9080/other", "/other", "reviews:9080"},
	} {
		resp, body := meshtest.Get(t, c, tc.url, nil)
		if resp.StatusCode != http.StatusOK || body != "v1" {
			t.Errorf("GET %s: %d %q, want 200 from v1", tc.url, resp.StatusCode, body)
			continue
		}
		if got := resp.Header.Get("X-Seen-Path"); got != tc.path {
			t.Errorf("GET %s: the backend saw path %q, want %q", tc.url, got, tc.path)
		}
		if got := resp.Header.Get("X-Seen-Host"); got != tc.host {
			t.Errorf("GET %s: the backend saw Host %q, want %q", tc.url, got, tc.host)
		}
	}
}
