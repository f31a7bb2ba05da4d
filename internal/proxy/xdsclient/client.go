package xdsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"
)

// Config configures Run.
type Config struct {
	// Server is the control plane's xDS address: "127.0.0.1:15010", or
	// "unix:///path/xds.sock" in local mode.
	Server string
	// TLS, when set, dials Server over TLS with it (ALPN h2): in
	// production the control plane's secure port, with the proxy's
	// workload certificate as client certificate and the server's
	// verified against the mesh root (certs.ControlPlaneConfig). Nil
	// keeps plaintext h2c, for loopback and local tests.
	TLS *tls.Config
	// Node is who this proxy is; the control plane scopes config by it.
	Node Node
	// Backoff paces reconnects.
	Backoff Backoff
	// MaxRecvMsgSize bounds one response (default 64 MiB); the control
	// plane splits states over 16 MiB into several responses.
	MaxRecvMsgSize int
	Log            *slog.Logger
	// Connected, if set, hears when a stream starts delivering config
	// (true) and when that stream ends (false), for the proxy's health
	// metrics.
	Connected func(bool)
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

// NodeID is the node id the proxy sends: ID, else Istio's form
// sidecar~<IP>~<Pod>.<Namespace>~<Namespace>.svc.cluster.local.
func (n *Node) NodeID() string {
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

type client struct {
	cfg   Config
	t     target
	log   *slog.Logger
	types map[string]subscription
	order []subscription
}

// Run keeps a stream to cfg.Server open until ctx ends, subscribing to
// each of subs' types in their order and calling its apply function (from
// this goroutine only, one update at a time) for every accepted response
// of the type. It returns nil once ctx ends, or an error at once if cfg or
// subs are unusable.
func Run(ctx context.Context, cfg Config, subs ...Subscription) error {
	c, err := newClient(cfg, subs...)
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

func newClient(cfg Config, subs ...Subscription) (*client, error) {
	t, err := parseServer(cfg.Server)
	if err != nil {
		return nil, err
	}
	if cfg.Node.ID == "" && (cfg.Node.IP == "" || cfg.Node.Pod == "" || cfg.Node.Namespace == "") {
		return nil, errors.New("xDS node: set Node.ID, or Node.IP, Node.Pod and Node.Namespace to derive it")
	}
	if len(subs) == 0 {
		return nil, errors.New("xdsclient: Run needs at least one Subscription")
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
	c := &client{cfg: cfg, t: t, log: cfg.Log, types: map[string]subscription{}}
	for _, sub := range subs {
		ts := sub.s
		if ts == nil {
			return nil, errors.New("xdsclient: a zero Subscription; make them with Subscribe")
		}
		if err := ts.valid(); err != nil {
			return nil, err
		}
		u := ts.typeURL()
		if _, dup := c.types[u]; dup {
			return nil, fmt.Errorf("xdsclient: type %s subscribed twice", u)
		}
		c.types[u] = ts
		c.order = append(c.order, ts)
	}
	return c, nil
}

// session runs one stream until it fails or ctx ends. healthy reports
// whether the server answered at all, which resets the backoff.
func (c *client) session(ctx context.Context) (healthy bool, err error) {
	st := openStream(ctx, c.t, c.cfg.TLS, c.cfg.MaxRecvMsgSize)
	defer st.close()
	defer func() {
		if healthy && c.cfg.Connected != nil {
			c.cfg.Connected(false)
		}
	}()
	for i, ts := range c.order {
		req := &deltaRequest{TypeURL: ts.typeURL(), Subscribe: []string{"*"}, InitialResourceVersions: ts.versionsHeld()}
		if i == 0 {
			req.Node = &c.cfg.Node
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
			c.log.Info("connected to the xDS server", "server", c.cfg.Server, "node", c.cfg.Node.NodeID())
			if c.cfg.Connected != nil {
				c.cfg.Connected(true)
			}
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
	return ts.handle(r, c.log)
}

func truncate(s string, n int) string {
	// A proto3 string must be valid UTF-8, or the server cannot decode
	// the NACK at all.
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
