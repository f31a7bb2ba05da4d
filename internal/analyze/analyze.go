package analyze

import (
	"fmt"
	"sort"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/field"
)

// Severity of a finding.
type Severity int

// Severities, as Istio's analyzers use them.
const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "Info"
	case Warning:
		return "Warning"
	}
	return "Error"
}

// Message is one finding about one object.
type Message struct {
	Code     string // stable, e.g. "IST0101"
	Name     string // e.g. "ReferencedResourceNotFound"
	Severity Severity
	Object   *config.Object
	Path     string // field path inside Object, e.g. spec.http[0].route[0].destination.subset; may be empty
	Detail   string
}

// String renders the message the way `trellis validate` prints it:
//
//	Error [IST0101] (VirtualService default/reviews reviews.yaml#1) spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v3"
func (m Message) String() string {
	loc := m.Object.ID() + " " + m.Object.Source.String()
	s := m.Severity.String() + " [" + m.Code + "] (" + loc + ") "
	if m.Path != "" {
		s += m.Path + ": "
	}
	return s + m.Detail
}

// Run analyses objects together and returns findings sorted by severity
// (errors first), then by file, document and code.
func Run(objs []*config.Object) []Message {
	w, dups := newWorld(objs)
	msgs := dups
	for _, a := range analyzers {
		msgs = append(msgs, a(w)...)
	}
	sort.SliceStable(msgs, func(i, j int) bool { return less(msgs[i], msgs[j]) })
	return msgs
}

// analyzers run in this order; the final sort makes the order invisible.
var analyzers = []func(*world) []Message{
	virtualServiceDestinations,
	virtualServiceGateways,
	virtualServiceRoutesServed,
	destinationRulePoliciesServed,
	meshGatewayHostConflicts,
	routingConfigConflicts,
	destinationRules,
	servicePortNames,
	sidecars,
	policySelectors,
	authorizationPolicies,
	authorizationEdgeCases,
	peerAuthenticationConflicts,
	trafficSplits,
	gatewayRoutes,
}

func less(a, b Message) bool {
	if a.Severity != b.Severity {
		return a.Severity > b.Severity
	}
	sa, sb := a.Object.Source, b.Object.Source
	if sa.File != sb.File {
		return sa.File < sb.File
	}
	if sa.Doc != sb.Doc {
		return sa.Doc < sb.Doc
	}
	if sa.Item != sb.Item {
		return sa.Item < sb.Item
	}
	if a.Code != b.Code {
		return a.Code < b.Code
	}
	if a.Path != b.Path {
		return field.Less(a.Path, b.Path)
	}
	return a.Detail < b.Detail
}

// kind is one entry of the message catalogue (docs/analyzers.md).
type kind struct {
	code, name string
	severity   Severity
}

// The catalogue. Istio's codes keep Istio's meaning (users search for
// them); where Trellis grades a finding differently the reason is here and
// in docs/analyzers.md.
var (
	referencedResourceNotFound = kind{"IST0101", "ReferencedResourceNotFound", Error}
	// Istio says Error. Trellis grades every "two routing configs for one
	// host" finding a Warning: the host is still routed, by one of them.
	conflictingMeshGatewayHosts      = kind{"IST0109", "ConflictingMeshGatewayVirtualServiceHosts", Warning}
	conflictingSidecarSelectors      = kind{"IST0110", "ConflictingSidecarWorkloadSelectors", Error}
	multipleSidecarsWithoutSelector  = kind{"IST0111", "MultipleSidecarsWithoutWorkloadSelectors", Error}
	portNameNotUnderNamingConvention = kind{"IST0118", "PortNameIsNotUnderNamingConvention", Info}
	noMatchingWorkloadsFound         = kind{"IST0127", "NoMatchingWorkloadsFound", Warning}
	virtualServiceHostNotFoundInGW   = kind{"IST0132", "VirtualServiceHostNotFoundInGateway", Warning}
	// Istio says Error. A rule may be applied before the Deployment it
	// names; `trellis validate` must not fail on that order.
	destinationRuleSubsetNotSelectPod = kind{"IST0173", "DestinationRuleSubsetNotSelectPods", Warning}
	unknownDestinationRuleHost        = kind{"IST0174", "UnknownDestinationRuleHost", Warning}

	multipleRoutingConfigs        = kind{"TRL0001", "MultipleRoutingConfigsForHost", Warning}
	principalServiceAccountAbsent = kind{"TRL0002", "PrincipalServiceAccountNotFound", Warning}
	conflictingSubsets            = kind{"TRL0003", "ConflictingDestinationRuleSubsets", Warning}
	multiplePeerAuthentications   = kind{"TRL0004", "MultiplePeerAuthenticationsWithoutSelector", Error}
	duplicateObject               = kind{"TRL0005", "DuplicateObject", Error}
	// A split's backends are often created after the split (canary
	// rollouts): a Warning, so that apply order never fails validation.
	trafficSplitBackendAbsent = kind{"TRL0006", "TrafficSplitBackendNotFound", Warning}
	// A delegate route outside its root's match is a Warning instead: one
	// delegate shared by roots with different matches has such routes.
	routeNotServed = kind{"TRL0008", "VirtualServiceRouteNotServed", Error}
)

func (k kind) msg(o *config.Object, path, format string, args ...any) Message {
	return Message{Code: k.code, Name: k.name, Severity: k.severity, Object: o, Path: path, Detail: fmt.Sprintf(format, args...)}
}

// notFound is IST0101 with Istio's wording, so its messages read the same.
func notFound(o *config.Object, path, reftype, refval string) Message {
	return referencedResourceNotFound.msg(o, path, "Referenced %s not found: %q", reftype, refval)
}
