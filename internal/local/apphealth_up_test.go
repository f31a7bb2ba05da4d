package local_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// Scenario (testdata/apphealth): web has a sidecar, STRICT mTLS and
// httpGet readiness, tcpSocket liveness and httpGet startup probes;
// plain has no sidecar. `trellis up` sends web's probes to its sidecar's
// status port (Istio's rewrite): the mesh gets ready, the sidecar holds
// the original probes in ISTIO_KUBE_APP_PROBERS and answers
// /app-health/web/* on 15020 with the app's own result. In transparent
// mode, where a probe of the app port from the node would pass through
// the sidecar's inbound listener, that listener has taken no connection
// by the time web is ready: its probes never touched the app port from
// outside.
func TestUpProbesThroughSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	inEachMode(t, func(t *testing.T, flags []string) {
		m := uptest.Start(t, "testdata/apphealth", flags...)
		st := readState(t, m)
		web := pod(t, st, "web")
		if !web.Ready || web.Sidecar == nil {
			t.Fatalf("web: ready %v, sidecar %v; want a ready meshed pod", web.Ready, web.Sidecar)
		}
		if plain := pod(t, st, "plain"); !plain.Ready {
			t.Errorf("plain (no sidecar, probes as written) is not ready")
		}
		if len(flags) > 0 {
			inbound := sidecarStat(t, web.Sidecar.AdminSocket, "http.inbound.downstream_cx_total") +
				sidecarStat(t, web.Sidecar.AdminSocket, "tcp.downstream_cx_total")
			if inbound != 0 {
				t.Errorf("web's sidecar took %d inbound connections before web was ready: its probes went to the app port", inbound)
			}
		}

		var proxyEnv []string
		for _, c := range web.Containers {
			if c.Sidecar {
				env, err := local.ContainerEnv(&c)
				if err != nil {
					t.Fatal(err)
				}
				proxyEnv = env
			}
		}
		probers := ""
		for _, kv := range proxyEnv {
			if v, ok := strings.CutPrefix(kv, "ISTIO_KUBE_APP_PROBERS="); ok {
				probers = v
			}
		}
		for _, want := range []string{`"/app-health/web/readyz":{"httpGet":{"path":"/healthz","port":9080`, `"/app-health/web/livez":{"tcpSocket":{"port":9080}`, `"/app-health/web/startupz"`} {
			if !strings.Contains(probers, want) {
				t.Errorf("the sidecar's ISTIO_KUBE_APP_PROBERS lacks %s: %s", want, probers)
			}
		}

		// What the kubelet (trellis up) asks the sidecar, asked by hand.
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if web.NetNS != "" {
					return local.DialPod(ctx, web.NetNS, network, addr)
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}}
		defer client.CloseIdleConnections()
		for path, want := range map[string]string{
			"/app-health/web/readyz":   "200",
			"/app-health/web/livez":    "200",
			"/app-health/web/startupz": "200",
			"/app-health/other/readyz": "400",
		} {
			resp, err := client.Get("http://" + net.JoinHostPort(web.IP, "15020") + path)
			if err != nil {
				t.Fatalf("GET %s from the sidecar: %v", path, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := fmt.Sprint(resp.StatusCode); got != want {
				t.Errorf("GET %s from web's sidecar: %s, want %s", path, got, want)
			}
		}
	})
}
