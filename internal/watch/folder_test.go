package watch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
)

func vsYAML(weight string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: ` + weight + `
    - destination: {host: reviews, subset: v2}
      weight: 10
`
}

var vsKey = config.Key{GroupKind: config.VirtualService, Namespace: "default", Name: "reviews"}

func weightOf(s *store.Store) int32 {
	o := s.Snapshot().Get(vsKey)
	if o == nil {
		return -1
	}
	return o.Spec.(*networking.VirtualService).GetHttp()[0].GetRoute()[0].GetWeight()
}

func write(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename, as editors do, so the watcher never reads half a file.
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// records is a slog.Handler that keeps every record, so a test can wait
// for the watcher to report what it did.
type records struct {
	mu   sync.Mutex
	list []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec.Clone())
	return nil
}

// appliedWithErrors counts the times file was applied with errors.
func (r *records) appliedWithErrors(file string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.list {
		if rec.Message != "applied config file" {
			continue
		}
		var path string
		var errs int64
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "file":
				path = a.Value.String()
			case "errors":
				errs = a.Value.Int64()
			}
			return true
		})
		if path == file && errs > 0 {
			n++
		}
	}
	return n
}

func eventually(t *testing.T, within time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// New, edited, invalid and removed files reach the store; an invalid edit
// leaves the last good version in force. The resync period is long, so the
// filesystem notifications alone must deliver each change within 1s.
func TestFolderFollowsEdits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reviews.yaml")
	write(t, path, vsYAML("90"))
	st := store.New(slog.New(slog.DiscardHandler))
	logged := &records{}
	f := &Folder{Paths: []string{dir}, Sink: st, Log: slog.New(logged), Resync: time.Hour}
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if weightOf(st) != 90 {
		t.Fatalf("initial load: weight %d", weightOf(st))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	write(t, path, vsYAML("50"))
	eventually(t, time.Second, func() bool { return weightOf(st) == 50 }, "edit applied")

	// Once the watcher has read the invalid edit (it says so), the last
	// good version must still be in force.
	write(t, path, vsYAML("-5"))
	eventually(t, time.Second, func() bool { return logged.appliedWithErrors(path) > 0 }, "invalid edit read")
	if w := weightOf(st); w != 50 {
		t.Fatalf("invalid edit replaced the last good version: weight %d", w)
	}

	other := filepath.Join(dir, "ratings.yaml")
	write(t, other, `apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  ports: [{name: http, port: 9080}]
`)
	svcKey := config.Key{GroupKind: config.Service, Namespace: "default", Name: "ratings"}
	eventually(t, time.Second, func() bool { return st.Snapshot().Get(svcKey) != nil }, "new file applied")

	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, func() bool { return st.Snapshot().Get(svcKey) == nil }, "removed file dropped")

	write(t, path, vsYAML("70"))
	eventually(t, time.Second, func() bool { return weightOf(st) == 70 }, "valid edit after an invalid one applied")
}

// Subfolders are read only when Recursive, as kubectl's -R.
func TestFolderRecursive(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(sub, "reviews.yaml"), vsYAML("90"))
	for _, rec := range []bool{false, true} {
		st := store.New(slog.New(slog.DiscardHandler))
		f := &Folder{Paths: []string{dir}, Recursive: rec, Sink: st, Log: slog.New(slog.DiscardHandler)}
		if err := f.Load(); err != nil {
			t.Fatal(err)
		}
		if got := st.Snapshot().Get(vsKey) != nil; got != rec {
			t.Fatalf("recursive=%v: subfolder object present=%v", rec, got)
		}
	}
}

// Transform sees every file before the store does, on load and on edits.
func TestTransform(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vs.yaml")
	write(t, path, vsYAML("90"))
	st := store.New(slog.Default())
	f := &Folder{Paths: []string{dir}, Sink: st, Resync: 50 * time.Millisecond, Transform: func(file *config.File) {
		for _, o := range file.Objects {
			if vs, ok := o.Spec.(*networking.VirtualService); ok {
				vs.Http[0].Route[0].Weight += 1000
			}
		}
	}}
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if got := weightOf(st); got != 1090 {
		t.Fatalf("weight after load %d, want the transformed 1090", got)
	}
	write(t, path, vsYAML("80"))
	eventually(t, 5*time.Second, func() bool { return weightOf(st) == 1080 }, "the edit to arrive transformed")
}
