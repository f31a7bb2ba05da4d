package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
)

// Folder watches config folders and files.
type Folder struct {
	Paths     []string
	Recursive bool
	// Sink takes each file's objects, the file's path naming its source.
	Sink store.Sink
	Log  *slog.Logger
	// Resync is the period of the full rescan that backs up filesystem
	// notifications (which some filesystems drop); default 2s.
	Resync time.Duration
	// Transform, when set, adjusts each parsed file before the store gets
	// it: `trellis up --transparent` gives Services their cluster IPs, as
	// the Kubernetes API server would.
	Transform func(*config.File)

	known   map[string]fileStamp
	watcher *fsnotify.Watcher
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// Load starts watching and reads everything once, synchronously, so that
// no change made after Load returns can be missed. Run calls it if needed;
// callers that need the initial config applied before serving call it
// first, and must then call Run (which releases the watch).
func (f *Folder) Load() error {
	if f.Log == nil {
		f.Log = slog.Default()
	}
	if f.known == nil {
		f.known = map[string]fileStamp{}
	}
	if f.watcher == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return fmt.Errorf("cannot watch config folders: %w", err)
		}
		f.watcher = w
		f.addWatches(w)
	}
	return f.sync()
}

// Close releases the watch of a Folder that was loaded but will not Run.
func (f *Folder) Close() {
	if f.watcher != nil {
		f.watcher.Close()
		f.watcher = nil
	}
}

// Run watches until ctx ends.
func (f *Folder) Run(ctx context.Context) error {
	if f.watcher == nil {
		if err := f.Load(); err != nil {
			if f.watcher != nil {
				f.watcher.Close()
			}
			return err
		}
	}
	w := f.watcher
	defer w.Close()
	resync := f.Resync
	if resync == 0 {
		resync = 2 * time.Second
	}

	tick := time.NewTicker(resync)
	defer tick.Stop()
	var settle *time.Timer
	var settleC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if settle != nil {
				settle.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() && f.Recursive {
					f.addWatches(w)
				}
			}
			// Editors write in several steps; wait for a short quiet spell.
			if settle != nil {
				settle.Stop()
			}
			settle = time.NewTimer(30 * time.Millisecond)
			settleC = settle.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			f.Log.Warn("config watch error; relying on periodic rescan", "err", err)
		case <-settleC:
			settleC = nil
			f.resync()
		case <-tick.C:
			f.resync()
		}
	}
}

func (f *Folder) resync() {
	if err := f.sync(); err != nil {
		f.Log.Warn("cannot rescan config", "err", err)
	}
}

func (f *Folder) addWatches(w *fsnotify.Watcher) {
	for _, root := range f.Paths {
		st, err := os.Stat(root)
		if err != nil {
			continue
		}
		if !st.IsDir() {
			// Watch the parent: editors replace files by renaming over them.
			_ = w.Add(filepath.Dir(root))
			continue
		}
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if p != root && (!f.Recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			_ = w.Add(p)
			return nil
		})
	}
}

// NotInForceMessage is the log message for a field a config file uses
// that is not (fully) in force (TRL0007).
const NotInForceMessage = "config not in force"

// sync compares the files on disk with what was applied and applies the
// difference.
func (f *Folder) sync() error {
	var files []string
	for _, root := range f.Paths {
		found, err := config.FindFiles([]string{root}, f.Recursive)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // a removed folder simply contributes nothing
			}
			return err
		}
		files = append(files, found...)
	}
	present := map[string]bool{}
	for _, p := range files {
		present[p] = true
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		stamp := fileStamp{size: st.Size(), mod: st.ModTime()}
		if old, ok := f.known[p]; ok && old == stamp {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			f.Log.Warn("cannot read config file; keeping what it gave before", "file", p, "err", err)
			continue
		}
		f.known[p] = stamp
		parsed := config.ParseFile(p, data)
		if f.Transform != nil {
			f.Transform(parsed)
		}
		for _, w := range parsed.Warnings {
			if config.IsNotInForce(w) {
				f.Log.Warn(NotInForceMessage, "warning", w.Error())
				continue
			}
			f.Log.Warn(w.Error())
		}
		f.Sink.Apply(p, parsed.Objects, parsed.Errors)
		for _, e := range parsed.Errors {
			f.Log.Error("invalid config; the last good version stays in force", "err", e.Error())
		}
		f.Log.Info("applied config file", "file", p, "objects", len(parsed.Objects), "errors", len(parsed.Errors))
	}
	for p := range f.known {
		if !present[p] {
			delete(f.known, p)
			f.Sink.Remove(p)
			f.Log.Info("config file removed", "file", p)
		}
	}
	return nil
}
