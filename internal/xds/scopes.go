package xds

import (
	"log/slog"
	"sync"

	"github.com/trellismesh/trellis/internal/translate"
)

// scopes is the translation cache: the world every push starts from, its
// generation, and per proxy scope (translate.World.ScopeKey) the layers
// translated from the newest generation asked for. Every proxy of a scope
// points at the same layers, so a push translates and hashes a scope
// once, however many proxies share it; only translate.Local runs per
// proxy.
type scopes struct {
	log *slog.Logger

	mu     sync.Mutex
	world  *translate.World
	gen    uint64 // bumped on every new world
	scopes map[string]*scopeState
	// building holds the scopes being translated now (see shared).
	building map[string]*scopeBuild
}

type scopeState struct {
	gen    uint64
	layers [numTypes]*layer
}

// scopeBuild is a translation of one scope in progress; done closes when
// its result is in scopes.scopes.
type scopeBuild struct {
	gen  uint64
	done chan struct{}
}

func newScopes(w *translate.World, log *slog.Logger) *scopes {
	return &scopes{log: log, world: w, gen: 1, scopes: map[string]*scopeState{}, building: map[string]*scopeBuild{}}
}

// setWorld makes w the world new proxies are translated from and returns
// its generation.
func (c *scopes) setWorld(w *translate.World) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.world = w
	c.gen++
	return c.gen
}

// current is the newest world and its generation.
func (c *scopes) current() (*translate.World, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.world, c.gen
}

// translateShared is translate.Shared; tests count its calls.
var translateShared = translate.Shared

// translate returns p's layers for world w of generation gen: the scope's
// shared ones from the cache, and its own (translate.Local) fresh.
func (c *scopes) translate(w *translate.World, gen uint64, p *translate.Proxy) (shared, local [numTypes]*layer) {
	return c.shared(w, gen, p), layers(translate.Local(w, p, c.log))
}

// shared returns the scope's layers for this world generation,
// translating at most once per scope and generation. Unchanged layers keep
// their previous identity, so proxies can reuse merged maps.
//
// Concurrent callers for the same scope wait for one translation rather
// than each running their own: when many proxies of a scope connect at
// once, every one of them would otherwise translate the whole mesh (tens
// of MB of garbage each) before the first result is stored.
func (c *scopes) shared(w *translate.World, gen uint64, p *translate.Proxy) [numTypes]*layer {
	key := w.ScopeKey(p)
	c.mu.Lock()
	for {
		if sc, ok := c.scopes[key]; ok && sc.gen >= gen {
			l := sc.layers
			c.mu.Unlock()
			return l
		}
		b, ok := c.building[key]
		if !ok || b.gen < gen {
			break
		}
		c.mu.Unlock()
		<-b.done
		c.mu.Lock()
	}
	b := &scopeBuild{gen: gen, done: make(chan struct{})}
	c.building[key] = b
	c.mu.Unlock()

	fresh := layers(translateShared(w, p, c.log))

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.building[key] == b {
		delete(c.building, key)
	}
	close(b.done)
	sc, ok := c.scopes[key]
	if ok && sc.gen >= gen {
		return sc.layers
	}
	if ok {
		for i := range fresh {
			if sc.layers[i] != nil && sc.layers[i].version == fresh[i].version {
				fresh[i] = sc.layers[i]
			}
		}
	}
	c.scopes[key] = &scopeState{gen: gen, layers: fresh}
	return fresh
}
