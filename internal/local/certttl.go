package local

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/identity"
)

// Istio's istiod settings for workload certificate lifetimes, which local
// mode takes from its environment as it takes CITADEL_SELF_SIGNED_*: the
// lifetime given when a proxy asks for none, and the cap on what a proxy
// may ask (a proxy asks for a day; a shorter cap makes every sidecar
// renew sooner, e.g. to watch a CA rotation happen).
const (
	envDefaultCertTTL = "DEFAULT_WORKLOAD_CERT_TTL"
	envMaxCertTTL     = "MAX_WORKLOAD_CERT_TTL"
)

// workloadCertTTLs are the control plane's CertTTL and MaxCertTTL from
// Istio's variables; zero leaves the control plane's default. A cap
// shorter than the default lifetime lowers the default with it, as
// istiod's signing never exceeds its cap.
func workloadCertTTLs() (def, maxTTL time.Duration, err error) {
	if def, err = envTTL(envDefaultCertTTL); err != nil {
		return 0, 0, err
	}
	if maxTTL, err = envTTL(envMaxCertTTL); err != nil {
		return 0, 0, err
	}
	if maxTTL > 0 && def == 0 {
		def = min(identity.DefaultTTL, maxTTL)
	}
	if maxTTL > 0 && def > maxTTL {
		return 0, 0, fmt.Errorf("%s=%s is longer than %s=%s: lower the first or raise the second", envDefaultCertTTL, def, envMaxCertTTL, maxTTL)
	}
	return def, maxTTL, nil
}

func envTTL(name string) (time.Duration, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 24h", name, v)
	}
	return d, nil
}
