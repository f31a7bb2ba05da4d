package xds

import (
	"context"
	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

// State-of-the-world streams (grpc-go's proxyless clients) are served by
// go-control-plane from streams.caches; the callbacks here register the
// proxy on its first request, keep the caches fed (setSotW) and account
// ACKs and NACKs.

// newSotW builds go-control-plane's server over the per-type caches.
func (s *Server) newSotW() serverv3.Server {
	// ads=false (in newStreams): go-control-plane's ADS mode refuses to
	// answer a request that does not name every resource of the type,
	// which is exactly what grpc-go does (it asks for the listener it
	// needs).
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return typeURLs[cacheIndex(r.GetTypeUrl())] },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return typeURLs[cacheIndex(r.GetTypeUrl())] },
		Caches:        map[string]cachev3.Cache{},
	}
	for i, c := range s.streams.caches {
		mux.Caches[typeURLs[i]] = c
	}
	return serverv3.NewServer(context.Background(), mux, s.callbacks())
}

// setSotW hands the proxy's merged layers to the SotW caches. Caller holds
// ps.mu.
func (st *streams) setSotW(ps *proxyState) {
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
	for i, c := range st.caches {
		if !changed[i] {
			continue
		}
		if err := c.SetSnapshot(context.Background(), ps.proxy.ID, snap); err != nil {
			st.m.internalErrors.Inc()
			st.log.Error("cannot set snapshot", "proxy", ps.proxy.ID, "type", typeURLs[i], "err", err)
		}
	}
}

// onRequest runs for every request on a state-of-the-world stream.
func (s *Server) onRequest(streamID int64, node *corev3.Node, typeURL, responseNonce string, errDetail string, errCode int32) error {
	st := s.streams
	st.mu.Lock()
	id, known := st.sotw[streamID]
	if !known {
		p, err := ParseNode(node)
		if err != nil {
			st.mu.Unlock()
			s.log.Warn("refusing xDS stream", "stream", streamID, "err", err)
			return err
		}
		id = p.ID
		st.sotw[streamID] = id
		ps := st.registerLocked(p)
		st.mu.Unlock()
		ps.mu.Lock()
		ps.sotw++
		ps.mu.Unlock()
		s.log.Info("proxy connected", "proxy", id, "namespace", p.Namespace, "generator", string(p.Generator), "protocol", "sotw")
		w, gen := s.scopes.current()
		s.refresh(ps, w, gen)
		ps.mu.Lock()
		if ps.merged[0] == nil {
			st.setSotW(ps) // refresh found the layers current; build the SotW view now
		}
		ps.mu.Unlock()
		st.mu.Lock()
	}
	ps := st.proxies[id]
	st.mu.Unlock()
	if ps == nil {
		return nil
	}
	if errDetail != "" {
		st.nack(ps, typeURL, responseNonce, errDetail, errCode)
	}
	return nil
}

func (st *streams) onClosed(streamID int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	id, ok := st.sotw[streamID]
	if !ok {
		return
	}
	delete(st.sotw, streamID)
	ps := st.proxies[id]
	if ps == nil {
		return
	}
	ps.mu.Lock()
	ps.sotw--
	ps.mu.Unlock()
	st.releaseLocked(ps)
}

// proxyOf is the proxy of a SotW stream.
func (st *streams) proxyOf(streamID int64) *proxyState {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.proxies[st.sotw[streamID]]
}

func (s *Server) callbacks() serverv3.Callbacks {
	st := s.streams
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discoverygrpc.DiscoveryRequest) error {
			errDetail := req.GetErrorDetail().GetMessage()
			if err := s.onRequest(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), errDetail, req.GetErrorDetail().GetCode()); err != nil {
				return err
			}
			if req.GetErrorDetail() != nil {
				// A NACK carries the last version the client accepted, so the
				// cache would answer with the rejected config at once, and again
				// after every NACK. Claim the client is current instead: it keeps
				// its last good config and gets the next change when there is one.
				if snap, err := st.caches[cacheIndex(req.GetTypeUrl())].GetSnapshot(req.GetNode().GetId()); err == nil {
					req.VersionInfo = snap.GetVersion(req.GetTypeUrl())
				}
			} else if req.GetResponseNonce() != "" {
				if ps := st.proxyOf(id); ps != nil {
					ps.ack(req.GetTypeUrl(), req.GetResponseNonce())
				}
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, req *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
			if ps := st.proxyOf(id); ps != nil {
				ps.sentNonce(resp.GetTypeUrl(), resp.GetNonce())
				// go-control-plane builds and sends without telling how long
				// either took: SotW responses are counted, not timed.
				if i := typeIndex(resp.GetTypeUrl()); i >= 0 {
					st.m.pushes.WithLabelValues(metricTypes[i]).Inc()
				}
			}
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) { st.onClosed(id) },
	}
}

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
