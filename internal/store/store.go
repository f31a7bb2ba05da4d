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

// Sink is what a config source feeds: each Apply replaces everything the
// source gave before, and Remove drops it. Sources never see each other;
// the store merges them. Producers depend on this rather than on *Store so
// that each plugs in the same way (a folder watcher, the pod publisher of
// `trellis up`, a Kubernetes informer).
type Sink interface {
	// Apply replaces what source contributes with objects. errs are the
	// source's errors for objects it could not produce: an error that
	// names an object (a *config.Error with Object set) keeps that
	// object's last good version; any other error keeps every previous
	// object of the source that objects does not replace.
	Apply(source string, objects []*config.Object, errs []error)
	// Remove drops every object the source contributed.
	Remove(source string)
}

// Store is the mutable holder of the config world. It is safe for
// concurrent use.
type Store struct {
	log *slog.Logger

	mu      sync.Mutex
	sources map[string][]*config.Object
	version uint64
	current *Snapshot
	subs    map[chan struct{}]struct{}
}

var _ Sink = (*Store)(nil)

// New returns an empty store.
func New(log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{log: log, sources: map[string][]*config.Object{}, subs: map[chan struct{}]struct{}{}}
	s.current = s.build()
	return s
}

// ApplyFile applies a parsed file as the source named by its path, and
// returns the file's errors for the caller to log.
func (s *Store) ApplyFile(f *config.File) []error {
	s.Apply(f.Path, f.Objects, f.Errors)
	return f.Errors
}

// Apply replaces what one source contributes (see Sink). Objects whose
// new version is invalid keep their last good version; a document that
// cannot even be identified (broken YAML) keeps every previous object of
// the source that is not otherwise present.
func (s *Store) Apply(source string, objects []*config.Object, errs []error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	prev := s.sources[source]
	next := make([]*config.Object, 0, len(objects))
	present := map[config.Key]bool{}
	for _, o := range objects {
		if present[o.Key()] {
			continue // the same object twice in one source: the first wins (the analyzer reports copies that differ)
		}
		present[o.Key()] = true
		next = append(next, o)
	}
	broken := map[string]bool{}
	unattributed := false
	for _, err := range errs {
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
			// The kept object's own position names its file (for a file
			// source, the source's path), so logs read as they always have.
			s.log.Warn("keeping last good version of an object whose new version is invalid", "object", o.ID(), "file", o.Source.File)
			next = append(next, o)
			present[o.Key()] = true
		}
	}
	s.sources[source] = next
	s.publishLocked()
}

// Remove drops every object the source contributed.
func (s *Store) Remove(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sources[source]; !ok {
		return
	}
	delete(s.sources, source)
	s.publishLocked()
}

// Sources lists the sources that currently contribute objects, sorted.
func (s *Store) Sources() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.sources))
	for p := range s.sources {
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

// build merges every source's objects. When two sources define one
// object, the source whose name sorts first wins (for files: the path
// that sorts first), so the outcome never depends on the order sources
// were applied; as in the analyzer (TRL0005), copies with the same content
// are no conflict.
func (s *Store) build() *Snapshot {
	s.version++
	names := make([]string, 0, len(s.sources))
	for n := range s.sources {
		names = append(names, n)
	}
	sort.Strings(names)
	snap := &Snapshot{Version: s.version, byKey: map[config.Key]*config.Object{}}
	for _, n := range names {
		for _, o := range s.sources[n] {
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
