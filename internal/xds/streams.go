package xds

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/trellismesh/trellis/internal/translate"
)

// streams is the ADS side of the server: the connected proxies, the
// layers each was last handed, and what their streams sent, ACKed and
// NACKed. Delta streams (delta.go) read a proxy's layers themselves;
// state-of-the-world streams (sotw.go) are served by go-control-plane from
// the per-type caches here.
//
// Lock order: streams.mu, then a proxyState's mu. Nothing here takes the
// translation cache's lock (scopes.go), so translation never waits for a
// stream.
type streams struct {
	log *slog.Logger
	m   *metrics

	// caches holds one snapshot cache per resource type (typeURLs order),
	// for state-of-the-world streams only. go-control-plane re-evaluates
	// every open watch of a node on each SetSnapshot, which for a sidecar
	// means diffing thousands of clusters when only one endpoint moved;
	// with a cache per type a push touches only the types whose layer
	// changed.
	caches [numTypes]cachev3.SnapshotCache

	mu      sync.Mutex
	proxies map[string]*proxyState
	sotw    map[int64]string // SotW stream id -> node id

	nacks    atomic.Int64
	streamID atomic.Int64 // delta stream ids, for nonces

	// initialSends bounds how many full initial states are being sent at
	// once (see deltaConn.sendInitial).
	initialSends chan struct{}
}

func newStreams(log *slog.Logger) *streams {
	st := &streams{
		log:          log,
		m:            newMetrics(),
		proxies:      map[string]*proxyState{},
		sotw:         map[int64]string{},
		initialSends: make(chan struct{}, 8),
	}
	for i := range st.caches {
		st.caches[i] = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, cacheLogger{log})
	}
	return st
}

// proxyState is one connected proxy, shared by all its streams.
type proxyState struct {
	proxy *translate.Proxy
	refs  int // streams open; guarded by streams.mu

	mu     sync.Mutex // guards everything below
	setGen uint64
	shared [numTypes]*layer
	local  [numTypes]*layer
	// merged is the SotW view (shared and local in one layer), kept only
	// while the proxy has state-of-the-world streams.
	merged     [numTypes]*layer
	mergedFrom [numTypes][2]*layer
	sotw       int
	// watchers are the delta streams of this proxy, told of new layers.
	watchers map[chan struct{}]struct{}
	sent     map[string]string     // type URL -> nonce of the last response sent
	acked    map[string]string     // type URL -> nonce of the last response ACKed
	nacked   map[string]nackRecord // type URL -> the last NACK, until an ACK
	nacks    int
	lastErr  string
	// version is the store version of the layers set last; updates counts
	// those sets and handled the last count a delta stream has pushed, so
	// a proxy whose stream has not yet sent new layers is not reported in
	// sync on the strength of an older ACK.
	version          uint64
	updates, handled uint64
}

// register finds or creates the state of a connecting proxy and counts
// the stream.
func (st *streams) register(p *translate.Proxy) *proxyState {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.registerLocked(p)
}

func (st *streams) registerLocked(p *translate.Proxy) *proxyState {
	ps, ok := st.proxies[p.ID]
	if !ok {
		ps = &proxyState{proxy: p, sent: map[string]string{}, acked: map[string]string{}, watchers: map[chan struct{}]struct{}{}}
		st.proxies[p.ID] = ps
	}
	ps.refs++
	return ps
}

// releaseLocked drops one stream of a proxy; the last one forgets the
// proxy. Caller holds st.mu.
func (st *streams) releaseLocked(ps *proxyState) {
	ps.refs--
	if ps.refs <= 0 {
		delete(st.proxies, ps.proxy.ID)
		for _, c := range st.caches {
			c.ClearSnapshot(ps.proxy.ID)
		}
		st.m.forget(ps.proxy.ID)
		st.log.Info("proxy disconnected", "proxy", ps.proxy.ID)
	}
}

// all lists the connected proxies.
func (st *streams) all() []*proxyState {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]*proxyState, 0, len(st.proxies))
	for _, ps := range st.proxies {
		out = append(out, ps)
	}
	return out
}

// set hands a proxy the layers translated from world generation gen
// (store version version) and tells its streams: delta streams through
// their watcher channel, SotW ones through the caches.
func (st *streams) set(ps *proxyState, gen, version uint64, shared, local [numTypes]*layer) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if gen < ps.setGen {
		return // a newer world was already applied
	}
	ps.setGen = gen
	for i := range local {
		if ps.local[i] != nil && ps.local[i].version == local[i].version {
			local[i] = ps.local[i] // keep identity: delta streams see no change
		}
	}
	ps.shared, ps.local = shared, local
	ps.version = version
	ps.updates++
	for ch := range ps.watchers {
		select {
		case ch <- struct{}{}:
		default: // already pending: the stream reads the latest layers
		}
	}
	if ps.sotw > 0 {
		st.setSotW(ps)
	}
}

// current returns the layers of type i a proxy should have now.
func (ps *proxyState) current(i int) (shared, local *layer) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	shared, local = ps.shared[i], ps.local[i]
	if shared == nil {
		shared = emptyLayer
	}
	if local == nil {
		local = emptyLayer
	}
	return shared, local
}

// nack counts a rejected response. The client keeps its last good config;
// sending the same again would only be rejected again, so nothing is
// resent: the next change goes out as usual.
func (st *streams) nack(ps *proxyState, typeURL, nonce, reason string, code int32) {
	st.nacks.Add(1)
	st.m.rejected(typeURL, ps.proxy.ID, code)
	ps.mu.Lock()
	ps.nacks++
	ps.lastErr = reason
	if ps.nacked == nil {
		ps.nacked = map[string]nackRecord{}
	}
	ps.nacked[typeURL] = nackRecord{nonce: nonce, reason: reason}
	ps.mu.Unlock()
	st.log.Warn("proxy rejected config (NACK)", "proxy", ps.proxy.ID, "type", typeURL, "nonce", nonce, "reason", reason)
}

// ack and sent track nonces: a proxy is in sync when it has ACKed the
// last response of every type sent to it.
func (ps *proxyState) ack(typeURL, nonce string) {
	ps.mu.Lock()
	ps.acked[typeURL] = nonce
	delete(ps.nacked, typeURL)
	ps.mu.Unlock()
}

func (ps *proxyState) sentNonce(typeURL, nonce string) {
	ps.mu.Lock()
	ps.sent[typeURL] = nonce
	ps.mu.Unlock()
}

// ProxyStatus is one connected proxy's sync state.
type ProxyStatus struct {
	ID        string
	Namespace string
	Generator string
	// Synced is true when the proxy has been sent its latest config and
	// has ACKed the last response of every type.
	Synced bool
	// Version is the store snapshot version the proxy's config was
	// translated from.
	Version  uint64
	NACKs    int
	LastNACK string
}

// status lists connected proxies, sorted by id.
func (st *streams) status() []ProxyStatus {
	ps := st.all()
	out := make([]ProxyStatus, 0, len(ps))
	for _, p := range ps {
		p.mu.Lock()
		synced := len(p.sent) > 0 && (len(p.watchers) == 0 || p.handled == p.updates)
		for typ, nonce := range p.sent {
			if p.acked[typ] != nonce {
				synced = false
			}
		}
		out = append(out, ProxyStatus{ID: p.proxy.ID, Namespace: p.proxy.Namespace, Generator: string(p.proxy.Generator), Synced: synced, Version: p.version, NACKs: p.nacks, LastNACK: p.lastErr})
		p.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
