package sidecar_test

import (
	"net/http"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// A VirtualService redirect's prefixRewrite replaces the matched prefix
// and derivePort FROM_REQUEST_PORT keeps the port the request came to,
// through real sidecars (both were accepted and dropped before).
func TestVirtualServiceRedirectPrefixAndPort(t *testing.T) {
	leak.Check(t)
	_, c := versionsMesh(t, "127.93.7", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {prefixRewrite: /new}
  - match: [{uri: {prefix: /secure}}]
    redirect: {scheme: https, authority: example.com, derivePort: FROM_REQUEST_PORT, redirectCode: 308}
  - match: [{uri: {prefix: /default-port}}]
    redirect: {scheme: https, authority: example.com, derivePort: FROM_PROTOCOL_DEFAULT}
  - route: [{destination: {host: reviews-v1}}]
`, []string{"v1"}, nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, tc := range []struct {
		url      string
		status   int
		location string
	}{
		{"http://reviews:9080/old/a?q=1", http.StatusMovedPermanently, "http://reviews:9080/new/a?q=1"},
		{"http://reviews:9080/secure/x", http.StatusPermanentRedirect, "https://example.com:9080/secure/x"},
		{"http://reviews:9080/default-port/x", http.StatusMovedPermanently, "https://example.com/default-port/x"},
	} {
		resp, body := meshtest.Get(t, c, tc.url, nil)
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("GET %s: %d Location %q (%q), want %d Location %q", tc.url, resp.StatusCode, resp.Header.Get("Location"), body, tc.status, tc.location)
		}
	}
	if resp, body := meshtest.Get(t, c, "http://reviews:9080/other", nil); resp.StatusCode != http.StatusOK || body != "v1" {
		t.Errorf("GET /other: %d %q, want 200 from v1", resp.StatusCode, body)
	}
}
