package xds

import (
	"log/slog"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
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

	pushed  pushStats // push scheduling (push.go)
	scopes  *scopes   // translation cache (scopes.go)
	streams *streams  // ADS streams (streams.go, delta.go, sotw.go)
	sotw    serverv3.Server
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
		scopes:  newScopes(translate.NewWorld(opts.Store.Snapshot()), opts.Log),
		streams: newStreams(opts.Log),
	}
	s.sotw = s.newSotW()
	return s
}

// Register adds the ADS service to a gRPC server, best one created with
// ServerOptions.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, adsService{Server: s.sotw, s: s})
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

// refresh brings one proxy to world w of generation gen: its scope's
// layers from the translation cache, its own translated fresh, both
// handed to its streams. Push calls it for every proxy; a connecting
// proxy's first stream calls it with the current world.
func (s *Server) refresh(ps *proxyState, w *translate.World, gen uint64) {
	shared, local := s.scopes.translate(w, gen, ps.proxy)
	s.streams.set(ps, gen, w.Snap.Version, shared, local)
}

// Status lists connected proxies, sorted by id.
func (s *Server) Status() []ProxyStatus { return s.streams.status() }

// NACKs counts rejected responses since start.
func (s *Server) NACKs() int64 { return s.streams.nacks.Load() }
