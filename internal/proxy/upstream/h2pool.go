package upstream

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// A host's HTTP/2 connections are kept in lanes: each lane is a Transport
// of its own, which in practice holds one connection, and counts the
// streams the cluster sent through it. That is what two Envoy settings
// need, which Go's Transport cannot express on one connection pool:
//
//   - max_concurrent_streams (DestinationRule http.maxConcurrentStreams):
//     a lane carries at most that many streams; a stream past that opens
//     a new lane, and so a new connection. The Transport itself would
//     only open one at the server's own limit.
//   - max_connection_duration (tcp.maxConnectionDuration), or the proxy's
//     MaxConnectionAge when a cluster sets none: a lane past its age takes
//     no new streams, so new requests go to a new connection, while its
//     streams in flight finish; then its connection closes. This is Envoy's
//     drain of an old connection, and what moves long-lived HTTP/2 and
//     gRPC traffic to new backends that sit behind one address.
//
// A cluster that sets neither and a proxy without MaxConnectionAge keep
// one lane per host, as a single Transport did.

// ageJitter spreads the default age ±10%.
const ageJitter = 0.10

// laneCloseDelay is how long a drained lane's connections are left after
// its last stream ended before they are closed whether or not the
// Transport still counts a stream: Go's HTTP/2 client forgets a finished
// stream on its own goroutine, a moment after the caller saw the end of
// its body, and only then would CloseIdleConnections take the connection.
const laneCloseDelay = 100 * time.Millisecond

// setConnectionOptions takes from c what shapes connections: lifetimes,
// HTTP/2 stream limits and pings, TCP keepalive.
func (cl *Cluster) setConnectionOptions(c *xdsresource.Cluster, opts Options) {
	cl.maxConnDur = c.MaxConnectionDuration
	cl.defaultAge = opts.MaxConnectionAge
	cl.maxStreams = c.MaxConcurrentStreams
	cl.h2Keepalive = c.HTTP2Keepalive
	if c.TCPKeepalive != nil {
		cfg := keepaliveConfig(c.TCPKeepalive)
		cl.dialer.KeepAliveConfig = cfg
		cl.keepalive = &cfg
	}
}

// laneAge is a new lane's age limit: the cluster's max_connection_duration
// exactly, as Envoy (which has no upstream jitter), else the proxy's
// default with jitter; 0 for none.
func (c *Cluster) laneAge() time.Duration {
	if c.maxConnDur > 0 {
		return c.maxConnDur
	}
	if c.defaultAge <= 0 {
		return 0
	}
	f := 1 - ageJitter + 2*ageJitter*rand.Float64()
	return time.Duration(float64(c.defaultAge) * f)
}

// h2Pool is a host's HTTP/2 lanes.
type h2Pool struct {
	c *Cluster
	p *pool

	mu    sync.Mutex
	lanes []*h2Lane
}

// h2Lane is one Transport and what the cluster sent through it.
type h2Lane struct {
	t       *http.Transport
	expires time.Time // zero: never
	timer   *time.Timer
	// Under the pool's mu:
	streams  int
	draining bool
	conns    []net.Conn
}

// RoundTrip sends req on a lane with room, opening one if none has.
func (hp *h2Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	l := hp.acquire()
	resp, err := l.t.RoundTrip(req)
	if err != nil {
		hp.release(l)
		return nil, err
	}
	resp.Body = &laneBody{ReadCloser: resp.Body, hp: hp, l: l}
	return resp, nil
}

func (hp *h2Pool) acquire() *h2Lane {
	now := time.Now()
	hp.mu.Lock()
	defer hp.mu.Unlock()
	var pick *h2Lane
	for _, l := range hp.lanes {
		if l.draining {
			continue
		}
		if !l.expires.IsZero() && !now.Before(l.expires) {
			// Its timer is due; new streams must not wait for it.
			hp.drainLocked(l)
			continue
		}
		if hp.c.maxStreams == 0 || l.streams < int(hp.c.maxStreams) {
			pick = l
			break
		}
	}
	if pick == nil {
		pick = hp.newLaneLocked()
	}
	pick.streams++
	return pick
}

func (hp *h2Pool) newLaneLocked() *h2Lane {
	l := &h2Lane{}
	t := hp.c.transport(hp.p, true)
	t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		cn, err := hp.c.dialHTTP(ctx, hp.p.host, false)
		if err == nil {
			hp.mu.Lock()
			// Connections the Transport lost and replaced go.
			l.conns = slices.DeleteFunc(l.conns, func(c net.Conn) bool { return c.(*conn).closed.Load() })
			l.conns = append(l.conns, cn)
			hp.mu.Unlock()
		}
		return cn, err
	}
	if ka := hp.c.h2Keepalive; ka != nil {
		// Go pings after Interval without a frame from the server,
		// where Envoy pings every Interval: both find a dead
		// connection within Interval+Timeout.
		t.HTTP2 = &http.HTTP2Config{SendPingTimeout: ka.Interval, PingTimeout: ka.Timeout}
	}
	l.t = t
	if age := hp.c.laneAge(); age > 0 {
		l.expires = time.Now().Add(age)
		l.timer = time.AfterFunc(age, func() {
			hp.mu.Lock()
			hp.drainLocked(l)
			hp.mu.Unlock()
		})
	}
	hp.lanes = append(hp.lanes, l)
	return l
}

// drainLocked stops l taking streams, and shuts it when none is left.
func (hp *h2Pool) drainLocked(l *h2Lane) {
	if l.draining {
		return
	}
	l.draining = true
	if l.streams == 0 {
		hp.shutLocked(l)
	}
}

// shutLocked removes a drained lane and closes its connections: the idle
// ones now, the rest (the Transport's view lagging ours) shortly.
func (hp *h2Pool) shutLocked(l *h2Lane) {
	for i, x := range hp.lanes {
		if x == l {
			hp.lanes = append(hp.lanes[:i], hp.lanes[i+1:]...)
			break
		}
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	conns := l.conns
	l.conns = nil
	go l.t.CloseIdleConnections() // takes the Transport's locks: not under ours
	time.AfterFunc(laneCloseDelay, func() {
		for _, cn := range conns {
			cn.Close()
		}
	})
}

func (hp *h2Pool) release(l *h2Lane) {
	hp.mu.Lock()
	l.streams--
	if l.draining && l.streams == 0 {
		hp.shutLocked(l)
	}
	hp.mu.Unlock()
}

// CloseIdleConnections closes every lane's idle connections.
func (hp *h2Pool) CloseIdleConnections() {
	hp.mu.Lock()
	lanes := append([]*h2Lane(nil), hp.lanes...)
	hp.mu.Unlock()
	for _, l := range lanes {
		l.t.CloseIdleConnections()
	}
}

// laneBody ends a stream's count on its lane once the response is done
// with (read to its end or closed).
type laneBody struct {
	io.ReadCloser
	hp   *h2Pool
	l    *h2Lane
	once sync.Once
}

func (b *laneBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(func() { b.hp.release(b.l) })
	}
	return n, err
}

func (b *laneBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.hp.release(b.l) })
	return err
}
