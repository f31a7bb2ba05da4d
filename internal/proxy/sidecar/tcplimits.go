package sidecar

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// tcpLimits are what ends a proxied TCP connection besides its peers:
// Envoy's tcp_proxy idle_timeout (no bytes either way for that long; 0:
// never) and max_downstream_connection_duration (0: never), which Istio
// sets from a DestinationRule's connectionPool.tcp idleTimeout and
// maxConnectionDuration.
type tcpLimits struct {
	idle, maxAge time.Duration
	// proxy is the TCP proxy filter the limits come from, whose
	// telemetry (access logs, istio.stats) the connection follows; nil
	// for TCP no filter carries.
	proxy *xdsresource.TCPProxy
}

// defaultTCPLimits are Envoy's for a tcp_proxy that sets neither, used
// for TCP that no TCP proxy filter carries (an HTTP port's non-HTTP
// bytes, CONNECT to the passthrough).
var defaultTCPLimits = tcpLimits{idle: time.Hour}

func tcpLimitsOf(t *xdsresource.TCPProxy) tcpLimits {
	return tcpLimits{idle: t.TCPIdleTimeout(), maxAge: t.MaxConnectionDuration, proxy: t}
}

// limitTCP enforces lim on a connection a proxied to b, by closing both
// when a limit is reached, which ends the copies between them. Idleness
// is read from the kernel (socketIdle: how long since a socket last sent
// or received data) so that the copies keep the kernel's splice path;
// when neither side is a socket, a is returned wrapped to note its
// traffic instead. stop ends the watch.
func limitTCP(a, b net.Conn, lim tcpLimits) (net.Conn, func()) {
	if lim.idle <= 0 && lim.maxAge <= 0 {
		return a, func() {}
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	var stops []func()
	if lim.maxAge > 0 {
		t := time.AfterFunc(lim.maxAge, closeBoth)
		stops = append(stops, func() { t.Stop() })
	}
	if lim.idle > 0 {
		var idleFor func() time.Duration
		if s := upstream.Socket(a); s != nil && kernelIdle {
			idleFor = func() time.Duration { return socketIdle(s) }
		} else if s := upstream.Socket(b); s != nil && kernelIdle {
			idleFor = func() time.Duration { return socketIdle(s) }
		} else {
			w := &activeConn{Conn: a}
			w.touch()
			a = w
			idleFor = w.idleFor
		}
		w := &idleWatch{limit: lim.idle, idleFor: idleFor, expire: closeBoth}
		w.mu.Lock()
		w.t = time.AfterFunc(lim.idle, w.check)
		w.mu.Unlock()
		stops = append(stops, w.stop)
	}
	return a, func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// idleWatch checks a connection's idleness when it could first have been
// idle for its limit, and again at the earliest moment it could be after
// that: one timer, no goroutine, per connection.
type idleWatch struct {
	limit   time.Duration
	idleFor func() time.Duration
	expire  func()

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (w *idleWatch) check() {
	idle := w.idleFor()
	if idle >= w.limit {
		w.expire()
		return
	}
	w.mu.Lock()
	if !w.stopped {
		w.t.Reset(w.limit - idle)
	}
	w.mu.Unlock()
}

func (w *idleWatch) stop() {
	w.mu.Lock()
	w.stopped = true
	w.t.Stop()
	w.mu.Unlock()
}

// activeConn notes when bytes last moved through it, either way.
type activeConn struct {
	net.Conn
	last atomic.Int64 // unix nanoseconds
}

func (c *activeConn) touch() { c.last.Store(time.Now().UnixNano()) }

func (c *activeConn) idleFor() time.Duration {
	return time.Duration(time.Now().UnixNano() - c.last.Load())
}

func (c *activeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *activeConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

// CloseWrite keeps half-close working through the wrapper.
func (c *activeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
