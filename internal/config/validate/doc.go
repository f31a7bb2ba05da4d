// Package validate holds the per-object checks for the Istio kinds and
// MeshConfig (subpackage kubeapi has the Kubernetes-style APIs). Each
// function looks at one typed object and returns every problem it finds
// with its field path; nothing here looks at other objects (that is the
// analyzer's job) and nothing here does I/O.
package validate
