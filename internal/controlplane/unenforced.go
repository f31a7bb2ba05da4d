package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

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
	var last string
	report := func() {
		snap := st.Snapshot()
		if sig := configSignature(snap); sig != last {
			last = sig
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

// configSignature changes whenever a config object is added, removed or
// replaced (every applied file decodes new objects), and not when only Pods
// change.
func configSignature(snap *store.Snapshot) string {
	var b strings.Builder
	for _, o := range snap.Objects {
		if o.GroupKind == config.Pod {
			continue
		}
		fmt.Fprintf(&b, "%p;", o)
	}
	return b.String()
}
