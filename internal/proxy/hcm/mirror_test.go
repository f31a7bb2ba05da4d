package hcm

import (
	"testing"
	"time"
)

// shadowHost is Envoy's: "-shadow" after the host, before any port, an
// IPv6 literal's brackets included.
func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"app":                  "app-shadow",
		"app:8080":             "app-shadow:8080",
		"app.default.svc:9080": "app.default.svc-shadow:9080",
		"10.0.0.1:80":          "10.0.0.1-shadow:80",
		"[fd00::1]:80":         "[fd00::1]-shadow:80",
		"[fd00::1]":            "[fd00::1]-shadow",
		"fd00::1":              "fd00::1-shadow",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// A server's copies are bounded, and its stop ends those in flight (their
// calls see the context end) and takes no more.
func TestMirrorsBoundedAndStopped(t *testing.T) {
	var m mirrors
	for i := range maxMirrorsInFlight {
		if !m.start() {
			t.Fatalf("copy %d refused under the bound", i)
		}
	}
	if m.start() {
		t.Fatalf("copy %d taken past the bound", maxMirrorsInFlight+1)
	}
	m.done()
	if !m.start() {
		t.Fatal("a freed place was not taken")
	}
	ctx := m.ctx
	for range maxMirrorsInFlight {
		go func() {
			<-ctx.Done() // a call in flight, ended by its context
			m.done()
		}()
	}
	stopped := make(chan struct{})
	go func() {
		m.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not end the copies in flight")
	}
	if m.start() {
		t.Error("a copy was taken after stop")
	}
}
