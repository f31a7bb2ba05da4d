// Package uptest runs `trellis up` as users do, from real binaries, for
// end-to-end tests: it builds trellis and trellis-proxy once per test
// binary, starts a mesh on a folder with its own state dir, waits for
// "mesh ready", and runs other trellis commands against it.
package uptest
