package identity

import (
	"context"
	"fmt"
	"time"
)

// Istio's self-signed root rotator defaults
// (CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL and
// CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE): look once an
// hour, and rotate once a fifth of the root's life is left.
const (
	DefaultRootCheckInterval  = time.Hour
	DefaultRootGracePeriodPct = 20
)

// RootDue reports whether the self-signed root has less than gracePct
// percent of its life left at now. A plug-in CA is never due: its owner
// replaces its files.
func (ca *CA) RootDue(now time.Time, gracePct int) bool {
	if ca.opts.PluginDir != "" {
		return false
	}
	root := ca.Root()
	life := root.NotAfter.Sub(root.NotBefore)
	grace := time.Duration(float64(life) * float64(gracePct) / 100)
	return root.NotAfter.Sub(now) < grace
}

// RotateRootIfDue rotates the self-signed root when RootDue says so; the
// old root stays in the trust bundle (see Rotate) until it expires.
func (ca *CA) RotateRootIfDue(gracePct int) (bool, error) {
	if !ca.RootDue(time.Now(), gracePct) {
		return false, nil
	}
	old := ca.Root()
	if err := ca.Rotate(); err != nil {
		return false, err
	}
	ca.log.Info("CA rotated its self-signed root: it was within its grace period", "old root expires", old.NotAfter, "grace period percent", gracePct, "new root expires", ca.Root().NotAfter)
	return true, nil
}

// RunRootRotator checks the self-signed root every interval until ctx
// ends, rotating it within its grace period, so a long-running mesh never
// has its root expire. A failed rotation is logged at Error level and
// tried again at the next check.
func (ca *CA) RunRootRotator(ctx context.Context, interval time.Duration, gracePct int) error {
	if interval <= 0 {
		return fmt.Errorf("CA: the root check interval must be positive, not %s", interval)
	}
	if gracePct <= 0 || gracePct >= 100 {
		return fmt.Errorf("CA: the root grace period must be between 1 and 99 percent of its life, not %d", gracePct)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// At once too: a root already within its grace period (the
		// control plane was down for a long time) is rotated at start.
		if _, err := ca.RotateRootIfDue(gracePct); err != nil {
			ca.log.Error("CA cannot rotate its self-signed root; it keeps signing with the old one and tries again at the next check", "expires", ca.Root().NotAfter, "next check", interval, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
