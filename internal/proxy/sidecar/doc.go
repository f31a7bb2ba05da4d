// Package sidecar is trellis-proxy's composition: it applies the config
// that xdsclient receives (route tables compiled, upstream clusters made
// and retired, endpoints pushed to balancers), binds the listeners of the
// interception mode, classifies each connection (HTTP, TCP, tunnel) and
// hands it to the HTTP connection manager or a TCP proxy, serves admin and
// health, and drains gracefully on shutdown.
//
// Config lives in two atomically swapped values, routing (listeners and
// routes) and clusterSet, so requests never take a lock; applying an
// update builds new values beside the old ones, and connections in flight
// keep what they hold.
package sidecar
