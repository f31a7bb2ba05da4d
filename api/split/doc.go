// Package split holds Trellis's own types for SMI TrafficSplit
// (split.smi-spec.io v1alpha1 to v1alpha4). smi-sdk-go is archived and
// breaks `go mod tidy`, so the wire shapes are written out here.
//
// Every version decodes into one canonical TrafficSplit whose backend
// weights are relative milli-units: v1alpha1 weights are Kubernetes
// quantities ("900m" is 900, "1" is 1000); later versions use plain integers
// (5 is 5000). Only the ratios matter.
package split
