// Package analyze finds problems that only show when objects are looked at
// together (a route to a subset no DestinationRule defines, two routing
// configs for one host, ...). Findings are messages with stable codes and
// severities modelled on Istio's analyzers (IST0101 and friends), so users
// can search for them.
//
// Analysis never rejects an object on its own: where objects arrive one at a
// time (admission, live edits) findings are only reported, because apply
// order must not matter. `trellis validate` fails on Error-level findings
// because it sees everything at once.
package analyze

import "github.com/trellismesh/trellis/internal/config"

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
// (errors first), then by file and document.
func Run(objs []*config.Object) []Message {
	return nil
}
