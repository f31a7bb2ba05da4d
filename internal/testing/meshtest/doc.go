// Package meshtest is the one harness for end-to-end tests of the mesh:
// an in-process control plane watching a temporary folder of YAML, real
// sidecars in explicit mode on loopback pod IPs, and backends (HTTP apps)
// on those IPs that answer with their name and what they saw.
//
// A test reads as a scenario:
//
//	m := meshtest.New(t, config)                  // control plane on mesh.yaml
//	m.Backend("127.77.1.2:9080", "v1", nil)       // the app behind reviews-v1
//	m.Sidecar("reviews-v1", "127.77.1.2", labels) // its sidecar, ready
//	client := m.Sidecar("sleep", "127.77.1.1", nil)
//	m.WaitSynced()
//	resp, body := meshtest.Get(t, client.Client(), "http://reviews:9080/", nil)
//
// Every test uses its own 127.x.y.0/24, so tests in parallel never share a
// port. The control plane debounces pushes for 10ms (at most 50ms) and
// rescans the folder every 200ms, so edits (Mesh.Write) reach sidecars
// quickly; tests still wait on outcomes (Eventually), never sleep.
//
// Sidecars get identities from the mesh CA as trellis-proxy does: with
// WithCA the control plane serves its secure port, Mesh.Identity gets a
// certificate for a namespace and service account (renewed at half life
// by a certs.Manager), and Mesh.WithIdentity gives it to a sidecar, which
// then tunnels to other sidecars in mTLS and speaks xDS over mTLS.
// Mesh.PublishRoots distributes the trust bundle after a root rotation.
//
// Any NACK fails the test when it ends: a configuration that a sidecar (or
// another xDS client of the mesh) rejected is a translation bug even when
// the traffic the test sends happens to work. A test that means to provoke
// one says so with Mesh.AllowNACKs.
//
// The control plane's log is kept and printed when the test fails;
// TRELLIS_TEST_LOG=1 also streams the sidecars' debug logs to stderr.
//
// grpc-go's internal/testutils/xds/e2e is the model: one management-server
// harness that every end-to-end test uses, so that a test says only what
// it sets up, what it sends and what must come back.
package meshtest
