package xdsclient

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
)

// Decoder is a resource type as the client needs it: the type URL to
// subscribe to and how one resource's bytes become its name and typed
// value; an error NACKs the response. xdsresource's Types are Decoders
// (ClusterResource gives *xdsresource.Cluster, and so on).
type Decoder[T any] interface {
	TypeURL() string
	Decode(value []byte) (name string, res T, err error)
}

// Update is one accepted response of one resource type.
type Update[T any] struct {
	TypeURL string
	// Version is the response's system_version_info.
	Version string
	// Resources is the full current set of the type after applying the
	// delta, by name. It is a new map on every update and is never
	// modified afterwards, so the caller may keep it.
	Resources map[string]T
	// Updated are the names added or replaced by this response, and
	// Removed those it deleted, both sorted.
	Updated []string
	Removed []string
}

// Subscription is one resource type to subscribe to and what to do with
// its accepted updates; Subscribe makes one.
type Subscription struct {
	s subscription
}

// Subscribe pairs a resource type with the function that installs its
// updates. apply is called from Run's goroutine only, one update at a
// time; an error rejects the update: the response is NACKed with the
// error's text and the client's set of the type stays as it was.
func Subscribe[T any](typ Decoder[T], apply func(Update[T]) error) Subscription {
	return Subscription{&typeState[T]{typ: typ, apply: apply, resources: map[string]T{}, versions: map[string]string{}}}
}

// subscription is a typeState of any type, as the stream sees it.
type subscription interface {
	typeURL() string
	// versionsHeld are the versions to resume from on a new stream
	// (initial_resource_versions); nil when none are held.
	versionsHeld() map[string]string
	// handle decodes and applies one response; an error means NACK.
	handle(r *deltaResponse, log *slog.Logger) error
	valid() error
}

// typeState is what the client holds of one type.
type typeState[T any] struct {
	typ       Decoder[T]
	apply     func(Update[T]) error
	resources map[string]T
	versions  map[string]string
	// applied is set once a response of the type was applied, so the
	// first (possibly empty) one always reaches apply: the caller needs it
	// to know the initial state is complete.
	applied bool
}

func (ts *typeState[T]) typeURL() string { return ts.typ.TypeURL() }

func (ts *typeState[T]) valid() error {
	if ts.apply == nil {
		return fmt.Errorf("xdsclient: the subscription to %s has no apply function", ts.typ.TypeURL())
	}
	return nil
}

func (ts *typeState[T]) versionsHeld() map[string]string {
	if len(ts.versions) == 0 {
		return nil
	}
	return maps.Clone(ts.versions)
}

func (ts *typeState[T]) handle(r *deltaResponse, log *slog.Logger) error {
	decoded := make(map[string]T, len(r.Resources))
	versions := make(map[string]string, len(r.Resources))
	var errs []string
	bad := 0
	fail := func(format string, a ...any) {
		bad++
		if len(errs) < maxErrors {
			errs = append(errs, fmt.Sprintf(format, a...))
		}
	}
	for i, res := range r.Resources {
		switch {
		case !res.HasValue:
			fail("resources[%d] %q: no resource", i, res.Name)
			continue
		case res.TypeURL != r.TypeURL:
			fail("resources[%d] %q: resource.type_url %q differs from the response's %q", i, res.Name, res.TypeURL, r.TypeURL)
			continue
		}
		name, v, err := ts.typ.Decode(res.Value)
		if err != nil {
			fail("resources[%d] %q: %v", i, res.Name, err)
			continue
		}
		switch {
		case res.Name == "":
			res.Name = name
		case name != "" && name != res.Name:
			fail("resources[%d] %q: the resource itself is named %q", i, res.Name, name)
			continue
		}
		if res.Name == "" {
			fail("resources[%d]: no name", i)
			continue
		}
		if _, dup := decoded[res.Name]; dup {
			fail("resources[%d] %q: sent twice in one response", i, res.Name)
			continue
		}
		decoded[res.Name] = v
		versions[res.Name] = res.Version
	}
	if bad > 0 {
		if bad > len(errs) {
			errs = append(errs, fmt.Sprintf("and %d more", bad-len(errs)))
		}
		return errors.New(strings.Join(errs, "; "))
	}

	next := maps.Clone(ts.resources)
	nextVersions := maps.Clone(ts.versions)
	var removed []string
	for _, n := range r.RemovedResources {
		if _, ok := next[n]; ok {
			delete(next, n)
			delete(nextVersions, n)
			removed = append(removed, n)
		}
	}
	updated := make([]string, 0, len(decoded))
	for n, v := range decoded {
		next[n] = v
		nextVersions[n] = versions[n]
		updated = append(updated, n)
	}
	if ts.applied && len(updated) == 0 && len(removed) == 0 {
		return nil // e.g. the answer to a reconnect when nothing changed
	}
	sort.Strings(updated)
	sort.Strings(removed)
	if err := ts.apply(Update[T]{TypeURL: r.TypeURL, Version: r.SystemVersionInfo, Resources: next, Updated: updated, Removed: removed}); err != nil {
		return fmt.Errorf("applying: %w", err)
	}
	ts.resources, ts.versions, ts.applied = next, nextVersions, true
	log.Debug("applied xDS update", "type", r.TypeURL, "version", r.SystemVersionInfo, "updated", len(updated), "removed", len(removed), "total", len(next))
	return nil
}
