package local_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// `trellis up` serves the control plane's metrics on a Unix socket in
// its state dir: parseable Prometheus text with the mesh's two sidecars
// connected and their certificates counted.
func TestUpServesControlPlaneMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	m := uptest.Start(t, copyDir(t, "testdata/small"))
	sock := filepath.Join(m.StateDir, local.MonitoringSocketName)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer c.CloseIdleConnections()
	eventually(t, 10*time.Second, "two proxies and two certificates in the control plane's metrics", func() string {
		resp, err := c.Get("http://controlplane/metrics")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
		if err != nil {
			return "parsing: " + err.Error()
		}
		value := func(name string) float64 {
			f := fams[name]
			if f == nil || len(f.GetMetric()) != 1 {
				return -1
			}
			mt := f.GetMetric()[0]
			if mt.GetGauge() != nil {
				return mt.GetGauge().GetValue()
			}
			return mt.GetCounter().GetValue()
		}
		if got := value("pilot_xds"); got != 2 {
			return "pilot_xds = " + ftoa(got)
		}
		if got := value("citadel_server_success_cert_issuance_count"); got != 2 {
			return "citadel_server_success_cert_issuance_count = " + ftoa(got)
		}
		return ""
	})
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
