// Package store holds the validated config world: every object from every
// source file, with the rule that bad input never replaces good. When an
// edited file has an invalid object, the last good version of that object
// stays in force until a valid one arrives.
//
// The store knows nothing about xDS; consumers take immutable Snapshots and
// are told (through a coalescing channel) when a newer one exists.
package store

import (
	"log/slog"
	"sort"
	"sync"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/field"
)

// Snapshot is one immutable version of the config world.
type Snapshot struct {
	Version uint64
	// Objects sorted by kind, namespace and name; each key once.
	Objects []*config.Object
	// Mesh is the MeshConfig in force (Istio's defaults when none is given).
	Mesh  *meshv1alpha1.MeshConfig
	byKey map[config.Key]*config.Object
}

// Get returns the object with key k, or nil.
func (s *Snapshot) Get(k config.Key) *config.Object { return s.byKey[k] }

// OfKind returns the objects of one kind, in snapshot order.
func (s *Snapshot) OfKind(gk config.GroupKind) []*config.Object {
	var out []*config.Object
	for _, o := range s.Objects {
		if o.GroupKind == gk {
			out = append(out, o)
		}
	}
	return out
}

// Store is the mutable holder of the config world. It is safe for
// concurrent use.
type Store struct {
	log *slog.Logger

	mu      sync.Mutex
	files   map[string][]*config.Object
	version uint64
	current *Snapshot
	subs    map[chan struct{}]struct{}
}

// New returns an empty store.
func New(log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{log: log, files: map[string][]*config.Object{}, subs: map[chan struct{}]struct{}{}}
	s.current = s.build()
	return s
}

// ApplyFile replaces what one file contributes with its newly parsed
// content. Objects whose new document is invalid keep their last good
// version; a document that cannot even be identified (broken YAML) keeps
// every previous object of the file that is not otherwise present. It
// returns the errors that were not applied, for the caller to log.
func (s *Store) ApplyFile(f *config.File) []error {
	s.mu.Lock()
	defer s.mu.Unlock()

	prev := s.files[f.Path]
	next := make([]*config.Object, 0, len(f.Objects))
	present := map[config.Key]bool{}
	for _, o := range f.Objects {
		if present[o.Key()] {
			continue // the same object twice in one file: the first wins (the analyzer reports copies that differ)
		}
		present[o.Key()] = true
		next = append(next, o)
	}
	broken := map[string]bool{}
	unattributed := false
	for _, err := range f.Errors {
		if ce, ok := err.(*config.Error); ok && ce.Object != "" {
			broken[ce.Object] = true
		} else {
			unattributed = true
		}
	}
	for _, o := range prev {
		if present[o.Key()] {
			continue
		}
		if unattributed || broken[o.ID()] {
			s.log.Warn("keeping last good version of an object whose new version is invalid", "object", o.ID(), "file", f.Path)
			next = append(next, o)
			present[o.Key()] = true
		}
	}
	s.files[f.Path] = next
	s.publishLocked()
	return f.Errors
}

// RemoveFile drops every object the file contributed.
func (s *Store) RemoveFile(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[path]; !ok {
		return
	}
	delete(s.files, path)
	s.publishLocked()
}

// Files lists the paths that currently contribute objects.
func (s *Store) Files() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.files))
	for p := range s.files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Snapshot returns the current version of the world.
func (s *Store) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// Subscribe returns a channel that receives a value (coalesced: never more
// than one pending) after every change, and a func to stop.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

func (s *Store) publishLocked() {
	s.current = s.build()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// build merges every file's objects. When two files define one object, the
// file whose path sorts first wins, so the outcome never depends on the
// order files were read; as in the analyzer (TRL0005), copies with the same
// content are no conflict.
func (s *Store) build() *Snapshot {
	s.version++
	paths := make([]string, 0, len(s.files))
	for p := range s.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	snap := &Snapshot{Version: s.version, byKey: map[config.Key]*config.Object{}}
	for _, p := range paths {
		for _, o := range s.files[p] {
			k := o.Key()
			if other, dup := snap.byKey[k]; dup {
				// Identical copies are normal in manifest folders and
				// kubectl accepts them; only a conflict is worth a warning.
				if config.SameContent(other, o) {
					s.log.Debug("object defined twice with the same content", "object", o.ID(), "kept", other.Source.String(), "ignored", o.Source.String())
				} else {
					s.log.Warn("object defined twice with different content; the first file wins", "object", o.ID(), "kept", other.Source.String(), "ignored", o.Source.String())
				}
				continue
			}
			snap.byKey[k] = o
			snap.Objects = append(snap.Objects, o)
		}
	}
	sort.Slice(snap.Objects, func(i, j int) bool { return lessKey(snap.Objects[i].Key(), snap.Objects[j].Key()) })
	snap.Mesh = meshConfig(snap)
	return snap
}

func lessKey(a, b config.Key) bool {
	if a.Group != b.Group {
		return a.Group < b.Group
	}
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// meshConfig reads MeshConfig from the ConfigMap `istio` (key `mesh`) in
// istio-system, as Istio does; validation already rejected bad content.
func meshConfig(snap *Snapshot) *meshv1alpha1.MeshConfig {
	o := snap.byKey[config.Key{GroupKind: config.ConfigMap, Namespace: config.DefaultRootNamespace, Name: config.MeshConfigMapName}]
	if o == nil {
		return config.DefaultMeshConfig()
	}
	cm := o.Spec.(*corev1.ConfigMap)
	mc, errs := config.ParseMeshConfig(field.NewPath("data").Key(config.MeshConfigKey), cm.Data[config.MeshConfigKey])
	if len(errs) > 0 || mc == nil {
		return config.DefaultMeshConfig()
	}
	return mc
}
