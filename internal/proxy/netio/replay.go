package netio

import (
	"io"
	"net"
	"sync"
)

// Conn is a connection whose first bytes were read ahead (by protocol
// detection, or by a reader buffered past an HTTP head): Read serves them
// before reading from the underlying connection. Everything else
// (Write, Close, addresses, deadlines) is the underlying connection's. Like
// a bufio.Reader, it is not safe for concurrent Reads; concurrent Read and
// Write, or Close, are fine.
type Conn struct {
	net.Conn
	peeked []byte
	buf    *[]byte    // returned to pool once peeked is drained
	pool   *sync.Pool // nil: buf is nobody's to return
}

// halfCloser is what *net.TCPConn, *net.UnixConn and *tls.Conn offer for
// half-close; a TCP proxy needs it to pass one side's FIN to the other.
type halfCloser interface {
	CloseWrite() error
}

// halfCloseConn is returned instead of *Conn when the underlying connection
// can half-close, so that a type assertion to halfCloser tells the truth.
type halfCloseConn struct {
	Conn
}

// CloseWrite shuts down the writing side of the underlying connection.
func (c *halfCloseConn) CloseWrite() error {
	return c.Conn.Conn.(halfCloser).CloseWrite()
}

// Replay returns a connection that serves prefix (bytes already read from
// nc, e.g. by a bufio.Reader past an HTTP head) before reading on from nc,
// keeping nc's half-close and splice paths. prefix must not change after.
func Replay(nc net.Conn, prefix []byte) net.Conn {
	if len(prefix) == 0 {
		return nc
	}
	return wrap(nc, prefix, nil, nil)
}

// ReplayPooled is Replay for bytes read into *buf, a buffer from pool:
// buf goes back to pool once Read has served the last of them, so a
// connection that needed one only for its first read does not keep it.
// peeked must lie within *buf and nothing else may use buf after.
func ReplayPooled(nc net.Conn, peeked []byte, buf *[]byte, pool *sync.Pool) net.Conn {
	if len(peeked) == 0 {
		pool.Put(buf)
		return nc
	}
	return wrap(nc, peeked, buf, pool)
}

func wrap(nc net.Conn, peeked []byte, buf *[]byte, pool *sync.Pool) net.Conn {
	if _, ok := nc.(halfCloser); ok {
		return &halfCloseConn{Conn{Conn: nc, peeked: peeked, buf: buf, pool: pool}}
	}
	return &Conn{Conn: nc, peeked: peeked, buf: buf, pool: pool}
}

// NetConn returns the underlying connection, e.g. for SO_ORIGINAL_DST. Reading
// from it directly skips the bytes read ahead.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Buffered returns how many peeked bytes Read has yet to serve.
func (c *Conn) Buffered() int { return len(c.peeked) }

func (c *Conn) consume(n int) {
	c.peeked = c.peeked[n:]
	if len(c.peeked) == 0 && c.buf != nil {
		c.peeked = nil
		c.pool.Put(c.buf)
		c.buf, c.pool = nil, nil
	}
}

// Read serves the peeked bytes first. It does not top a short peeked read
// up from the network: a caller blocked for more would then wait on the
// client when it already has bytes to act on.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.consume(n)
		return n, nil
	}
	return c.Conn.Read(p)
}

// WriteTo lets io.Copy from this conn keep the underlying connection's
// fast path (splice(2) between TCP sockets on Linux) once the peeked bytes
// are written.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if len(c.peeked) > 0 {
		m, err := w.Write(c.peeked)
		n += int64(m)
		c.consume(m)
		if err != nil {
			return n, err
		}
	}
	var m int64
	var err error
	if wt, ok := c.Conn.(io.WriterTo); ok {
		m, err = wt.WriteTo(w)
	} else {
		m, err = io.Copy(w, readerOnly{c.Conn})
	}
	return n + m, err
}

// ReadFrom keeps the underlying connection's fast path for io.Copy into
// this conn; without it io.Copy would see only the wrapper and fall back
// to a user-space buffer.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// readerOnly and writerOnly hide WriteTo/ReadFrom so io.Copy cannot loop
// back into the wrapper.
type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }
