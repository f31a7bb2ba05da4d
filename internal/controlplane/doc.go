// Package controlplane assembles the control plane: a config source
// (folder watch) feeding the store, and the xDS server serving it. It is
// the one composition root shared by `trellis controlplane`, `trellis up`
// (in-process) and tests.
package controlplane
