// Package field builds the path-rooted error messages that every config
// check reports, e.g. `spec.http[1].route[0].weight: must be >= 0`.
//
// It is deliberately tiny and dependency-free so that validators, decoders
// and analyzers can all share one error shape.
package field
