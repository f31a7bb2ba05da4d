// Package needs is how a test says the machine lacks a prerequisite (root,
// a network namespace, a kernel feature, a tool such as nft or h2spec).
// On a developer's machine the test skips. In CI (CI=true) it fails
// instead: .ci/run installs everything the suite needs, so a missing
// prerequisite there is a broken pipeline, and a green run must mean every
// test really ran.
package needs
