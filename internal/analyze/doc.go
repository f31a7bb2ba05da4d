// Package analyze finds problems that only show when objects are looked at
// together (a route to a subset no DestinationRule defines, two routing
// configs for one host, ...). Findings are messages with stable codes and
// severities modelled on Istio's analyzers (IST0101 and friends), so users
// can search for them. docs/analyzers.md lists every code.
//
// Analysis never rejects an object on its own: where objects arrive one at a
// time (admission, live edits) findings are only reported, because apply
// order must not matter. `trellis validate` fails on Error-level findings
// because it sees everything at once.
package analyze
