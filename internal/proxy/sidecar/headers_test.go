package sidecar_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// headersVS manipulates headers on app's /route requests by the route's
// headers, and on /dest requests by the destination's.
const headersVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - match: [{uri: {prefix: /route}}]
    headers:
      request: {set: {x-set: route-set}, add: {x-add: route-add}, remove: [x-remove]}
      response: {set: {x-resp-set: route-set}, add: {x-resp-add: route-add}, remove: [x-app-remove]}
    route: [{destination: {host: app, port: {number: 8080}}}]
  - match: [{uri: {prefix: /dest}}]
    route:
    - destination: {host: app, port: {number: 8080}}
      headers:
        request: {set: {x-set: dest-set}, add: {x-add: dest-add}, remove: [x-remove]}
        response: {set: {x-resp-set: dest-set}, add: {x-resp-add: dest-add}, remove: [x-app-remove]}
  - route: [{destination: {host: app}}]
`

// A VirtualService's headers, per route and per destination, through
// real sidecars, each of the six operations seen on the wire: request
// set replaces the client's value, add appends to it, remove takes the
// header away before the app sees it; response set replaces the app's
// value, add appends, remove takes the app's header away before the
// client sees it. A route without rules changes nothing.
func TestHeaderOperationsThroughSidecars(t *testing.T) {
	leak.Check(t)
	am := newAppMesh(t, "127.133.1", headersVS, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Seen-Set", strings.Join(r.Header.Values("X-Set"), "|"))
		h.Set("X-Seen-Add", strings.Join(r.Header.Values("X-Add"), "|"))
		h.Set("X-Seen-Remove", strings.Join(r.Header.Values("X-Remove"), "|"))
		h.Set("X-Resp-Set", "app")
		h.Set("X-Resp-Add", "app")
		h.Set("X-App-Remove", "secret")
		w.Write([]byte("app"))
	})
	c := am.client.Client()
	defer c.CloseIdleConnections()
	sent := map[string]string{"X-Set": "client", "X-Add": "client", "X-Remove": "client"}
	for _, tc := range []struct{ path, by string }{{"/route", "route"}, {"/dest", "dest"}, {"/other", ""}} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			resp, body := meshtest.Get(t, c, "http://app:8080"+tc.path, sent)
			if resp.StatusCode != http.StatusOK || body != "app" {
				t.Fatalf("got %d %q, want the app's 200", resp.StatusCode, body)
			}
			got := map[string]string{
				"request set":     resp.Header.Get("X-Seen-Set"),
				"request add":     resp.Header.Get("X-Seen-Add"),
				"request remove":  resp.Header.Get("X-Seen-Remove"),
				"response set":    strings.Join(resp.Header.Values("X-Resp-Set"), "|"),
				"response add":    strings.Join(resp.Header.Values("X-Resp-Add"), "|"),
				"response remove": strings.Join(resp.Header.Values("X-App-Remove"), "|"),
			}
			want := map[string]string{
				"request set":     tc.by + "-set",
				"request add":     "client|" + tc.by + "-add",
				"request remove":  "",
				"response set":    tc.by + "-set",
				"response add":    "app|" + tc.by + "-add",
				"response remove": "",
			}
			if tc.by == "" {
				want = map[string]string{
					"request set": "client", "request add": "client", "request remove": "client",
					"response set": "app", "response add": "app", "response remove": "secret",
				}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("GET %s (-want +got):\n%s", tc.path, d)
			}
		})
	}
}
