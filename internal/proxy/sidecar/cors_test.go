package sidecar_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// corsVS gives app's routes CORS policies: /cors allows two origins (one
// by regex) with credentials, forwarding other origins' preflights as
// Istio does by default; /ignore answers those itself
// (unmatchedPreflights IGNORE); /star allows every origin, method and
// header.
const corsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - match: [{uri: {prefix: /cors}}]
    route: [{destination: {host: app, port: {number: 8080}}}]
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {regex: "https://.*[.]b[.]example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a, x-b]
      exposeHeaders: [x-exp]
      maxAge: 60s
      allowCredentials: true
  - match: [{uri: {prefix: /ignore}}]
    route: [{destination: {host: app, port: {number: 8080}}}]
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}]
      allowMethods: [PUT]
      unmatchedPreflights: IGNORE
  - match: [{uri: {prefix: /star}}]
    route: [{destination: {host: app, port: {number: 8080}}}]
    corsPolicy:
      allowOrigins: [{exact: "*"}]
      allowMethods: ["*"]
      allowHeaders: ["*"]
  - route: [{destination: {host: app}}]
`

// A VirtualService's corsPolicy through real sidecars, as Envoy's CORS
// filter applies it for Istio: the client's sidecar answers a preflight
// from an allowed origin itself (200, the Access-Control-Allow-* headers,
// no body, the app never sees it), forwards one from another origin to
// the app (or, under IGNORE, answers it without Allow-Origin), and adds
// Allow-Origin, Allow-Credentials and Expose-Headers to the app's
// responses to allowed origins only.
func TestCORSThroughSidecars(t *testing.T) {
	leak.Check(t)
	var options atomic.Int64
	am := newAppMesh(t, "127.132.1", corsVS, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			options.Add(1)
		}
		io.WriteString(w, "app")
	})
	c := am.client.Client()
	defer c.CloseIdleConnections()
	send := func(method, path string, h map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://app:8080"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	// cors is what a response says of CORS, and who made it.
	cors := func(resp *http.Response) map[string]string {
		out := map[string]string{"status": resp.Status, "from": resp.Header.Get("X-Backend")}
		for k, v := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
				out[k] = strings.Join(v, ", ")
			}
		}
		return out
	}
	preflight := func(origin, method string) map[string]string {
		h := map[string]string{"Access-Control-Request-Method": method, "Access-Control-Request-Headers": "x-z,x-y"}
		if origin != "" {
			h["Origin"] = origin
		}
		return h
	}

	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		want               map[string]string
		appSawOptions      bool
	}{
		{"preflight allowed", "OPTIONS", "/cors/x", preflight("https://a.example", "POST"), map[string]string{
			"status": "200 OK", "from": "",
			"Access-Control-Allow-Origin":      "https://a.example",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET,POST",
			"Access-Control-Allow-Headers":     "x-a,x-b",
			"Access-Control-Max-Age":           "60",
			"Access-Control-Expose-Headers":    "x-exp",
		}, false},
		{"preflight allowed by regex", "OPTIONS", "/cors/x", preflight("https://shop.b.example", "GET"), map[string]string{
			"status": "200 OK", "from": "",
			"Access-Control-Allow-Origin":      "https://shop.b.example",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET,POST",
			"Access-Control-Allow-Headers":     "x-a,x-b",
			"Access-Control-Max-Age":           "60",
			"Access-Control-Expose-Headers":    "x-exp",
		}, false},
		{"preflight from another origin forwarded", "OPTIONS", "/cors/x", preflight("https://evil.example", "POST"), map[string]string{
			"status": "200 OK", "from": "app",
		}, true},
		{"preflight from another origin answered under IGNORE", "OPTIONS", "/ignore", preflight("https://evil.example", "PUT"), map[string]string{
			"status": "200 OK", "from": "",
			"Access-Control-Allow-Methods": "PUT",
		}, false},
		{"star echoes the preflight", "OPTIONS", "/star", preflight("https://any.example", "DELETE"), map[string]string{
			"status": "200 OK", "from": "",
			"Access-Control-Allow-Origin":  "https://any.example",
			"Access-Control-Allow-Methods": "DELETE",
			"Access-Control-Allow-Headers": "x-z,x-y",
		}, false},
		{"OPTIONS that is no preflight", "OPTIONS", "/cors/x", map[string]string{"Origin": "https://a.example"}, map[string]string{
			"status": "200 OK", "from": "app",
			"Access-Control-Allow-Origin":      "https://a.example",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "x-exp",
		}, true},
		{"actual request allowed", "GET", "/cors/x", map[string]string{"Origin": "https://shop.b.example"}, map[string]string{
			"status": "200 OK", "from": "app",
			"Access-Control-Allow-Origin":      "https://shop.b.example",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "x-exp",
		}, false},
		{"actual request from another origin", "GET", "/cors/x", map[string]string{"Origin": "https://evil.example"}, map[string]string{
			"status": "200 OK", "from": "app",
		}, false},
		{"no origin", "GET", "/cors/x", nil, map[string]string{"status": "200 OK", "from": "app"}, false},
		{"route without a policy", "GET", "/other", map[string]string{"Origin": "https://a.example"}, map[string]string{"status": "200 OK", "from": "app"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := options.Load()
			resp, body := send(tc.method, tc.path, tc.header)
			if d := cmp.Diff(tc.want, cors(resp)); d != "" {
				t.Errorf("%s %s (-want +got):\n%s", tc.method, tc.path, d)
			}
			if tc.want["from"] == "" && (body != "" || resp.ContentLength != 0) {
				t.Errorf("the proxy's answer has a body %q (length %d), want none", body, resp.ContentLength)
			}
			if saw := options.Load() > before; saw != tc.appSawOptions {
				t.Errorf("the app saw the OPTIONS request: %v, want %v", saw, tc.appSawOptions)
			}
		})
	}
}

// An HTTPRoute's CORS filter through real sidecars: a preflight from an
// origin the filter's wildcard allows is answered by the client's
// sidecar with the Gateway API's default max age (5), one from another
// origin reaches the app, and the app's answers to allowed origins get
// Access-Control-Allow-Origin.
func TestHTTPRouteCORSThroughSidecars(t *testing.T) {
	leak.Check(t)
	var options atomic.Int64
	am := newAppMesh(t, "127.132.2", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app}
spec:
  parentRefs: [{group: "", kind: Service, name: app, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cors}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://*.shop.example"]
        allowMethods: [GET, PUT]
        allowHeaders: [x-a]
        exposeHeaders: [x-b]
        allowCredentials: true
    backendRefs: [{name: app, port: 8080}]
  - backendRefs: [{name: app, port: 8080}]
`, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			options.Add(1)
		}
		io.WriteString(w, "app")
	})
	c := am.client.Client()
	defer c.CloseIdleConnections()
	send := func(method, origin string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, "http://app:8080/cors", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "PUT")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := send(http.MethodOptions, "https://a.b.shop.example")
	got := map[string]string{"from": resp.Header.Get("X-Backend")}
	for _, k := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age", "Access-Control-Allow-Credentials"} {
		got[k] = resp.Header.Get(k)
	}
	want := map[string]string{"from": "", "Access-Control-Allow-Origin": "https://a.b.shop.example", "Access-Control-Allow-Methods": "GET,PUT",
		"Access-Control-Allow-Headers": "x-a", "Access-Control-Max-Age": "5", "Access-Control-Allow-Credentials": "true"}
	if d := cmp.Diff(want, got); d != "" || resp.StatusCode != http.StatusOK {
		t.Errorf("preflight: %s (-want +got):\n%s", resp.Status, d)
	}
	if options.Load() != 0 {
		t.Errorf("the app saw the preflight")
	}
	if resp := send(http.MethodOptions, "https://shop.example.evil"); resp.Header.Get("X-Backend") != "app" || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("another origin's preflight: from %q with Allow-Origin %q, want the app's answer without", resp.Header.Get("X-Backend"), resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if resp := send(http.MethodGet, "https://x.shop.example"); resp.Header.Get("X-Backend") != "app" || resp.Header.Get("Access-Control-Allow-Origin") != "https://x.shop.example" || resp.Header.Get("Access-Control-Expose-Headers") != "x-b" {
		t.Errorf("actual request: from %q, Allow-Origin %q, Expose-Headers %q", resp.Header.Get("X-Backend"), resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Access-Control-Expose-Headers"))
	}
}
