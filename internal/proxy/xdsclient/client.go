// Package xdsclient is the sidecar's incremental (delta) ADS client: one
// DeltaAggregatedResources stream to the control plane, subscribing
// wildcard to Clusters, ClusterLoadAssignments, Listeners and
// RouteConfigurations (in that order, so a listener never arrives before
// the clusters it names).
//
// Every response is decoded completely before anything is applied: one bad
// resource NACKs the whole response with a path-rooted reason and the last
// good set of that type stays, as Envoy and grpc-go do. While the control
// plane is unreachable the client retries with jittered exponential backoff
// and the caller keeps serving what Apply last gave it; on reconnect the
// client sends the versions it holds (initial_resource_versions), so only
// what changed meanwhile is sent again.
//
// The package links neither grpc nor go-control-plane (see transport.go
// and wire.go): together they would cost the sidecar ~18 MB of RSS.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Config configures Run.
type Config struct {
	// Server is the control plane's xDS address: "127.0.0.1:15010", or
	// "unix:///path/xds.sock" in local mode.
	Server string
	// Node is who this proxy is; the control plane scopes config by it.
	Node Node
	// Types are the type URLs to subscribe to, wildcard, in this order.
	// Default: Cluster, ClusterLoadAssignment, Listener, RouteConfiguration.
	Types []string
	// Decode turns one resource's bytes into its name and typed value; an
	// error NACKs the response. Default: xdsresource.Decode, giving
	// *xdsresource.Cluster, *ClusterLoadAssignment, *Listener and
	// *RouteConfig values. Tests swap it to inject failures.
	Decode func(typeURL string, value []byte) (name string, res any, err error)
	// Backoff paces reconnects.
	Backoff Backoff
	// MaxRecvMsgSize bounds one response (default 64 MiB); the control
	// plane splits states over 16 MiB into several responses.
	MaxRecvMsgSize int
	Log            *slog.Logger
}

// Backoff is a jittered exponential backoff: each wait is a random
// duration in [d/2, d], and d doubles from Initial up to Max. A stream
// that delivered a response resets d to Initial. Jitter spreads the
// reconnects of a thousand sidecars after a control plane restart.
type Backoff struct {
	Initial time.Duration // default 100ms
	Max     time.Duration // default 10s
}

// Node is the proxy's xDS identity, in Istio's form (see ARCHITECTURE.md,
// "Node identity on xDS").
type Node struct {
	// ID defaults to sidecar~<IP>~<Pod>.<Namespace>~<Namespace>.svc.cluster.local.
	ID             string
	IP             string
	Pod            string
	Namespace      string
	Cluster        string
	Labels         map[string]string
	ServiceAccount string
	WorkloadName   string
	// InterceptionMode is "NONE" (explicit: HTTP_PROXY and the tunnel)
	// or "REDIRECT" (transparent capture).
	InterceptionMode string
}

func (n *Node) id() string {
	if n.ID != "" {
		return n.ID
	}
	return fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", n.IP, n.Pod, n.Namespace, n.Namespace)
}

func (n *Node) metadata() map[string]any {
	md := map[string]any{}
	set := func(k, v string) {
		if v != "" {
			md[k] = v
		}
	}
	set("NAMESPACE", n.Namespace)
	set("SERVICE_ACCOUNT", n.ServiceAccount)
	set("WORKLOAD_NAME", n.WorkloadName)
	set("INTERCEPTION_MODE", n.InterceptionMode)
	set("INSTANCE_IPS", n.IP)
	if len(n.Labels) > 0 {
		md["LABELS"] = n.Labels
	}
	return md
}

// Update is one accepted response.
type Update struct {
	TypeURL string
	// Version is the response's system_version_info.
	Version string
	// Resources is the full current set of the type after applying the
	// delta, by name. It is a new map on every update and is never
	// modified afterwards, so the caller may keep it.
	Resources map[string]any
	// Updated are the names added or replaced by this response, and
	// Removed those it deleted, both sorted.
	Updated []string
	Removed []string
}

// Apply installs an update. An error rejects it: the response is NACKed
// with the error's text and the client's set stays as it was.
type Apply func(Update) error

// typeState is what the client holds of one type.
type typeState struct {
	url       string
	resources map[string]any
	versions  map[string]string
	// applied is set once a response of the type was applied, so the
	// first (possibly empty) one always reaches Apply: the caller needs it
	// to know the initial state is complete.
	applied bool
}

type client struct {
	cfg   Config
	t     target
	apply Apply
	log   *slog.Logger
	types map[string]*typeState
	order []*typeState
}

// Run keeps a stream to cfg.Server open until ctx ends, calling apply (from
// this goroutine only, one update at a time) for every accepted response.
// It returns nil once ctx ends, or an error at once if cfg is unusable.
func Run(ctx context.Context, cfg Config, apply Apply) error {
	c, err := newClient(cfg, apply)
	if err != nil {
		return err
	}
	delay := c.cfg.Backoff.Initial
	for {
		healthy, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if healthy {
			delay = c.cfg.Backoff.Initial
		}
		wait := delay/2 + rand.N(delay/2+1)
		c.log.Warn("xDS stream ended; keeping the last config and reconnecting", "server", c.cfg.Server, "err", err, "retry_in", wait)
		delay = min(2*delay, c.cfg.Backoff.Max)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

func newClient(cfg Config, apply Apply) (*client, error) {
	t, err := parseServer(cfg.Server)
	if err != nil {
		return nil, err
	}
	if cfg.Node.ID == "" && (cfg.Node.IP == "" || cfg.Node.Pod == "" || cfg.Node.Namespace == "") {
		return nil, errors.New("xDS node: set Node.ID, or Node.IP, Node.Pod and Node.Namespace to derive it")
	}
	if cfg.Decode == nil {
		cfg.Decode = defaultDecode
	}
	if apply == nil {
		return nil, errors.New("xdsclient: Run needs an apply function")
	}
	if len(cfg.Types) == 0 {
		cfg.Types = []string{xdsresource.ClusterType, xdsresource.EndpointType, xdsresource.ListenerType, xdsresource.RouteType}
	}
	if cfg.Backoff.Initial <= 0 {
		cfg.Backoff.Initial = 100 * time.Millisecond
	}
	if cfg.Backoff.Max < cfg.Backoff.Initial {
		cfg.Backoff.Max = max(10*time.Second, cfg.Backoff.Initial)
	}
	if cfg.MaxRecvMsgSize <= 0 {
		cfg.MaxRecvMsgSize = 64 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &client{cfg: cfg, t: t, apply: apply, log: cfg.Log, types: map[string]*typeState{}}
	for _, u := range cfg.Types {
		if _, dup := c.types[u]; dup {
			return nil, fmt.Errorf("xdsclient: type %s listed twice in Config.Types", u)
		}
		ts := &typeState{url: u, resources: map[string]any{}, versions: map[string]string{}}
		c.types[u] = ts
		c.order = append(c.order, ts)
	}
	return c, nil
}

// session runs one stream until it fails or ctx ends. healthy reports
// whether the server answered at all, which resets the backoff.
func (c *client) session(ctx context.Context) (healthy bool, err error) {
	st := openStream(ctx, c.t, c.cfg.MaxRecvMsgSize)
	defer st.close()
	for i, ts := range c.order {
		req := &deltaRequest{TypeURL: ts.url, Subscribe: []string{"*"}}
		if i == 0 {
			req.Node = &c.cfg.Node
		}
		if len(ts.versions) > 0 {
			req.InitialResourceVersions = maps.Clone(ts.versions)
		}
		if err := st.send(req.marshal()); err != nil {
			return false, err
		}
	}
	for {
		var msg []byte
		select {
		case msg = <-st.msgs:
		case <-st.done:
			return healthy, st.err
		case <-ctx.Done():
			return healthy, ctx.Err()
		}
		if !healthy {
			healthy = true
			c.log.Info("connected to the xDS server", "server", c.cfg.Server, "node", c.cfg.Node.id())
		}
		resp, err := unmarshalResponse(msg)
		if err != nil {
			// Without a type and nonce there is nothing to NACK.
			return healthy, fmt.Errorf("xDS server sent an undecodable response: %w", err)
		}
		ack := &deltaRequest{TypeURL: resp.TypeURL, ResponseNonce: resp.Nonce}
		if err := c.handle(resp); err != nil {
			c.log.Warn("rejected xDS config (NACK); keeping the last good one", "type", resp.TypeURL, "version", resp.SystemVersionInfo, "nonce", resp.Nonce, "reason", err)
			ack.ErrorDetail = &rpcStatus{Code: codeInvalidArgument, Message: truncate(err.Error(), maxReason)}
		}
		if err := st.send(ack.marshal()); err != nil {
			return healthy, err
		}
	}
}

// maxReason bounds a NACK's message: the control plane logs and keeps it.
const maxReason = 16 << 10

// maxErrors bounds how many bad resources one NACK lists.
const maxErrors = 10

// handle decodes and applies one response; an error means NACK.
func (c *client) handle(r *deltaResponse) error {
	ts := c.types[r.TypeURL]
	if ts == nil {
		return fmt.Errorf("type_url %q: not subscribed", r.TypeURL)
	}
	decoded := make(map[string]any, len(r.Resources))
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
		name, v, err := c.cfg.Decode(res.TypeURL, res.Value)
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
	u := Update{TypeURL: r.TypeURL, Version: r.SystemVersionInfo, Resources: next, Updated: updated, Removed: removed}
	if err := c.apply(u); err != nil {
		return fmt.Errorf("applying: %w", err)
	}
	ts.resources, ts.versions, ts.applied = next, nextVersions, true
	c.log.Debug("applied xDS update", "type", r.TypeURL, "version", r.SystemVersionInfo, "updated", len(updated), "removed", len(removed), "total", len(next))
	return nil
}

func truncate(s string, n int) string {
	// A proto3 string must be valid UTF-8, or the server cannot decode
	// the NACK at all.
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
