package cli

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// `trellis controlplane --monitoring-addr` serves Prometheus metrics at
// /metrics there, istiod's names among them.
func TestControlPlaneMonitoringAddr(t *testing.T) {
	mon := freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Execute(ctx, []string{"controlplane", "--config", t.TempDir(), "--xds-address", freeLoopbackAddr(t),
			"--secure-xds-address", "", "--ca-dir", "", "--monitoring-addr", mon, "--log-level", "error"}, &bytes.Buffer{}, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	var resp *http.Response
	for {
		var err error
		if resp, err = http.Get("http://" + mon + "/metrics"); err == nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("controlplane exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics on %s within 10s: %v", mon, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	for _, name := range []string{"pilot_xds", "pilot_services", "citadel_server_root_cert_expiry_timestamp", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if got := fams["pilot_xds"].GetMetric(); len(got) != 1 || got[0].GetGauge().GetValue() != 0 {
		t.Errorf("pilot_xds with no proxies = %v, want one series at 0", got)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
