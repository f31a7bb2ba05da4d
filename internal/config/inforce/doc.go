// Package inforce is the one table of what the mesh enforces: for every
// field of every kind Trellis accepts, whether it is in force, partly in
// force (and what is missing), or not in force (and what happens instead).
//
// For a mesh the config is the product: a policy that is accepted and not
// enforced is worse than one that is refused. So the table drives three
// things, and nothing else may claim what is in force:
//
//   - Check reports every field an object uses that is not (fully) in
//     force; `trellis validate`, `trellis up` and the control plane print
//     those findings as TRL0007 warnings.
//   - A test walks every field of every accepted kind (the protobuf
//     descriptors of the Istio kinds, the Go types of the others) and fails
//     when one is missing from the table, so a new field or kind is never
//     accepted in silence.
//   - docs/config.md's support matrix is generated from the table (Markdown).
//
// Paths are patterns: `spec.http[].retries` names the retries of every
// http route; `[]` stands for any list index and `{}` for any map key.
package inforce
