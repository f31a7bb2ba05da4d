package meshtest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/xds"
)

// Mesh is an in-process control plane watching a folder of YAML, with the
// sidecars and backends a test added to it. Everything stops when the test
// ends, and the test fails if any xDS client NACKed.
type Mesh struct {
	t       testing.TB
	dir     string // watched by the control plane
	staging string // where Write prepares files before renaming them into dir
	cpOpts  controlplane.Options
	logs    *LockedBuffer

	mu          sync.Mutex
	cp          *controlplane.ControlPlane
	xdsAddr     string
	stopped     map[*controlplane.ControlPlane]bool
	pastNACKs   int64 // from control planes stopped before the current one
	allowNACKs  string
	pods        map[string]*Pod
	podsInOrder []*Pod
}

// Option adjusts a Mesh before its control plane starts.
type Option func(*settings)

type settings struct {
	cp    []func(*controlplane.Options)
	files [][2]string
}

// WithControlPlane adjusts the control plane's options, e.g. its own
// listener (a unix socket), push timing or rescan period. ConfigPaths is
// the mesh's folder; keep it unless the test watches somewhere else.
func WithControlPlane(f func(*controlplane.Options)) Option {
	return func(s *settings) { s.cp = append(s.cp, f) }
}

// WithFile puts another file into the folder before the control plane
// starts, e.g. routing that the test later replaces with Write while the
// services stay in mesh.yaml.
func WithFile(name, content string) Option {
	return func(s *settings) { s.files = append(s.files, [2]string{name, content}) }
}

// New starts a control plane watching a new folder whose mesh.yaml holds
// config (no file when config is empty). It serves plaintext ADS on a
// free loopback port, pushes 10ms after the last change (at most 50ms)
// and rescans the folder every 200ms.
func New(t testing.TB, config string, opts ...Option) *Mesh {
	t.Helper()
	var s settings
	for _, o := range opts {
		o(&s)
	}
	m := &Mesh{
		t:       t,
		dir:     t.TempDir(),
		staging: t.TempDir(),
		logs:    &LockedBuffer{},
		stopped: map[*controlplane.ControlPlane]bool{},
		pods:    map[string]*Pod{},
	}
	if config != "" {
		m.Write("mesh.yaml", config)
	}
	for _, f := range s.files {
		m.Write(f[0], f[1])
	}
	m.cpOpts = controlplane.Options{
		ConfigPaths: []string{m.dir},
		Log:         slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Debounce:    10 * time.Millisecond,
		MaxDelay:    50 * time.Millisecond,
		Resync:      200 * time.Millisecond,
	}
	for _, f := range s.cp {
		f(&m.cpOpts)
	}
	lis := m.cpOpts.XDSListener
	if lis == nil {
		var err error
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("meshtest: cannot listen for xDS: %v", err)
		}
	}
	// Registered before any sidecar's cleanup, so it runs after all of
	// them: NACKs are counted once every client has gone.
	t.Cleanup(m.cleanup)
	m.StartControlPlane(lis)
	return m
}

// Dir is the folder the control plane watches.
func (m *Mesh) Dir() string { return m.dir }

// ControlPlane is the running control plane (the latest, after a
// restart).
func (m *Mesh) ControlPlane() *controlplane.ControlPlane {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cp
}

// XDSAddr is the address sidecars dial for ADS: the control plane's
// listener's address ("host:port", or a socket path for a unix listener).
func (m *Mesh) XDSAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.xdsAddr
}

// StartControlPlane starts a control plane on lis with the mesh's options,
// in place of the previous one (which must have been stopped with
// StopControlPlane), e.g. to test that sidecars survive a restart.
func (m *Mesh) StartControlPlane(lis net.Listener) {
	m.t.Helper()
	o := m.cpOpts
	o.XDSListener = lis
	cp, err := controlplane.Start(context.Background(), o)
	if err != nil {
		lis.Close()
		m.t.Fatalf("meshtest: starting the control plane: %v", err)
	}
	m.mu.Lock()
	m.cp = cp
	m.xdsAddr = lis.Addr().String()
	m.mu.Unlock()
}

// StopControlPlane stops the running control plane; sidecars keep their
// last config. Its NACKs still count at the end of the test.
func (m *Mesh) StopControlPlane() error {
	m.mu.Lock()
	cp := m.cp
	if m.stopped[cp] {
		m.mu.Unlock()
		return nil
	}
	m.stopped[cp] = true
	m.mu.Unlock()
	err := cp.Stop()
	m.mu.Lock()
	m.pastNACKs += cp.XDS.NACKs()
	m.mu.Unlock()
	return err
}

// Write replaces a file in the watched folder atomically, as an editor
// does, so the control plane never reads half of it. It returns the
// moment just before the file appeared, from which a test can measure
// how long a change takes to reach traffic. The watcher picks the file up
// asynchronously: wait for its effect (Eventually), or WaitSynced once the
// effect is visible in the store.
func (m *Mesh) Write(name, content string) time.Time {
	m.t.Helper()
	tmp := filepath.Join(m.staging, name)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		m.t.Fatal(err)
	}
	dst := filepath.Join(m.dir, name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		m.t.Fatal(err)
	}
	at := time.Now()
	if err := os.Rename(tmp, dst); err != nil {
		m.t.Fatal(err)
	}
	return at
}

// Read returns a file of the watched folder, e.g. to Write it back edited.
func (m *Mesh) Read(name string) string {
	m.t.Helper()
	b, err := os.ReadFile(filepath.Join(m.dir, name))
	if err != nil {
		m.t.Fatal(err)
	}
	return string(b)
}

// Remove deletes a file of the watched folder.
func (m *Mesh) Remove(name string) {
	m.t.Helper()
	if err := os.Remove(filepath.Join(m.dir, name)); err != nil {
		m.t.Fatal(err)
	}
}

// Log is what the control plane has logged so far (debug level, text).
func (m *Mesh) Log() string { return m.logs.String() }

// WaitSynced waits (up to 10s) until every running sidecar of the mesh is
// connected and has ACKed config translated from the store's current
// snapshot. It fails the test on a NACK at once rather
// than waiting out the deadline.
func (m *Mesh) WaitSynced() {
	m.t.Helper()
	Eventually(m.t, 10*time.Second, func() string {
		if err := m.nackError(); err != "" {
			m.t.Fatal(err)
		}
		cp := m.ControlPlane()
		// Proxies are translated from the store's snapshot when they
		// connect and on every push, so a proxy at the store's version
		// has been handed everything the store holds.
		want := cp.Store.Snapshot().Version
		status := map[string]xds.ProxyStatus{}
		for _, st := range cp.XDS.Status() {
			status[st.ID] = st
		}
		for _, p := range m.runningPods() {
			st, ok := status[p.nodeID]
			switch {
			case !ok:
				return fmt.Sprintf("sidecar %s (%s) is not connected", p.Name, p.nodeID)
			case st.Version != want || !st.Synced:
				return fmt.Sprintf("sidecar %s is at version %d (synced %v), want %d", p.Name, st.Version, st.Synced, want)
			}
		}
		return ""
	})
}

// AllowNACKs stops the end of the test from failing on NACKs; reason says
// why this test provokes them.
func (m *Mesh) AllowNACKs(reason string) {
	m.mu.Lock()
	m.allowNACKs = reason
	m.mu.Unlock()
}

// NACKs counts the responses that xDS clients rejected, over every control
// plane this mesh has run.
func (m *Mesh) NACKs() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.pastNACKs
	if !m.stopped[m.cp] {
		n += m.cp.XDS.NACKs()
	}
	return n
}

// CheckNoNACKs fails the test (without stopping it) if any xDS client has
// NACKed, naming the clients and their reasons. The mesh checks this when
// the test ends; call it to check at a point of the test.
func (m *Mesh) CheckNoNACKs() {
	m.t.Helper()
	if err := m.nackError(); err != "" {
		m.t.Error(err)
	}
}

func (m *Mesh) nackError() string {
	n := m.NACKs()
	if n == 0 {
		return ""
	}
	// The control plane logs each NACK with the client, type and reason;
	// the log outlives the client's connection, unlike Status.
	var lines []string
	for line := range strings.SplitSeq(m.logs.String(), "\n") {
		if strings.Contains(line, "NACK") {
			lines = append(lines, line)
		}
	}
	return fmt.Sprintf("xDS clients NACKed %d response(s): the control plane sent config they reject\n%s", n, strings.Join(lines, "\n"))
}

func (m *Mesh) cleanup() {
	m.mu.Lock()
	allowed := m.allowNACKs
	m.mu.Unlock()
	if allowed == "" {
		m.CheckNoNACKs()
	}
	if err := m.StopControlPlane(); err != nil {
		m.t.Errorf("control plane stopped with an error: %v", err)
	}
	if m.t.Failed() {
		m.t.Logf("control plane log:\n%s", m.logs.String())
	}
}

// LockedBuffer collects output written from several goroutines (a
// control plane's log, a child process's stderr).
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
