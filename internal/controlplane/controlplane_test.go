package controlplane

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// The control plane loads the folder before serving, follows edits, and
// stops every goroutine it started.
func TestStartFollowStop(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	svc := `apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
`
	if err := os.WriteFile(filepath.Join(dir, "svc.yaml"), []byte(svc), 0o644); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := Start(context.Background(), Options{
		ConfigPaths: []string{dir},
		XDSListener: lis,
		Log:         slog.New(slog.DiscardHandler),
		Debounce:    10 * time.Millisecond,
		MaxDelay:    50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	key := config.Key{GroupKind: config.Service, Namespace: "default", Name: "reviews"}
	if cp.Store.Snapshot().Get(key) == nil {
		t.Fatal("config not loaded before Start returned")
	}
	if err := os.Remove(filepath.Join(dir, "svc.yaml")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for cp.Store.Snapshot().Get(key) != nil {
		if time.Now().After(deadline) {
			t.Fatal("removed file still in force after 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
}

// A taken xDS address gives an error that says what to do.
func TestAddressInUse(t *testing.T) {
	leak.Check(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, err = Start(context.Background(), Options{ConfigPaths: []string{t.TempDir()}, XDSAddress: lis.Addr().String(), Log: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("started on a taken address")
	}
	if got := err.Error(); !contains(got, "--xds-address") {
		t.Fatalf("error does not say what to do: %s", got)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
