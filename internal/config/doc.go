// Package config reads the user's mesh configuration (Kubernetes manifests,
// Istio, SMI and Gateway API objects) from YAML/JSON files into typed,
// validated objects.
//
// Every problem is reported with the file, the document, the object and the
// field path, e.g.
//
//	reviews.yaml#2 VirtualService default/reviews: spec.http[1].route[0].weight: must be >= 0
//
// Decoding is strict: the upstream Go types silently accept unknown fields,
// so every document is first walked against its schema (protobuf
// descriptors for Istio kinds, Go struct json tags for the rest) and unknown
// fields, wrong types and unknown enum values are rejected with their paths.
// A rejected value is then treated as unset, so the per-kind checks still
// run and one pass reports every error of an object.
//
// Every valid object is also checked against the in-force table (package
// inforce): the fields it uses that the mesh does not enforce yet become
// the File's TRL0007 warnings and the Object's NotInForce list.
package config
