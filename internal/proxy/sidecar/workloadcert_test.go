package sidecar_test

import (
	"context"
	"crypto/ecdsa"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/fakeca"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// A sidecar with a CA-issued identity shows it on /certs, and its private
// key appears on no admin page and in no log line.
func TestWorkloadKeyNeverLeaves(t *testing.T) {
	leak.Check(t)
	id := certtest.SPIFFE("default", "sleep")
	ca := fakeca.Start(t, nil)
	ca.Allow("tok-sleep", id)
	cred := filepath.Join(t.TempDir(), "credential")
	if err := os.WriteFile(cred, []byte("tok-sleep"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &meshtest.LockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mgr, err := certs.NewManager(certs.ManagerOptions{CA: ca.Addr, RootCertFile: ca.RootFile, CredentialFile: cred, SPIFFEID: id, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); mgr.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-mgr.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("no certificate: %v", mgr.Err())
	}

	m := meshtest.New(t, `apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
`)
	m.Sidecar("sleep", "127.77.90.2", map[string]string{"app": "sleep"}, func(o *sidecar.Options) {
		o.Identity = mgr
		o.Node.ServiceAccount = "sleep"
		o.Log = log
	})
	cert, err := mgr.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	key := cert.PrivateKey.(*ecdsa.PrivateKey)

	pages := map[string]string{}
	for _, path := range []string{"/certs", "/config_dump", "/stats", "/stats/prometheus", "/clusters?format=json", "/ready"} {
		resp, err := http.Get("http://127.77.90.2:15000" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		pages[path] = string(b)
		certtest.AssertNoPrivateKey(t, path, string(b), key)
	}
	if !strings.Contains(pages["/certs"], `"spiffe_id": "`+id+`"`) {
		t.Errorf("/certs does not show %s:\n%s", id, pages["/certs"])
	}
	certtest.AssertNoPrivateKey(t, "the logs", logs.String(), key)
	if !strings.Contains(logs.String(), "workload certificate issued") {
		t.Errorf("the logs do not record the issue:\n%s", logs)
	}
}
