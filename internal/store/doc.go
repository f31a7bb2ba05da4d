// Package store holds the validated config world: every object from every
// config source, with the rule that bad input never replaces good. When a
// source sends an invalid version of an object, the last good version of
// that object stays in force until a valid one arrives.
//
// A source is one producer's unit of change, named by a string: a config
// file (its path), one pod `trellis up` runs, later an object a
// Kubernetes informer watches. Producers see only the Sink interface.
//
// The store knows nothing about xDS; consumers take immutable Snapshots and
// are told (through a coalescing channel) when a newer one exists.
package store
