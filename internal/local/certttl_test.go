package local

import (
	"strings"
	"testing"
	"time"
)

// Istio's istiod variables set the control plane's certificate lifetimes
// in local mode; a cap alone lowers the default with it, and what cannot
// be honoured is refused naming the variable.
func TestWorkloadCertTTLs(t *testing.T) {
	for _, tc := range []struct {
		def, max         string
		wantDef, wantMax time.Duration
		err              string
	}{
		{wantDef: 0, wantMax: 0},
		{max: "20s", wantDef: 20 * time.Second, wantMax: 20 * time.Second},
		{max: "48h", wantDef: 24 * time.Hour, wantMax: 48 * time.Hour},
		{def: "1h", max: "2h", wantDef: time.Hour, wantMax: 2 * time.Hour},
		{def: "1h", wantDef: time.Hour},
		{def: "3h", max: "2h", err: "DEFAULT_WORKLOAD_CERT_TTL=3h0m0s is longer than MAX_WORKLOAD_CERT_TTL=2h0m0s"},
		{max: "soon", err: `MAX_WORKLOAD_CERT_TTL="soon": want a positive duration`},
		{def: "-1h", err: `DEFAULT_WORKLOAD_CERT_TTL="-1h": want a positive duration`},
	} {
		t.Setenv(envDefaultCertTTL, tc.def)
		t.Setenv(envMaxCertTTL, tc.max)
		def, maxTTL, err := workloadCertTTLs()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("default %q max %q: error %v, want %q", tc.def, tc.max, err, tc.err)
			}
			continue
		}
		if err != nil || def != tc.wantDef || maxTTL != tc.wantMax {
			t.Errorf("default %q max %q: %s, %s, %v; want %s, %s", tc.def, tc.max, def, maxTTL, err, tc.wantDef, tc.wantMax)
		}
	}
}
