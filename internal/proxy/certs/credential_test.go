package certs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/fakeca"
)

// credentialPipe returns the descriptor of a pipe's read end holding
// data, its write end closed, as trellis up hands it to a sidecar.
func credentialPipe(t *testing.T, data string) uintptr {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString(data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fd, err := syscall.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	return uintptr(fd)
}

func isOpen(fd uintptr) bool {
	_, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFD, 0)
	return errno == 0
}

// The token is read whole from the descriptor, which is closed after;
// what no credential is (empty, two tokens, unbounded) is refused with
// what to do.
func TestReadCredentialFD(t *testing.T) {
	fd := credentialPipe(t, "tok-sleep\n")
	tok, err := ReadCredentialFD(fd)
	if err != nil || tok != "tok-sleep" {
		t.Fatalf("got %q, %v; want tok-sleep", tok, err)
	}
	if isOpen(fd) {
		t.Error("the descriptor is still open after reading the credential")
	}

	for _, tc := range []struct{ name, data, want string }{
		{"empty", "\n", "empty"},
		{"two tokens", "a b", "more than one token"},
		{"too long", strings.Repeat("x", maxCredential+1), "more than 4096 bytes"},
	} {
		fd := credentialPipe(t, tc.data)
		if _, err := ReadCredentialFD(fd); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
		if isOpen(fd) {
			t.Errorf("%s: the descriptor is still open", tc.name)
		}
	}

	// A descriptor the process does not have.
	if _, err := ReadCredentialFD(1000); err == nil || !strings.Contains(err.Error(), "not open") {
		t.Errorf("fd 1000: %v, want an error saying it is not open", err)
	}
}

func oneShotManager(t *testing.T, ca *fakeca.Server, token string) *Manager {
	t.Helper()
	m, err := NewManager(ManagerOptions{
		CA: ca.Addr, RootCertFile: ca.RootFile, Credential: token, SPIFFEID: sleepID, TTL: time.Hour,
		RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// An in-memory credential is presented for the first certificate only:
// the renewal presents the certificate and no token.
func TestManagerInMemoryCredentialUsedOnce(t *testing.T) {
	ca := fakeca.Start(t, certtest.NewCA(t).Intermediate(t))
	ca.Allow("tok-sleep", sleepID)
	m := oneShotManager(t, ca, "tok-sleep")
	for range 2 {
		if err := m.Issue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	reqs := ca.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if reqs[0].Token != "tok-sleep" {
		t.Errorf("first request presented token %q, want tok-sleep", reqs[0].Token)
	}
	if reqs[1].Token != "" || reqs[1].ClientCertID != sleepID {
		t.Errorf("renewal presented token %q and certificate %q; want no token, the certificate of %s", reqs[1].Token, reqs[1].ClientCertID, sleepID)
	}

	if _, err := NewManager(ManagerOptions{CA: ca.Addr, RootCertFile: ca.RootFile, Credential: "a", CredentialFile: "b"}); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("credential and credential file: %v", err)
	}
}

// A single-use credential the CA refuses (spent on an answer that never
// arrived, or revoked) ends Run with ErrCredentialSpent at once, so the
// proxy exits and is started again with a new one; with a credential
// file, which may be rewritten, Run keeps retrying.
func TestManagerSpentCredentialEndsRun(t *testing.T) {
	ca := fakeca.Start(t, nil)
	m := oneShotManager(t, ca, "tok-spent")
	errc := make(chan error, 1)
	go func() { errc <- m.Run(context.Background()) }()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrCredentialSpent) || !strings.Contains(err.Error(), "Unauthenticated") {
			t.Fatalf("Run: %v, want ErrCredentialSpent saying the CA refused it", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still retrying a refused single-use credential after 10s")
	}

	// A CA that cannot be reached is not a refusal: keep trying.
	down := oneShotManager(t, ca, "tok-spent")
	down.target.Address = "/nonexistent/ca.sock"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := down.Run(ctx); err != nil {
		t.Errorf("CA unreachable: Run returned %v, want it retrying until stopped", err)
	}

	fm, _ := newManager(t, ca, "tok-wrong", ManagerOptions{RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := fm.Run(ctx); err != nil {
		t.Errorf("credential file: Run returned %v, want it retrying until stopped", err)
	}
	if n := len(ca.Requests()); n < 3 {
		t.Errorf("%d requests, want the credential file's manager retrying", n)
	}
}

// A proxy started with a single-use credential whose certificate expired
// while renewals failed has nothing left to authenticate with: spent says
// so (Run then returns it), where a credential file could still serve.
func TestManagerExpiredCertificateWithSpentCredential(t *testing.T) {
	ca := fakeca.Start(t, nil)
	ca.Allow("tok-sleep", sleepID)
	m, err := NewManager(ManagerOptions{CA: ca.Addr, RootCertFile: ca.RootFile, Credential: "tok-sleep", TTL: time.Second, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Issue(context.Background()); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("renewal failed")
	if err := m.spent(failed); err != nil {
		t.Fatalf("a valid certificate: %v, want nil (retry)", err)
	}
	c, _ := m.Certificate()
	time.Sleep(time.Until(c.Leaf.NotAfter) + 10*time.Millisecond) // waiting for the clock itself
	if err := m.spent(failed); !errors.Is(err, ErrCredentialSpent) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired certificate: %v, want ErrCredentialSpent saying it expired", err)
	}
	fm, _ := newManager(t, ca, "tok-sleep", ManagerOptions{TTL: time.Second})
	if err := fm.Issue(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, _ = fm.Certificate()
	time.Sleep(time.Until(c.Leaf.NotAfter) + 10*time.Millisecond)
	if err := fm.spent(failed); err != nil {
		t.Errorf("credential file, expired certificate: %v, want nil (the file may be rewritten)", err)
	}
}
