package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/identity"
)

// Root rotation runs by itself, as in Istio: a self-signed root is
// checked periodically and rotated within its grace period (the old root
// staying in the trust bundle until it expires), and a plug-in CA's files
// are watched and reloaded when they are replaced. Either way the bundle
// is written to Options.RootCertFile before anything is signed under it.

// Istio's environment variables for its self-signed root rotator, read
// when the options leave the setting at zero (so local mode, which sets
// none, takes them too).
const (
	envRootTTL           = "CITADEL_SELF_SIGNED_CA_CERT_TTL"
	envRootCheckInterval = "CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL"
	envRootGracePercent  = "CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE"
)

// rotation is the rotator's settings, resolved.
type rotation struct {
	rootTTL       time.Duration
	checkInterval time.Duration // <= 0: no rotator
	gracePct      int
}

// rotationFromEnv resolves the options against Istio's environment
// variables and defaults.
func rotationFromEnv(opts Options) (rotation, error) {
	r := rotation{rootTTL: opts.RootTTL, checkInterval: opts.RootCheckInterval, gracePct: opts.RootGracePeriodPercent}
	if r.rootTTL == 0 {
		d, err := envDuration(envRootTTL, identity.RootTTL)
		if err != nil {
			return r, err
		}
		r.rootTTL = d
	}
	if r.rootTTL <= 0 {
		return r, fmt.Errorf("the self-signed root's lifetime must be positive, not %s", r.rootTTL)
	}
	if r.checkInterval == 0 {
		d, err := envDuration(envRootCheckInterval, identity.DefaultRootCheckInterval)
		if err != nil {
			return r, err
		}
		// Istio: zero or negative turns the check off.
		r.checkInterval = cmpNonZero(d, -1)
	}
	if r.gracePct == 0 {
		s := strings.TrimSuffix(strings.TrimSpace(os.Getenv(envRootGracePercent)), "%")
		r.gracePct = identity.DefaultRootGracePeriodPct
		if s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return r, fmt.Errorf("%s=%q: want a whole percentage such as 20", envRootGracePercent, os.Getenv(envRootGracePercent))
			}
			r.gracePct = n
		}
	}
	if r.gracePct <= 0 || r.gracePct >= 100 {
		return r, fmt.Errorf("the self-signed root's grace period must be between 1 and 99 percent of its life, not %d", r.gracePct)
	}
	return r, nil
}

func cmpNonZero(d, instead time.Duration) time.Duration {
	if d == 0 {
		return instead
	}
	return d
}

// envDuration is the Go duration in the environment variable name, or def
// when it is unset.
func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want a duration such as 87600h: %w", name, v, err)
	}
	return d, nil
}

// runRotation keeps the CA's root current until ctx ends: the plug-in
// CA's files watched, or the self-signed root rotated within its grace
// period.
func runRotation(ctx context.Context, ca *identity.CA, opts Options, r rotation, log *slog.Logger) error {
	if opts.PluginCADir != "" {
		interval := opts.PluginCACheckInterval
		if interval <= 0 {
			interval = identity.DefaultPluginCheckInterval
		}
		return ca.WatchPlugin(ctx, interval)
	}
	if r.checkInterval <= 0 {
		log.Info("the self-signed root rotator is off; rotate the root before it expires", "expires", ca.Root().NotAfter)
		return nil
	}
	return ca.RunRootRotator(ctx, r.checkInterval, r.gracePct)
}

// writeBundle replaces path with the trust bundle, mode 0600, whole: a
// proxy re-reading it at a handshake never sees half of it.
func writeBundle(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("cannot write the trust bundle to %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("cannot write the trust bundle to %s: %w", path, err)
	}
	return nil
}
