package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the Dialer's zero fields.
const (
	DefaultMaxConnsPerTunnel = 4
	DefaultDialTimeout       = 5 * time.Second
	DefaultIdleTimeout       = 5 * time.Minute
	DefaultHealthCheck       = 30 * time.Second
)

// ErrDialerClosed is returned by Dial after Close.
var ErrDialerClosed = errors.New("tunnel: dialer closed")

// A Dialer opens tunnels through other pods' tunnel ports. It keeps a few
// multiplexed HTTP/2 connections per tunnel address and places each new
// tunnel on one with a free stream, opening another connection (up to
// MaxConnsPerTunnel) only when all are at the server's stream limit. The
// zero value is ready to use; set fields before the first Dial.
type Dialer struct {
	// Source is the address connections are dialed from: the proxy's pod
	// IP, so the server sees which pod calls. Zero lets the kernel choose.
	Source netip.Addr
	// TLSConfig, when set, wraps every connection in TLS (mesh mTLS:
	// certs.ClientConfig); nil speaks plaintext (h2c with prior
	// knowledge). DialHTTP1TLS takes a config per call instead.
	TLSConfig *tls.Config
	// MaxConnsPerTunnel bounds connections per tunnel address; when all
	// are at their stream limit, Dial waits for a stream on the least
	// loaded one. Default DefaultMaxConnsPerTunnel.
	MaxConnsPerTunnel int
	// DialTimeout bounds the TCP connect and TLS handshake of a new
	// connection. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// IdleTimeout closes a connection that has carried no tunnel for this
	// long. Default DefaultIdleTimeout; negative never closes.
	IdleTimeout time.Duration
	// HealthCheck pings a connection that has been silent for this long
	// and drops it if the ping goes unanswered as long, so a dead peer is
	// noticed without waiting for TCP. Default DefaultHealthCheck; negative
	// disables.
	HealthCheck time.Duration

	initOnce sync.Once
	t        *http.Transport

	handshakes, handshakeFailures atomic.Uint64

	mu     sync.Mutex
	pools  map[netip.AddrPort]*pool
	closed bool
}

// pool is the connections to one tunnel address; guarded by Dialer.mu,
// except changed.
type pool struct {
	conns []poolConn
	// dialing is closed when the connection being dialed is ready or
	// failed; nil when no dial is in flight. Only one dial runs at a time
	// so a burst of tunnels to a new peer shares its first connection
	// rather than opening one each.
	dialing chan struct{}
	changed signal // a stream ended or a connection closed
}

type poolConn struct {
	cc    *http.ClientConn
	local net.Addr // its source address, which ClientConn does not tell
	// settled once its first CONNECT is answered; only then may other
	// tunnels use it (see conn).
	settled bool
}

// signal wakes every waiter at once. It has its own lock because
// connection state hooks can run inside ClientConn calls made under
// Dialer.mu.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

func (d *Dialer) init() {
	d.initOnce.Do(func() {
		var protos http.Protocols
		if d.TLSConfig != nil {
			protos.SetHTTP2(true)
		} else {
			protos.SetUnencryptedHTTP2(true)
		}
		hc := positive(d.HealthCheck, DefaultHealthCheck)
		d.t = &http.Transport{
			DialContext:     d.dialTCP,
			DialTLSContext:  d.dialTLS,
			TLSClientConfig: d.TLSConfig,
			Protocols:       &protos,
			IdleConnTimeout: positive(d.IdleTimeout, DefaultIdleTimeout),
			HTTP2: &http.HTTP2Config{
				// RoundTrip on a full connection waits for a stream; the
				// Dialer decides when another connection is worth it.
				StrictMaxConcurrentRequests: true,
				SendPingTimeout:             hc,
				PingTimeout:                 hc,
				// Bulk transfers need more than the 64 KiB-ish default
				// window in flight per stream.
				MaxReceiveBufferPerStream:     1 << 20,
				MaxReceiveBufferPerConnection: 4 << 20,
				MaxReadFrameSize:              64 << 10,
			},
		}
		d.pools = map[netip.AddrPort]*pool{}
	})
}

// positive maps zero to def and negative to zero (off).
func positive(v, def time.Duration) time.Duration {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func positiveInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Dial opens a tunnel to target (the destination "ip:port", which becomes
// the CONNECT :authority as in HBONE) through the tunnel server at
// tunnel (the destination pod's ip:15008), sending header (baggage,
// forwarded identity, x-trellis-*) with the CONNECT. ctx bounds connecting
// and waiting for the server's answer, not the tunnel's life. A refusal
// by the server is a *StatusError.
func (d *Dialer) Dial(ctx context.Context, tunnel netip.AddrPort, target string, header http.Header) (*Conn, error) {
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	d.init()
	for attempt := 0; ; attempt++ {
		cc, local, release, err := d.conn(ctx, tunnel)
		if err != nil {
			return nil, err
		}
		c, err := d.open(ctx, cc, local, tunnel, target, header)
		release()
		if err == nil {
			return c, nil
		}
		// A connection that went away (GOAWAY, reset) between being
		// picked and carrying the stream: the server never answered the
		// CONNECT, so another connection may.
		var se *StatusError
		if attempt > 0 || ctx.Err() != nil || errors.As(err, &se) || cc.Err() == nil {
			return nil, err
		}
	}
}

func checkTarget(target string) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("tunnel: target %q: %w", target, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); host == "" || err != nil || n == 0 {
		return fmt.Errorf("tunnel: target %q: want host:port", target)
	}
	return nil
}

// conn returns a connection to tunnel with a stream reserved for the
// caller's CONNECT, the connection's local address, and a func to call
// once the CONNECT is answered.
//
// On a new connection the first CONNECT is answered before others may
// use it: the answer follows the server's SETTINGS, so only then does
// Available reflect the server's stream limit rather than a guess of 100,
// and a burst is not queued on a connection the server limits lower.
func (d *Dialer) conn(ctx context.Context, tunnel netip.AddrPort) (*http.ClientConn, net.Addr, func(), error) {
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, nil, nil, ErrDialerClosed
		}
		p := d.pools[tunnel]
		if p == nil {
			p = &pool{}
			d.pools[tunnel] = p
		}
		// Taken before looking, so a stream ending meanwhile still wakes
		// this caller.
		changed := p.changed.wait()
		kept := p.conns[:0]
		for _, pc := range p.conns {
			if pc.cc.Err() != nil {
				continue
			}
			kept = append(kept, pc)
		}
		clear(p.conns[len(kept):])
		p.conns = kept
		// The emptiest connection, so tunnels spread and a connection
		// told to go away (no streams Available) drains.
		best, bestAvail := -1, 0
		for i, pc := range p.conns {
			if !pc.settled {
				continue
			}
			if n := pc.cc.Available(); best < 0 || n > bestAvail {
				best, bestAvail = i, n
			}
		}
		if best >= 0 && p.conns[best].cc.Reserve() == nil {
			pc := p.conns[best]
			d.mu.Unlock()
			return pc.cc, pc.local, func() {}, nil
		}
		var wait <-chan struct{}
		if p.dialing != nil {
			wait = p.dialing
		} else if len(p.conns) >= positiveInt(d.MaxConnsPerTunnel, DefaultMaxConnsPerTunnel) {
			wait = changed // all full: wait for a stream to end
		}
		if wait != nil {
			d.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, nil, nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		p.dialing = done
		d.mu.Unlock()

		cc, local, err := d.dialConn(ctx, tunnel)

		d.mu.Lock()
		release := func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			for i := range p.conns {
				if p.conns[i].cc == cc {
					p.conns[i].settled = true
				}
			}
			if p.dialing == done {
				p.dialing = nil
				close(done)
			}
		}
		if err == nil && d.closed {
			cc.Close()
			err = ErrDialerClosed
		}
		if err != nil {
			d.mu.Unlock()
			release()
			return nil, nil, nil, err
		}
		p.conns = append(p.conns, poolConn{cc: cc, local: local})
		cc.SetStateHook(func(*http.ClientConn) { p.changed.notify() })
		err = cc.Reserve()
		d.mu.Unlock()
		if err != nil {
			// Closed as soon as opened; dialing again would likely spin.
			release()
			return nil, nil, nil, fmt.Errorf("tunnel %s: new connection: %w", tunnel, err)
		}
		return cc, local, release, nil
	}
}

type localAddrKey struct{}

func (d *Dialer) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{}
	if d.Source.IsValid() {
		nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(d.Source, 0))
		nd.Control = bindNoPort
	}
	c, err := nd.DialContext(ctx, network, addr)
	if err == nil {
		if slot, ok := ctx.Value(localAddrKey{}).(*net.Addr); ok {
			*slot = c.LocalAddr()
		}
	}
	return c, err
}

// dialTLS is the HTTP/2 connections' TLS dial, made here rather than by
// the Transport so that handshakes are counted.
func (d *Dialer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.TLSConfig == nil {
		return nil, errors.New("tunnel: TLS dial without a TLS config")
	}
	c, err := d.dialTCP(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := d.TLSConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		d.handshakeFailures.Add(1)
		c.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	d.handshakes.Add(1)
	return tc, nil
}

// Stats returns the dialer's TLS counters: handshakes completed and
// failed (the peer refused us, or was not who we expected).
func (d *Dialer) Stats() Stats {
	return Stats{Handshakes: d.handshakes.Load(), HandshakeFailures: d.handshakeFailures.Load()}
}

func (d *Dialer) dialConn(ctx context.Context, tunnel netip.AddrPort) (*http.ClientConn, net.Addr, error) {
	var local net.Addr
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, localAddrKey{}, &local), positive(d.DialTimeout, DefaultDialTimeout))
	defer cancel()
	scheme := "http"
	if d.TLSConfig != nil {
		scheme = "https"
	}
	cc, err := d.t.NewClientConn(ctx, scheme, tunnel.String())
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel %s: %w", tunnel, err)
	}
	return cc, local, nil
}

func (d *Dialer) open(ctx context.Context, cc *http.ClientConn, local net.Addr, tunnel netip.AddrPort, target string, header http.Header) (*Conn, error) {
	pr, pw := io.Pipe()
	// The stream lives until Close, so its context is cut loose from ctx,
	// which only bounds the wait for the answer.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	if header == nil {
		header = http.Header{}
	}
	req := (&http.Request{
		Method:        http.MethodConnect,
		URL:           &url.URL{Host: target},
		Host:          target,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        header,
		Body:          pr,
		ContentLength: -1,
	}).WithContext(sctx)
	resp, err := cc.RoundTrip(req)
	if !stop() {
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		pw.Close()
		return nil, fmt.Errorf("tunnel %s to %s: %w", tunnel, target, ctx.Err())
	}
	if err != nil {
		cancel()
		pw.Close()
		return nil, fmt.Errorf("tunnel %s to %s: %w", tunnel, target, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		pw.Close()
		return nil, &StatusError{Tunnel: tunnel.String(), Target: target, Code: resp.StatusCode, Body: string(body)}
	}
	return &Conn{
		body:   resp.Body,
		pw:     pw,
		cancel: cancel,
		header: resp.Header,
		local:  local,
		remote: targetAddr(target),
	}, nil
}

// Close closes every connection, ending their tunnels; Dial fails after.
func (d *Dialer) Close() error {
	d.init()
	d.mu.Lock()
	d.closed = true
	pools := d.pools
	d.pools = map[netip.AddrPort]*pool{}
	d.mu.Unlock()
	for _, p := range pools {
		for _, pc := range p.conns {
			pc.cc.Close()
		}
	}
	return nil
}

// Conn is one tunnel: a full-duplex byte stream to the target. Write
// sends DATA on the request stream and Read returns the response's DATA.
//
// Deadlines differ from TCP's in one way: a stream read cannot be
// interrupted and resumed, so a deadline that passes ends the tunnel
// (pending and later Reads and Writes fail with an error whose Timeout is
// true, as os.ErrDeadlineExceeded). Moving a deadline before it passes
// behaves as on TCP.
type Conn struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	cancel context.CancelFunc
	header http.Header
	local  net.Addr
	remote net.Addr

	mu      sync.Mutex
	rTimer  *time.Timer
	wTimer  *time.Timer
	expired atomic.Bool
	closed  atomic.Bool
}

var _ net.Conn = (*Conn)(nil)

// Header is the server's 200 response header.
func (c *Conn) Header() http.Header { return c.header }

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	return n, c.mapErr(err)
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.pw.Write(p)
	return n, c.mapErr(err)
}

func (c *Conn) mapErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if c.expired.Load() {
		return os.ErrDeadlineExceeded
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	return err
}

// CloseWrite ends the request stream (END_STREAM): the app behind the
// server reads EOF and can still answer.
func (c *Conn) CloseWrite() error { return c.pw.Close() }

// Close ends both directions; a response not yet read to its end is
// reset (RST_STREAM CANCEL).
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.mu.Lock()
	for _, t := range []*time.Timer{c.rTimer, c.wTimer} {
		if t != nil {
			t.Stop()
		}
	}
	c.mu.Unlock()
	c.abort(net.ErrClosed)
	return nil
}

func (c *Conn) abort(err error) {
	c.pw.CloseWithError(err)
	c.body.Close()
	c.cancel()
}

func (c *Conn) LocalAddr() net.Addr  { return c.local }
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error  { return c.setDeadline(&c.rTimer, t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(&c.wTimer, t) }

func (c *Conn) setDeadline(timer **time.Timer, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return net.ErrClosed
	}
	if *timer != nil {
		(*timer).Stop()
		*timer = nil
	}
	if t.IsZero() {
		return nil
	}
	*timer = time.AfterFunc(time.Until(t), c.expire)
	return nil
}

func (c *Conn) expire() {
	c.expired.Store(true)
	c.abort(os.ErrDeadlineExceeded)
}

// targetAddr is the tunnel's far end as asked for; it may name a host.
type targetAddr string

func (targetAddr) Network() string  { return "tcp" }
func (a targetAddr) String() string { return string(a) }
