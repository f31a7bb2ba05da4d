package controlplane

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// recorder keeps the records a logger receives.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// unenforced returns the policies logged as not enforced so far, in order.
func (r *recorder) unenforced() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Message != UnenforcedMessage {
			continue
		}
		if rec.Level != slog.LevelError {
			out = append(out, "not at Error level")
		}
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "policy" {
				out = append(out, a.Value.String())
			}
			return true
		})
	}
	return out
}

const authzPolicy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payment-policy}
spec:
  selector: {matchLabels: {app: payment}}
  rules:
  - when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: [payment]}]
`

// A security policy that is not enforced is logged at Error level when the
// control plane starts, and again after every config change, so it cannot
// scroll away unseen.
func TestUnenforcedPolicyLoggedAtStartAndOnEveryChange(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("authz.yaml", authzPolicy)
	write("strict.yaml", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n")
	write("tls.yaml", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db}\nspec:\n  host: db\n  trafficPolicy: {tls: {mode: SIMPLE, credentialName: db-creds}}\n")
	write("permissive.yaml", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: PERMISSIVE}}\n")
	rec := &recorder{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := Start(context.Background(), Options{
		ConfigPaths: []string{dir}, XDSListener: lis, Log: slog.New(rec),
		Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()

	// STRICT and PERMISSIVE are enforced and never named; a Kubernetes
	// secret is not read.
	want := []string{"DestinationRule default/db", "AuthorizationPolicy default/payment-policy"}
	waitFor(t, "the policies logged at start", func() bool { return len(rec.unenforced()) >= len(want) })
	if got := rec.unenforced(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("logged at start: %q, want %q", got, want)
	}

	// An unrelated change: the warning comes again.
	write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: payment}\nspec:\n  selector: {app: payment}\n  ports: [{port: 80}]\n")
	waitFor(t, "the policies logged again after a change", func() bool { return len(rec.unenforced()) >= 2*len(want) })
	if got := rec.unenforced()[len(want):]; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("logged after the change: %q, want %q", got, want)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
