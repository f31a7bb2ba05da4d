// Package xds serves the translated config to proxies over Envoy's
// Aggregated Discovery Service, both state-of-the-world (grpc-go's
// proxyless clients) and incremental/delta (Trellis's own proxies, so a
// change sends only what changed).
//
// A Server has three parts, each with its own lock:
//   - push scheduling (push.go): config changes are debounced into
//     pushes; each push makes a new world generation and brings every
//     connected proxy to it;
//   - the translation cache (scopes.go): per proxy scope (see
//     translate.World.ScopeKey) the layers translated once per world
//     generation and shared by every proxy of the scope (layers:
//     snapshot.go);
//   - the ADS streams (streams.go): the connected proxies, the layers each
//     was handed, and their ACK, NACK and sync state. Delta streams are
//     served here (delta.go) from the shared layers; state-of-the-world
//     streams go through go-control-plane's snapshot cache with
//     precomputed per-resource versions (sotw.go). NACKs are logged and
//     counted, never answered with the same config again.
//
// Server.refresh is where they meet: it translates for one proxy through
// the cache and hands the layers to its streams.
//
// Create the gRPC server with ServerOptions: delta responses are then
// written from bytes encoded once per scope rather than marshalled per
// stream (codec.go).
package xds
