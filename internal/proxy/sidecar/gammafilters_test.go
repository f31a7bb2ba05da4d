package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// GAMMA routes through real sidecars: filters on a backendRef apply only
// when that backend is chosen, and a Service parent's sectionName picks
// the port the route applies to.

// A request header set and removed for reviews-v1 only reaches v1, and
// each backend's response header filter applies to its own responses
// only. A rule with one backend applies that backend's filter too.
func TestGAMMABackendFiltersOnTheWire(t *testing.T) {
	leak.Check(t)
	_, c := versionsMesh(t, "127.94.1", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /solo}}]
    backendRefs:
    - name: reviews-v2
      port: 9080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: x-canary, value: solo}]}
  - backendRefs:
    - name: reviews-v1
      port: 9080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-canary, value: v1-only}]
          remove: [x-drop]
      - type: ResponseHeaderModifier
        responseHeaderModifier:
          set: [{name: x-served, value: by-v1}]
          remove: [x-seen-remote]
    - name: reviews-v2
      port: 9080
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-served, value: by-v2}]}
`, []string{"v1", "v2"}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Canary", r.Header.Get("X-Canary"))
		w.Header().Set("X-Seen-Drop", r.Header.Get("X-Drop"))
		io.WriteString(w, w.Header().Get("X-Backend"))
	})

	type seen struct{ canary, drop, served, remote string }
	want := map[string]seen{
		"v1": {canary: "v1-only", drop: "", served: "by-v1", remote: ""},
		"v2": {canary: "", drop: "keep", served: "by-v2", remote: "present"},
	}
	counts := map[string]int{}
	for range 60 {
		resp, body := meshtest.Get(t, c, "http://reviews:9080/", map[string]string{"x-drop": "keep"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /: %d %q", resp.StatusCode, body)
		}
		counts[body]++
		got := seen{canary: resp.Header.Get("X-Seen-Canary"), drop: resp.Header.Get("X-Seen-Drop"), served: resp.Header.Get("X-Served")}
		if resp.Header.Get("X-Seen-Remote") != "" {
			got.remote = "present"
		}
		if w, ok := want[body]; !ok || got != w {
			t.Fatalf("answer from %q: the backend saw x-canary %q, x-drop %q; the client got x-served %q, x-seen-remote %s; want %+v",
				body, got.canary, got.drop, got.served, got.remote, w)
		}
	}
	if counts["v1"] == 0 || counts["v2"] == 0 {
		t.Fatalf("answers %v: both backends must have answered to compare their filters", counts)
	}

	resp, body := meshtest.Get(t, c, "http://reviews:9080/solo", nil)
	if body != "v2" || resp.Header.Get("X-Seen-Canary") != "solo" {
		t.Errorf("GET /solo: %q saw x-canary %q, want v2 with the one backend's filter (solo)", body, resp.Header.Get("X-Seen-Canary"))
	}
}

// Service shop has ports http (9080) and http-alt (9090). A route whose
// parentRef names sectionName http applies to 9080 only; one that names
// sectionName http with port 9090 names no port of the Service and
// applies nowhere. Requests to 9090 keep the default route to shop:9090.
func TestGAMMASectionNameOnTheWire(t *testing.T) {
	leak.Check(t)
	const base = "127.94.2"
	m := meshtest.New(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 9080}, {name: http-alt, port: 9090}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop}
spec: {address: %[1]s.2, labels: {app: shop, security.istio.io/tlsMode: istio}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop-http}
spec:
  parentRefs: [{group: "", kind: Service, name: shop, sectionName: http}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-routed, value: shop-http}]}
    backendRefs: [{name: shop, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop-mismatch}
spec:
  parentRefs: [{group: "", kind: Service, name: shop, sectionName: http, port: 9090}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /both}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-routed, value: shop-mismatch}]}
    backendRefs: [{name: shop, port: 9080}]
`, base))
	seenRouted := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Routed", r.Header.Get("X-Routed"))
		io.WriteString(w, w.Header().Get("X-Backend"))
	}
	meshtest.Backend(t, base+".2:9080", "shop:9080", seenRouted)
	meshtest.Backend(t, base+".2:9090", "shop:9090", seenRouted)
	m.Sidecar("shop", base+".2", map[string]string{"app": "shop"})
	c := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}).Client()
	t.Cleanup(c.CloseIdleConnections)
	for _, port := range []string{"9080", "9090"} {
		meshtest.Eventually(t, 10*time.Second, func() string {
			resp, err := c.Get("http://shop:" + port + "/")
			if err != nil {
				return err.Error()
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return "shop:" + port + " answered " + resp.Status
			}
			return ""
		})
	}

	for _, tc := range []struct{ url, backend, routed string }{
		{"http://shop:9080/", "shop:9080", "shop-http"},
		{"http://shop:9080/both", "shop:9080", "shop-http"},
		{"http://shop:9090/", "shop:9090", ""},
		{"http://shop:9090/both", "shop:9090", ""},
	} {
		resp, body := meshtest.Get(t, c, tc.url, nil)
		if resp.StatusCode != http.StatusOK || body != tc.backend || resp.Header.Get("X-Seen-Routed") != tc.routed {
			t.Errorf("GET %s: %d from %q with x-routed %q, want 200 from %q with x-routed %q",
				tc.url, resp.StatusCode, body, resp.Header.Get("X-Seen-Routed"), tc.backend, tc.routed)
		}
	}
}

// A GRPCRoute backendRef's header filters apply to calls through the
// sidecars: the app sees the request metadata the filter sets (it echoes
// x-echo back in x-header), and the caller gets the response header.
func TestGAMMAGRPCBackendFiltersOnTheWire(t *testing.T) {
	leak.Check(t)
	const base = "127.94.3"
	am := newAppMesh(t, base, `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: app}
spec:
  parentRefs: [{group: "", kind: Service, name: app, port: 7070}]
  rules:
  - backendRefs:
    - name: app
      port: 7070
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: x-echo, value: from-backend-filter}]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {set: [{name: x-served, value: app}]}
`, nil)
	ln, err := net.Listen("tcp", base+".2:7070")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &greeter{peers: make(chan string, 1)})
	go srv.Serve(ln)
	defer srv.Stop()

	cc, err := grpc.NewClient("passthrough:///app:7070",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(connectDialer(am.client)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var header metadata.MD
	_, err = testpb.NewTestServiceClient(cc).UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-echo", "from-client"),
		&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}, grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	if got := header.Get("x-header"); len(got) != 1 || got[0] != "h-from-backend-filter" {
		t.Errorf("the app echoed x-echo as %q, want h-from-backend-filter (the backend filter's set)", got)
	}
	if got := header.Get("x-served"); len(got) != 1 || got[0] != "app" {
		t.Errorf("response header x-served = %q, want app", got)
	}
}
