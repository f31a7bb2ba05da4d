package controlplane

import (
	"context"
	"log/slog"
	"slices"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/inforce"
	"github.com/trellismesh/trellis/internal/store"
)

// UnenforcedMessage is the log message of a security policy that is in
// the config and not enforced. A policy that looks like protection and is
// not must be impossible to miss, so it is logged at Error level when the
// control plane starts and again after every config change, not once.
const UnenforcedMessage = "SECURITY POLICY NOT ENFORCED"

// reportUnenforced logs every security policy that is not enforced, at
// start and whenever the config changes. Changes to Pods (which `trellis
// up` feeds in as its processes come and go) are not config changes.
func reportUnenforced(ctx context.Context, st *store.Store, log *slog.Logger) {
	changes, stop := st.Subscribe()
	defer stop()
	var last []*config.Object
	report := func() {
		snap := st.Snapshot()
		if cfg := configObjects(snap); !slices.Equal(cfg, last) {
			last = cfg
			for _, u := range unenforced(snap) {
				log.Error(UnenforcedMessage, "policy", u.id, "file", u.file, "finding", u.finding)
			}
		}
	}
	eachChange(ctx, changes, report)
}

type unenforcedPolicy struct{ id, file, finding string }

// unenforced lists the security findings of the config, in snapshot order.
func unenforced(snap *store.Snapshot) []unenforcedPolicy {
	var out []unenforcedPolicy
	for _, o := range snap.Objects {
		for _, f := range o.NotInForce {
			if f.Security() {
				out = append(out, unenforcedPolicy{id: o.ID(), file: o.Source.String(), finding: "[" + inforce.Code + "] " + f.String()})
			}
		}
	}
	return out
}

// configObjects lists the snapshot's config objects: a config
// change adds, removes or replaces one (every applied file decodes new
// objects), while Pods, which `trellis up` publishes as its processes come
// and go, are left out.
func configObjects(snap *store.Snapshot) []*config.Object {
	var buf []*config.Object
	for _, o := range snap.Objects {
		if o.GroupKind != config.Pod {
			buf = append(buf, o)
		}
	}
	return buf
}
