package controlplane_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/xds"
)

// /debug/syncz on the monitoring port: a real sidecar is SYNCED for every
// type; a client that NACKed CDS is STALE with its error there and NOT
// SENT for the types it never asked for.
func TestSyncz(t *testing.T) {
	mon, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := meshtest.New(t, metricsMesh, meshtest.WithControlPlane(func(o *controlplane.Options) { o.MonitoringListener = mon }))
	url := "http://" + mon.Addr().String() + controlplane.SynczPath
	m.Sidecar("sleep", "127.91.17.2", map[string]string{"app": "sleep"})
	m.WaitSynced()

	m.AllowNACKs("this test sends one to see it in /debug/syncz")
	node := "sidecar~127.91.17.3~nacker.default~default.svc.cluster.local"
	meshtest.NACKClusters(t, m.XDSAddr(), node)

	meshtest.Eventually(t, 5*time.Second, func() string {
		sz, err := getSyncz(url)
		if err != nil {
			return err.Error()
		}
		host, _ := os.Hostname()
		if !strings.HasPrefix(sz.ControlPlane, host+"-") {
			return fmt.Sprintf("controlPlane = %q, want the hostname %q and a pid", sz.ControlPlane, host)
		}
		if len(sz.Proxies) != 2 {
			return fmt.Sprintf("%d proxies, want 2: %+v", len(sz.Proxies), sz.Proxies)
		}
		var sidecar, nacker *xds.ProxySync
		for i, p := range sz.Proxies {
			switch {
			case p.Node == node:
				nacker = &sz.Proxies[i]
			case strings.Contains(p.Node, "127.91.17.2"):
				sidecar = &sz.Proxies[i]
			}
		}
		if sidecar == nil || nacker == nil {
			return fmt.Sprintf("sidecar or nacker missing: %+v", sz.Proxies)
		}
		for typ, ts := range map[string]xds.TypeSync{"CDS": sidecar.CDS, "LDS": sidecar.LDS, "EDS": sidecar.EDS, "RDS": sidecar.RDS} {
			if ts.State != xds.Synced || ts.Sent == "" || ts.Acked != ts.Sent {
				return fmt.Sprintf("sidecar %s = %+v, want SYNCED with acked == sent", typ, ts)
			}
		}
		if sidecar.Namespace != "default" || sidecar.Version == 0 {
			return fmt.Sprintf("sidecar namespace %q version %d, want default and a store version", sidecar.Namespace, sidecar.Version)
		}
		if nacker.CDS.State != xds.Stale || nacker.CDS.NACK != "cannot use this cluster" {
			return fmt.Sprintf("nacker CDS = %+v, want STALE with the NACK's message", nacker.CDS)
		}
		if nacker.LDS.State != xds.NotSent || nacker.EDS.State != xds.NotSent || nacker.RDS.State != xds.NotSent {
			return fmt.Sprintf("nacker LDS/EDS/RDS = %s/%s/%s, want NOT SENT", nacker.LDS.State, nacker.EDS.State, nacker.RDS.State)
		}
		return ""
	})
}

func getSyncz(url string) (*controlplane.Syncz, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var sz controlplane.Syncz
	if err := json.NewDecoder(resp.Body).Decode(&sz); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", url, err)
	}
	return &sz, nil
}
