package analyze

import (
	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/translate"
)

// policyNotServed is TRL0009: an Error, as TRL0008 is for routes, since
// the rule does not do what it says; the service itself keeps working.
var policyNotServed = kind{translate.PolicyNotServedCode, "DestinationRulePolicyNotServed", Error}

// destinationRulePoliciesServed reports DestinationRule traffic policies
// the sidecar would refuse for some cluster (TRL0009), which the
// translator then leaves out of that cluster. As for TRL0008, the
// translator decides, so the analyzer asks it.
func destinationRulePoliciesServed(w *world) []Message {
	if len(w.byKind[config.DestinationRule]) == 0 {
		return nil
	}
	var msgs []Message
	for _, p := range translate.PolicyProblems(w.translation()) {
		msgs = append(msgs, policyNotServed.msg(p.Object, p.Path, "%s", p.Detail))
	}
	return msgs
}
