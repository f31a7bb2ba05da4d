package xds

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/translate"
)

// Push scheduling: when config changes reach proxies. Run debounces the
// store's change notifications (Debounce of quiet, at most MaxDelay in
// all) into calls of Push, which makes a new world generation and brings
// every connected proxy to it. A proxy that connects between pushes is
// brought to the current generation when it connects (Server.refresh),
// not on the next push.

// pushStats are the counters Push keeps for Pushes and PushedVersion.
type pushStats struct {
	pushes atomic.Int64
	// version is the store version of the last completed push.
	version atomic.Uint64
}

// Run pushes config changes until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	changes, stop := s.opts.Store.Subscribe()
	defer stop()
	var (
		quiet    *time.Timer
		deadline *time.Timer
		pending  bool
		// changed is when the first change of the pending push arrived,
		// where pilot_proxy_convergence_time starts.
		changed time.Time
	)
	timerC := func(t *time.Timer) <-chan time.Time {
		if t == nil {
			return nil
		}
		return t.C
	}
	fire := func() {
		if quiet != nil {
			quiet.Stop()
		}
		if deadline != nil {
			deadline.Stop()
		}
		quiet, deadline, pending = nil, nil, false
		s.push()
		s.streams.m.convergence.Observe(time.Since(changed).Seconds())
	}
	for {
		select {
		case <-ctx.Done():
			if quiet != nil {
				quiet.Stop()
			}
			if deadline != nil {
				deadline.Stop()
			}
			return nil
		case <-changes:
			if !pending {
				pending = true
				changed = time.Now()
				deadline = time.NewTimer(s.opts.MaxDelay)
			}
			if quiet != nil {
				quiet.Stop()
			}
			quiet = time.NewTimer(s.opts.Debounce)
		case <-timerC(quiet):
			fire()
		case <-timerC(deadline):
			fire()
		}
	}
}

// Push translates the store's current snapshot and updates every
// connected proxy. Run calls it after changes; tests may call it directly.
func (s *Server) Push() { s.push() }

func (s *Server) push() {
	start := time.Now()
	w := translate.NewWorld(s.opts.Store.Snapshot())
	// The new generation is visible to connecting proxies before the list
	// is taken, so a proxy missing from the list translates it itself.
	gen := s.scopes.setWorld(w)
	proxies := s.streams.all()
	for _, ps := range proxies {
		s.refresh(ps, w, gen)
	}
	s.pushed.version.Store(w.Snap.Version)
	s.pushed.pushes.Add(1)
	s.log.Info("pushed config", "version", w.Snap.Version, "proxies", len(proxies), "took", time.Since(start).Round(time.Microsecond))
}

// PushedVersion is the store snapshot version of the last completed
// push: every proxy connected then has been handed config at least that
// new (Status says when each has ACKed it).
func (s *Server) PushedVersion() uint64 { return s.pushed.version.Load() }

// Pushes counts completed pushes since start.
func (s *Server) Pushes() int64 { return s.pushed.pushes.Load() }
