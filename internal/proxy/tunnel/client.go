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

	"golang.org/x/net/http2"
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
	// TLSConfig, when set, wraps every connection in TLS (the security
	// issue's mTLS); nil speaks h2c with prior knowledge.
	TLSConfig *tls.Config
	// MaxConnsPerTunnel bounds connections per tunnel address; when all
	// are at their stream limit, Dial waits for a stream on the least
	// loaded one. Default DefaultMaxConnsPerTunnel.
	MaxConnsPerTunnel int
	// DialTimeout bounds TCP connect, TLS handshake and the wait for the
	// server's settings on a new connection. Default DefaultDialTimeout.
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
	t        *http2.Transport

	mu     sync.Mutex
	pools  map[netip.AddrPort]*pool
	closed bool
}

// pool is the connections to one tunnel address; guarded by Dialer.mu.
type pool struct {
	conns []*clientConn
	// dialing is closed when the connection being dialed is ready or
	// failed; nil when no dial is in flight. Only one dial runs at a time
	// so a burst of tunnels to a new peer shares its first connection
	// rather than opening one each.
	dialing chan struct{}
}

type clientConn struct {
	cc    *http2.ClientConn
	local net.Addr
}

func (d *Dialer) init() {
	d.initOnce.Do(func() {
		d.t = &http2.Transport{
			AllowHTTP: true,
			// Strict: RoundTrip waits for a free stream instead of failing
			// when a connection is full; the Dialer decides when to open
			// another connection.
			StrictMaxConcurrentStreams: true,
			IdleConnTimeout:            positive(d.IdleTimeout, DefaultIdleTimeout),
			ReadIdleTimeout:            positive(d.HealthCheck, DefaultHealthCheck),
			PingTimeout:                positive(d.HealthCheck, DefaultHealthCheck),
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
		cc, err := d.conn(ctx, tunnel)
		if err != nil {
			return nil, err
		}
		c, err := d.open(ctx, cc, tunnel, target, header)
		if err == nil {
			return c, nil
		}
		// A connection that went away (GOAWAY, reset) between being
		// picked and carrying the stream: the server never saw the
		// CONNECT, so another connection may.
		var se *StatusError
		if attempt > 0 || ctx.Err() != nil || errors.As(err, &se) || !unusable(cc.cc) {
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

func unusable(cc *http2.ClientConn) bool {
	st := cc.State()
	return st.Closed || st.Closing
}

// conn returns a connection to tunnel with a stream reserved for the
// caller's CONNECT.
func (d *Dialer) conn(ctx context.Context, tunnel netip.AddrPort) (*clientConn, error) {
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, ErrDialerClosed
		}
		p := d.pools[tunnel]
		if p == nil {
			p = &pool{}
			d.pools[tunnel] = p
		}
		var least *clientConn
		leastLoad := 0
		kept := p.conns[:0]
		for _, c := range p.conns {
			st := c.cc.State()
			if st.Closed || st.Closing {
				continue // a closing conn closes itself once its streams end
			}
			kept = append(kept, c)
			load := st.StreamsActive + st.StreamsReserved + st.StreamsPending
			if least == nil || load < leastLoad {
				least, leastLoad = c, load
			}
		}
		clear(p.conns[len(kept):])
		p.conns = kept
		if least != nil && uint32(leastLoad) < least.cc.State().MaxConcurrentStreams && least.cc.ReserveNewRequest() {
			d.mu.Unlock()
			return least, nil
		}
		if wait := p.dialing; wait != nil {
			d.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if len(p.conns) >= positiveInt(d.MaxConnsPerTunnel, DefaultMaxConnsPerTunnel) {
			// All full: queue on the least loaded (strict mode waits).
			ok := least.cc.ReserveNewRequest()
			d.mu.Unlock()
			if !ok {
				continue
			}
			return least, nil
		}
		done := make(chan struct{})
		p.dialing = done
		d.mu.Unlock()

		c, err := d.dialConn(ctx, tunnel)

		d.mu.Lock()
		p.dialing = nil
		close(done)
		if err == nil && d.closed {
			c.cc.Close()
			err = ErrDialerClosed
		}
		if err != nil {
			d.mu.Unlock()
			return nil, err
		}
		p.conns = append(p.conns, c)
		ok := c.cc.ReserveNewRequest()
		d.mu.Unlock()
		if ok {
			return c, nil
		}
	}
}

func positiveInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func (d *Dialer) dialConn(ctx context.Context, tunnel netip.AddrPort) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, positive(d.DialTimeout, DefaultDialTimeout))
	defer cancel()
	nd := net.Dialer{}
	if d.Source.IsValid() {
		nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(d.Source, 0))
	}
	nc, err := nd.DialContext(ctx, "tcp", tunnel.String())
	if err != nil {
		return nil, fmt.Errorf("tunnel %s: %w", tunnel, err)
	}
	local := nc.LocalAddr()
	if d.TLSConfig != nil {
		cfg := d.TLSConfig.Clone()
		cfg.NextProtos = []string{http2.NextProtoTLS}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("tunnel %s: %w", tunnel, err)
		}
		nc = tc
	}
	cc, err := d.t.NewClientConn(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("tunnel %s: %w", tunnel, err)
	}
	// The ping's answer follows the server's SETTINGS, so once it returns
	// the stream limit is the server's and not the default guess; placing
	// tunnels by a guess could queue long-lived streams on a full
	// connection.
	if err := cc.Ping(ctx); err != nil {
		cc.Close()
		return nil, fmt.Errorf("tunnel %s: %w", tunnel, err)
	}
	return &clientConn{cc: cc, local: local}, nil
}

func (d *Dialer) open(ctx context.Context, cc *clientConn, tunnel netip.AddrPort, target string, header http.Header) (*Conn, error) {
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
	resp, err := cc.cc.RoundTrip(req)
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
		local:  cc.local,
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
		for _, c := range p.conns {
			c.cc.Close()
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
