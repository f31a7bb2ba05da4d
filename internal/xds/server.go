// Package xds serves the translated config to proxies over Envoy's
// Aggregated Discovery Service, both state-of-the-world (grpc-go's
// proxyless clients) and incremental/delta (Trellis's own proxies, so a
// change sends only what changed).
//
// It owns push scheduling: config changes are debounced and translated
// once per proxy scope (see translate.World.ScopeKey). Delta streams are
// served here (delta.go), from layers shared by every proxy of a scope;
// state-of-the-world streams go through go-control-plane's snapshot cache
// with precomputed per-resource versions. NACKs are logged and counted,
// never answered with the same config again.
//
// Create the gRPC server with ServerOptions: delta responses are then
// written from bytes encoded once per scope rather than marshalled per
// stream (codec.go).
package xds

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/translate"
)

// Options configure a Server.
type Options struct {
	Store *store.Store
	Log   *slog.Logger
	// Debounce is how long the config must be quiet before a push (default
	// 100ms); MaxDelay caps how long a stream of changes can hold a push
	// back (default 500ms), so an edit reaches proxies well within 1s.
	Debounce time.Duration
	MaxDelay time.Duration
}

// Server is the ADS server.
type Server struct {
	opts Options
	log  *slog.Logger
	// caches holds one snapshot cache per resource type (typeURLs order).
	// go-control-plane re-evaluates every open watch of a node on each
	// SetSnapshot, which for a sidecar means diffing thousands of clusters
	// when only one endpoint moved; with a cache per type a push touches
	// only the types whose layer changed.
	caches [numTypes]cachev3.SnapshotCache
	ads    serverv3.Server

	mu      sync.Mutex
	world   *translate.World
	gen     uint64 // bumped on every new world
	proxies map[string]*proxyState
	streams map[int64]string // stream id -> node id
	scopes  map[string]*scopeState
	// building holds the scopes being translated now (see sharedLayers).
	building map[string]*scopeBuild

	nacks  atomic.Int64
	pushes atomic.Int64
	// pushedVersion is the store version of the last completed push.
	pushedVersion atomic.Uint64
	streamID      atomic.Int64

	// initialSends bounds how many full initial states are being sent at
	// once (see deltaConn.sendInitial).
	initialSends chan struct{}
}

type proxyState struct {
	proxy *translate.Proxy
	refs  int

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
	sent     map[string]string // type URL -> nonce of the last response sent
	acked    map[string]string // type URL -> nonce of the last response ACKed
	nacks    int
	lastErr  string
	// version is the store version of the layers set last; updates counts
	// those sets and handled the last count a delta stream has pushed, so
	// a proxy whose stream has not yet sent new layers is not reported in
	// sync on the strength of an older ACK.
	version          uint64
	updates, handled uint64
}

type scopeState struct {
	gen    uint64
	layers [numTypes]*layer
}

// scopeBuild is a translation of one scope in progress; done closes when
// its result is in Server.scopes.
type scopeBuild struct {
	gen  uint64
	done chan struct{}
}

// New builds a server; call Register and Run.
func New(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Debounce == 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = 500 * time.Millisecond
	}
	s := &Server{
		opts:    opts,
		log:     opts.Log,
		proxies: map[string]*proxyState{},
		streams: map[int64]string{},
		scopes:  map[string]*scopeState{},

		building: map[string]*scopeBuild{},

		initialSends: make(chan struct{}, 8),
	}
	// ads=false: go-control-plane's ADS mode refuses to answer a request
	// that does not name every resource of the type, which is exactly what
	// grpc-go does (it asks for the listener it needs).
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return typeURLs[cacheIndex(r.GetTypeUrl())] },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return typeURLs[cacheIndex(r.GetTypeUrl())] },
		Caches:        map[string]cachev3.Cache{},
	}
	for i := range s.caches {
		s.caches[i] = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, cacheLogger{opts.Log})
		mux.Caches[typeURLs[i]] = s.caches[i]
	}
	s.world = translate.NewWorld(opts.Store.Snapshot())
	s.gen = 1
	s.ads = serverv3.NewServer(context.Background(), mux, s.callbacks())
	return s
}

// Register adds the ADS service to a gRPC server, best one created with
// ServerOptions.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, adsService{Server: s.ads, s: s})
}

// adsService serves state-of-the-world ADS through go-control-plane and
// delta ADS itself.
type adsService struct {
	serverv3.Server
	s *Server
}

func (a adsService) DeltaAggregatedResources(st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.s.serveDelta(st)
}

// Run pushes config changes until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	changes, stop := s.opts.Store.Subscribe()
	defer stop()
	var (
		quiet    *time.Timer
		deadline *time.Timer
		pending  bool
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
		s.Push()
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
func (s *Server) Push() {
	start := time.Now()
	w := translate.NewWorld(s.opts.Store.Snapshot())
	s.mu.Lock()
	s.world = w
	s.gen++
	gen := s.gen
	proxies := make([]*proxyState, 0, len(s.proxies))
	for _, ps := range s.proxies {
		proxies = append(proxies, ps)
	}
	s.mu.Unlock()

	for _, ps := range proxies {
		s.update(ps, w, gen)
	}
	s.pushedVersion.Store(w.Snap.Version)
	s.pushes.Add(1)
	s.log.Info("pushed config", "version", w.Snap.Version, "proxies", len(proxies), "took", time.Since(start).Round(time.Microsecond))
}

// translateShared is translate.Shared; tests count its calls.
var translateShared = translate.Shared

// sharedLayers returns the scope's layers for this world generation,
// translating at most once per scope and generation. Unchanged layers keep
// their previous identity, so proxies can reuse merged maps.
//
// Concurrent callers for the same scope wait for one translation rather
// than each running their own: when many proxies of a scope connect at
// once, every one of them would otherwise translate the whole mesh (tens
// of MB of garbage each) before the first result is stored.
func (s *Server) sharedLayers(w *translate.World, gen uint64, p *translate.Proxy) [numTypes]*layer {
	key := w.ScopeKey(p)
	s.mu.Lock()
	for {
		if sc, ok := s.scopes[key]; ok && sc.gen >= gen {
			l := sc.layers
			s.mu.Unlock()
			return l
		}
		b, ok := s.building[key]
		if !ok || b.gen < gen {
			break
		}
		s.mu.Unlock()
		<-b.done
		s.mu.Lock()
	}
	b := &scopeBuild{gen: gen, done: make(chan struct{})}
	s.building[key] = b
	s.mu.Unlock()

	fresh := layers(translateShared(w, p, s.log))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.building[key] == b {
		delete(s.building, key)
	}
	close(b.done)
	sc, ok := s.scopes[key]
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
	s.scopes[key] = &scopeState{gen: gen, layers: fresh}
	return fresh
}

func (s *Server) update(ps *proxyState, w *translate.World, gen uint64) {
	shared := s.sharedLayers(w, gen, ps.proxy)
	local := layers(translate.Local(w, ps.proxy, s.log))

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
	ps.version = w.Snap.Version
	ps.updates++
	for ch := range ps.watchers {
		select {
		case ch <- struct{}{}:
		default: // already pending: the stream reads the latest layers
		}
	}
	if ps.sotw > 0 {
		s.setSotW(ps)
	}
}

// setSotW hands the proxy's merged layers to the SotW caches. Caller holds
// ps.mu.
func (s *Server) setSotW(ps *proxyState) {
	shared, local := ps.shared, ps.local
	snap := &snapshot{}
	var changed [numTypes]bool
	for i := range snap.layers {
		if ps.merged[i] != nil && ps.mergedFrom[i] == [2]*layer{shared[i], local[i]} {
			snap.layers[i] = ps.merged[i]
			continue
		}
		ps.mergedFrom[i] = [2]*layer{shared[i], local[i]}
		snap.layers[i] = merge(shared[i], local[i])
		changed[i] = ps.merged[i] == nil || ps.merged[i].version != snap.layers[i].version
		ps.merged[i] = snap.layers[i]
	}
	// Every type's cache holds the same snapshot value and reads only its
	// own type from it.
	for i, c := range s.caches {
		if !changed[i] {
			continue
		}
		if err := c.SetSnapshot(context.Background(), ps.proxy.ID, snap); err != nil {
			s.log.Error("cannot set snapshot", "proxy", ps.proxy.ID, "type", typeURLs[i], "err", err)
		}
	}
}

// onRequest runs for every request on a state-of-the-world stream (delta
// streams are served in delta.go).
func (s *Server) onRequest(streamID int64, node *corev3.Node, typeURL, responseNonce string, errDetail string) error {
	s.mu.Lock()
	id, known := s.streams[streamID]
	if !known {
		p, err := ParseNode(node)
		if err != nil {
			s.mu.Unlock()
			s.log.Warn("refusing xDS stream", "stream", streamID, "err", err)
			return err
		}
		id = p.ID
		s.streams[streamID] = id
		ps := s.register(p)
		w, gen := s.world, s.gen
		s.mu.Unlock()
		ps.mu.Lock()
		ps.sotw++
		ps.mu.Unlock()
		s.log.Info("proxy connected", "proxy", id, "namespace", p.Namespace, "generator", string(p.Generator), "protocol", "sotw")
		s.update(ps, w, gen)
		ps.mu.Lock()
		if ps.merged[0] == nil {
			s.setSotW(ps) // update found the layers current; build the SotW view now
		}
		ps.mu.Unlock()
		s.mu.Lock()
	}
	ps := s.proxies[id]
	s.mu.Unlock()
	if ps == nil {
		return nil
	}
	if errDetail != "" {
		s.nacks.Add(1)
		ps.mu.Lock()
		ps.nacks++
		ps.lastErr = errDetail
		ps.mu.Unlock()
		s.log.Warn("proxy rejected config (NACK)", "proxy", id, "type", typeURL, "nonce", responseNonce, "reason", errDetail)
	}
	return nil
}

// register finds or creates the state of a connecting proxy and counts
// the stream. Caller holds s.mu.
func (s *Server) register(p *translate.Proxy) *proxyState {
	ps, ok := s.proxies[p.ID]
	if !ok {
		ps = &proxyState{proxy: p, sent: map[string]string{}, acked: map[string]string{}, watchers: map[chan struct{}]struct{}{}}
		s.proxies[p.ID] = ps
	}
	ps.refs++
	return ps
}

// release drops one stream of a proxy; the last one forgets the proxy.
// Caller holds s.mu.
func (s *Server) release(ps *proxyState) {
	ps.refs--
	if ps.refs <= 0 {
		delete(s.proxies, ps.proxy.ID)
		for _, c := range s.caches {
			c.ClearSnapshot(ps.proxy.ID)
		}
		s.log.Info("proxy disconnected", "proxy", ps.proxy.ID)
	}
}

// attach registers a delta stream and returns its change notifications.
func (s *Server) attach(p *translate.Proxy) (*proxyState, chan struct{}) {
	s.mu.Lock()
	ps := s.register(p)
	w, gen := s.world, s.gen
	s.mu.Unlock()
	ch := make(chan struct{}, 1)
	ps.mu.Lock()
	ps.watchers[ch] = struct{}{}
	ps.mu.Unlock()
	s.log.Info("proxy connected", "proxy", p.ID, "namespace", p.Namespace, "generator", string(p.Generator), "protocol", "delta")
	s.update(ps, w, gen)
	return ps, ch
}

func (s *Server) detach(ps *proxyState, ch chan struct{}) {
	ps.mu.Lock()
	delete(ps.watchers, ch)
	ps.mu.Unlock()
	s.mu.Lock()
	s.release(ps)
	s.mu.Unlock()
}

// current returns the layers of type i a proxy should have now.
func (s *Server) current(ps *proxyState, i int) (shared, local *layer) {
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

func (s *Server) onClosed(streamID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.streams[streamID]
	if !ok {
		return
	}
	delete(s.streams, streamID)
	ps := s.proxies[id]
	if ps == nil {
		return
	}
	ps.mu.Lock()
	ps.sotw--
	ps.mu.Unlock()
	s.release(ps)
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discoverygrpc.DiscoveryRequest) error {
			errDetail := req.GetErrorDetail().GetMessage()
			if err := s.onRequest(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), errDetail); err != nil {
				return err
			}
			if req.GetErrorDetail() != nil {
				// A NACK carries the last version the client accepted, so the
				// cache would answer with the rejected config at once, and again
				// after every NACK. Claim the client is current instead: it keeps
				// its last good config and gets the next change when there is one.
				if snap, err := s.caches[cacheIndex(req.GetTypeUrl())].GetSnapshot(req.GetNode().GetId()); err == nil {
					req.VersionInfo = snap.GetVersion(req.GetTypeUrl())
				}
			} else if req.GetResponseNonce() != "" {
				s.recordACK(id, req.GetTypeUrl(), req.GetResponseNonce())
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, req *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
			s.recordSent(id, resp.GetTypeUrl(), resp.GetNonce())
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) { s.onClosed(id) },
	}
}

func (s *Server) proxyOf(streamID int64) *proxyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proxies[s.streams[streamID]]
}

// recordACK and recordSent track nonces: a proxy is in sync when it has
// ACKed the last response of every type sent to it.
func (s *Server) recordACK(streamID int64, typeURL, nonce string) {
	if ps := s.proxyOf(streamID); ps != nil {
		ps.mu.Lock()
		ps.acked[typeURL] = nonce
		ps.mu.Unlock()
	}
}

func (s *Server) recordSent(streamID int64, typeURL, nonce string) {
	if ps := s.proxyOf(streamID); ps != nil {
		ps.mu.Lock()
		ps.sent[typeURL] = nonce
		ps.mu.Unlock()
	}
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

// Status lists connected proxies, sorted by id.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	ps := make([]*proxyState, 0, len(s.proxies))
	for _, p := range s.proxies {
		ps = append(ps, p)
	}
	s.mu.Unlock()
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

// NACKs counts rejected responses since start.
func (s *Server) NACKs() int64 { return s.nacks.Load() }

// PushedVersion is the store snapshot version of the last completed
// push: every proxy connected then has been handed config at least that
// new (Status says when each has ACKed it).
func (s *Server) PushedVersion() uint64 { return s.pushedVersion.Load() }

// Pushes counts completed pushes since start.
func (s *Server) Pushes() int64 { return s.pushes.Load() }

// cacheLogger routes go-control-plane's logging into slog at debug level.
// It formats only when the level is enabled: the cache logs every watch
// with its full resource list (thousands of names, sorted by fmt) on
// every ACK, which otherwise dominates a push to many proxies.
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) log(level slog.Level, f string, a []any) {
	if c.l.Enabled(context.Background(), level) {
		c.l.Log(context.Background(), level, "xds cache", "msg", sprintf(f, a...))
	}
}

func (c cacheLogger) Debugf(f string, a ...any) { c.log(slog.LevelDebug, f, a) }
func (c cacheLogger) Infof(f string, a ...any)  { c.log(slog.LevelDebug, f, a) }
func (c cacheLogger) Warnf(f string, a ...any)  { c.log(slog.LevelWarn, f, a) }
func (c cacheLogger) Errorf(f string, a ...any) { c.log(slog.LevelError, f, a) }
