package sidecar_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// protoApp answers with the HTTP version and connection it was reached
// with, and serves /ws as a websocket.
type protoApp struct {
	mu    sync.Mutex
	conns map[string]int // remote address: requests
	proto map[int]int    // major version: requests
}

func newProtoApp() *protoApp {
	return &protoApp{conns: map[string]int{}, proto: map[int]int{}}
}

func (a *protoApp) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ws" {
		wsEcho(w, r)
		return
	}
	a.mu.Lock()
	a.conns[r.RemoteAddr]++
	a.proto[r.ProtoMajor]++
	a.mu.Unlock()
	w.Header().Set("X-Seen-Proto", strconv.Itoa(r.ProtoMajor))
	// Held a little so that concurrent requests overlap.
	time.Sleep(20 * time.Millisecond)
	io.WriteString(w, "app")
}

func (a *protoApp) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.conns)
	clear(a.proto)
}

func (a *protoApp) seen() (conns int, proto map[int]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	proto = map[int]int{}
	for k, v := range a.proto {
		proto[k] = v
	}
	return len(a.conns), proto
}

// concurrently sends n GETs at once and checks each is answered by the app.
func concurrently(t *testing.T, c *http.Client, n int, target string, wantProto int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := c.Get(target)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "app" || resp.ProtoMajor != wantProto {
				t.Errorf("%s: HTTP/%d %d %q (%s), want HTTP/%d 200 from the app", target, resp.ProtoMajor, resp.StatusCode, b, resp.Header.Get("X-Trellis-Flags"), wantProto)
			}
		})
	}
	wg.Wait()
}

// An app speaking h2c with prior knowledge to its forward proxy is
// served: requests multiplex on one downstream connection and reach the
// app, which gets the HTTP/1.1 its port (http-web) declares, as in Istio:
// only ports whose protocol is sniffed use the downstream's protocol.
func TestH2CDownstreamThroughTwoProxies(t *testing.T) {
	leak.Check(t)
	app := newProtoApp()
	am := newAppMesh(t, "127.77.14", "", app.serve)

	var ps http.Protocols
	ps.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols:   &ps,
		Proxy:       http.ProxyURL(&url.URL{Scheme: "http", Host: "127.77.14.1:15001"}),
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: am.client.IP.AsSlice()}}).DialContext,
	}
	defer tr.CloseIdleConnections()
	h2 := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	// Warm: the Transport dials once per request until its first
	// connection is up, so the multiplexing shows on the ones after.
	concurrently(t, h2, 1, "http://app:8080/warm", 2)
	before, _ := strconv.Atoi(statsLine(t, am.client, "http.outbound.downstream_cx_total"))
	app.reset()
	concurrently(t, h2, 20, "http://app:8080/h2c", 2)
	after, _ := strconv.Atoi(statsLine(t, am.client, "http.outbound.downstream_cx_total"))
	if after != before {
		t.Errorf("20 concurrent h2c requests took %d new connections to the proxy, want them on the warm one", after-before)
	}
	if _, proto := app.seen(); proto[1] != 20 {
		t.Errorf("the app saw versions %v, want 20 requests over HTTP/1.1", proto)
	}

	// HTTP/1.1 requests stay HTTP/1.1 (h2UpgradePolicy DO_NOT_UPGRADE).
	c := am.client.Client()
	defer c.CloseIdleConnections()
	app.reset()
	concurrently(t, c, 10, "http://app:8080/h1", 1)
	if _, proto := app.seen(); proto[1] != 10 {
		t.Errorf("the app saw versions %v, want 10 requests over HTTP/1.1", proto)
	}
}

// DestinationRule connectionPool.http.h2UpgradePolicy UPGRADE sends the
// client's HTTP/1.1 requests to the server's sidecar as HTTP/2,
// multiplexed on one connection, while a websocket upgrade still goes as
// HTTP/1.1. The app behind it still gets the HTTP/1.1 its port declares:
// as in Istio, the upgrade is between sidecars (an HTTP/1.1-only app must
// keep working when a DestinationRule turns it on, as the user's reviews
// rule does).
func TestH2UpgradePolicy(t *testing.T) {
	leak.Check(t)
	app := newProtoApp()
	am := newAppMesh(t, "127.77.15", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    connectionPool:
      http: {h2UpgradePolicy: UPGRADE}
`, app.serve)
	c := am.client.Client()
	defer c.CloseIdleConnections()
	// Warm: the first request opens the multiplexed connection.
	concurrently(t, c, 1, "http://app:8080/warm", 1)
	beforeIn, _ := strconv.Atoi(statsLine(t, am.server, "http.inbound.downstream_cx_total"))
	app.reset()
	concurrently(t, c, 30, "http://app:8080/upgraded", 1)
	if _, proto := app.seen(); proto[1] != 30 {
		t.Errorf("the app saw versions %v, want all 30 requests over HTTP/1.1", proto)
	}
	afterIn, _ := strconv.Atoi(statsLine(t, am.server, "http.inbound.downstream_cx_total"))
	if afterIn != beforeIn {
		t.Errorf("the client's sidecar opened %d new tunnelled connections for 30 requests, want none past the warm one", afterIn-beforeIn)
	}

	// Upgrades stay on HTTP/1.1 all the way.
	ws, br, resp := wsHandshake(t, am.client, "app:8080")
	if got := resp.Header.Get("X-Ws-Proto"); got != "1" {
		t.Errorf("the websocket upgrade reached the app as HTTP/%s, want HTTP/1.1", got)
	}
	wsExchange(t, ws, br)
	ws.Close()
}
