package local_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// tapMesh runs `trellis up dir` whose sidecars are started through a
// wrapper that copies each credential it is handed to tapFile before
// passing it on: the test plays an attacker who got hold of a token, to
// show what a token is worth once the sidecar has used it. The mesh is
// stopped when the test ends.
func tapMesh(t *testing.T, dir string) (stateDir, tapFile string) {
	t.Helper()
	bin := uptest.Binaries(t)
	tapDir := t.TempDir()
	tapFile = filepath.Join(tapDir, "tapped")
	// trellis up looks for trellis-proxy beside its own executable, so
	// a copy of trellis finds the wrapper.
	b, err := os.ReadFile(filepath.Join(bin, "trellis"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tapDir, "trellis"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\ntok=$(cat <&3)\nexec 3<&-\necho \"$tok\" >> %q\nexec %q \"$@\" 3<<EOF\n$tok\nEOF\n", tapFile, filepath.Join(bin, "trellis-proxy"))
	if err := os.WriteFile(filepath.Join(tapDir, "trellis-proxy"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	stateDir, err = os.MkdirTemp("", "tup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })

	cmd := exec.Command(filepath.Join(tapDir, "trellis"), "up", dir, "--state-dir", stateDir)
	var stderr lockedBuf
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var stdout lockedBuf
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			stdout.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "mesh ready") {
				once.Do(func() { close(ready) })
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("trellis up's output:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	})
	select {
	case <-ready:
	case <-done:
		t.Fatalf("trellis up exited before the mesh was ready:\n%s\n%s", stdout.String(), stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("mesh not ready after 2 minutes:\n%s\n%s", stdout.String(), stderr.String())
	}
	return stateDir, tapFile
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tapped(t *testing.T, tapFile string) []string {
	t.Helper()
	b, err := os.ReadFile(tapFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// certSerial is the serial of the certificate a sidecar shows on /certs.
func certSerial(t *testing.T, adminSocket string) (id, serial string) {
	t.Helper()
	var page struct {
		Certificates []struct {
			SPIFFEID     string `json:"spiffe_id"`
			SerialNumber string `json:"serial_number"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(adminGet(t, adminSocket, "/certs")), &page); err != nil || len(page.Certificates) != 1 {
		t.Fatalf("/certs: %v", err)
	}
	return page.Certificates[0].SPIFFEID, page.Certificates[0].SerialNumber
}

// Each start of a sidecar gets a new single-use credential: a copy of it
// taken on its way gets no certificate once the sidecar has used it (a
// replay is refused), it is nowhere in the state dir or any container's
// environment, and when the sidecar process dies the supervisor starts
// it with a new credential that works (the previous one stays refused).
func TestUpCredentialIsSingleUse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	dir := copyDir(t, "testdata/small")
	stateDir, tapFile := tapMesh(t, dir)
	st, err := local.ReadState(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	toks := tapped(t, tapFile)
	if len(toks) != len(st.Pods) {
		t.Fatalf("%d credentials handed out for %d sidecars: %q", len(toks), len(st.Pods), toks)
	}

	root, err := os.ReadFile(filepath.Join(stateDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca := dialCA(t, filepath.Join(stateDir, "xds-tls.sock"), root)
	for _, tok := range toks {
		if _, err := createCert(ca, tok, "spiffe://cluster.local/ns/default/sa/sleep"); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "already spent") {
			t.Errorf("replaying a used credential: %v, want Unauthenticated, already spent", err)
		}
	}

	// Nowhere on disk under the state dir, nor in any container's env.
	filepath.WalkDir(stateDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&os.ModeSocket != 0 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, tok := range toks {
			if strings.Contains(string(b), tok) {
				t.Errorf("%s holds a credential", path)
			}
		}
		return nil
	})
	for _, p := range st.Pods {
		for _, c := range p.Containers {
			env, err := local.ContainerEnv(&c)
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range toks {
				if strings.Contains(strings.Join(env, "\n"), tok) {
					t.Errorf("container %s/%s has a credential in its environment", p.Name, c.Name)
				}
			}
		}
	}

	// The ratings sidecar dies; it comes back with a new certificate got
	// with a new credential.
	var ratings *local.PodState
	for i := range st.Pods {
		if st.Pods[i].Deployment == "ratings" {
			ratings = &st.Pods[i]
		}
	}
	proxy := sidecarContainer(ratings)
	if ratings.Sidecar == nil || proxy == nil || proxy.PID == 0 {
		t.Fatalf("no ratings sidecar with a PID in %+v", st.Pods)
	}
	wantID, oldSerial := certSerial(t, ratings.Sidecar.AdminSocket)
	if err := syscall.Kill(proxy.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the ratings sidecar to restart with a certificate", func() string {
		s, err := local.ReadState(stateDir)
		if err != nil {
			return err.Error()
		}
		p, err := s.FindPod("default", ratings.Name)
		if err != nil {
			return err.Error()
		}
		if c := sidecarContainer(p); c == nil || c.Restarts < 1 || !c.Ready {
			return fmt.Sprintf("sidecar %+v", c)
		}
		return ""
	})
	id, serial := certSerial(t, ratings.Sidecar.AdminSocket)
	if id != wantID || serial == oldSerial {
		t.Errorf("after the restart /certs shows %s serial %s; want %s with a new serial (was %s)", id, serial, wantID, oldSerial)
	}
	now := tapped(t, tapFile)
	if len(now) != len(toks)+1 {
		t.Fatalf("credentials handed out: %d, want %d (one more for the restart)", len(now), len(toks)+1)
	}
	fresh := now[len(now)-1]
	for _, tok := range toks {
		if tok == fresh {
			t.Fatal("the restarted sidecar was given a credential already handed out")
		}
	}
	if _, err := createCert(ca, fresh, wantID); status.Code(err) != codes.Unauthenticated {
		t.Errorf("replaying the restart's credential: %v, want Unauthenticated", err)
	}
}

func sidecarContainer(p *local.PodState) *local.ContainerState {
	if p == nil {
		return nil
	}
	for i := range p.Containers {
		if p.Containers[i].Sidecar {
			return &p.Containers[i]
		}
	}
	return nil
}
