package netio

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"
)

// TLS on raw I/O. crypto/tls reads and writes the net.Conn it is given,
// so over a *net.TCPConn every record costs what raw I/O saves plaintext
// connections (a futex wake-up of the runtime's monitor per system call
// after an idle moment, and a read that finds nothing before every wait):
// profiles of the mTLS mesh put that, not the cryptography, at most of
// its extra CPU (docs/performance.md, "mTLS mesh"). ForTLS gives crypto/tls
// a connection whose Read and Write are RawIO's, WrapTLS wraps the
// *tls.Conn built on it, and NewRawIO of that gives the fast path and the
// upstream direct path Serve and WriteAwait through TLS.
//
// Serve decides to wait for the socket when its step finds nothing more
// to read, so the TLS layer must never hold bytes a wait would not
// announce: the connection below hands crypto/tls one record at a time
// (keeping the rest of what read(2) returned itself, where Serve can see
// it), and TLSConn decrypts into a buffer that takes a whole record
// (keeping what its caller's buffer could not take, for whoever reads
// the connection next: RawIO, or a reader the connection is handed to).

// maxPlaintext is the most plaintext one TLS record carries.
const maxPlaintext = 16 << 10

// tlsReadBufSize takes the largest TLS record (plaintext, content type,
// AEAD overhead and padding allowance, header) in one read(2).
const tlsReadBufSize = maxPlaintext + 1024

var tlsBufPool = sync.Pool{New: func() any { b := make([]byte, tlsReadBufSize); return &b }}

// ForTLS returns nc wrapped for crypto/tls to run on with raw system
// calls (see the comment above), or nc itself where NewRawIO would give
// it none (not TCP, the race detector). Deadlines, addresses, Close and
// CloseWrite stay nc's.
func ForTLS(nc net.Conn) net.Conn {
	raw := NewRawIO(nc)
	if raw == nil {
		return nc
	}
	t := &tlsTransport{Conn: nc, raw: raw}
	t.awaitFn = t.awaitFD
	return t
}

// tlsTransport is ForTLS's connection: what crypto/tls reads and writes.
type tlsTransport struct {
	net.Conn
	raw *RawIO

	// Read side, used by one reader at a time (crypto/tls reads under its
	// input lock): what read(2) returned past the record being handed
	// over, and where that record ends.
	rbuf       *[]byte
	roff, rend int
	hdr        [5]byte
	hn         int // header bytes seen of the current record
	left       int // body bytes still to hand over of the current record

	// Write side: while collect is set (RawIO.WriteAwait), records are
	// kept in wbuf, to go in one write(2) that the wait for the answer
	// follows in the same poller operation. mu orders those records
	// before anyone else's.
	mu      sync.Mutex
	collect bool
	wbuf    []byte
	// awaitFn's state: wrote says it tried to write wbuf, wn how much of
	// it went, errno why not all; flushed that all went and t.mu is let go.
	awaitFn func(fd uintptr) bool
	wrote   bool
	flushed bool
	wn      int
	errno   syscall.Errno
}

// errTLSWouldBlock is ErrWouldBlock as crypto/tls must see it: a
// temporary error, which it returns without breaking the connection (a
// permanent one it would keep returning) and after keeping a partial
// record's bytes. RawIO maps it back.
var errTLSWouldBlock net.Error = tlsWouldBlock{}

type tlsWouldBlock struct{}

func (tlsWouldBlock) Error() string   { return ErrWouldBlock.Error() }
func (tlsWouldBlock) Timeout() bool   { return false }
func (tlsWouldBlock) Temporary() bool { return true }

// buffered is how many bytes read(2) returned that crypto/tls has yet to
// be handed.
func (t *tlsTransport) buffered() int { return t.rend - t.roff }

// Read hands crypto/tls bytes up to the end of the record they belong
// to, never past it.
func (t *tlsTransport) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if t.roff == t.rend {
		if t.rbuf == nil {
			t.rbuf = tlsBufPool.Get().(*[]byte)
		}
		n, err := t.raw.Read(*t.rbuf)
		if n == 0 {
			t.release()
			if err == ErrWouldBlock {
				return 0, errTLSWouldBlock
			}
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		t.roff, t.rend = 0, n
	}
	b := (*t.rbuf)[t.roff:t.rend]
	if len(b) > len(p) {
		b = b[:len(p)]
	}
	n := copy(p, b[:t.frame(b)])
	t.roff += n
	if t.roff == t.rend {
		t.release()
	}
	return n, nil
}

// release gives the read buffer back once nothing in it is left to hand
// over, so an idle connection keeps none.
func (t *tlsTransport) release() {
	if t.rbuf != nil {
		tlsBufPool.Put(t.rbuf)
		t.rbuf = nil
	}
	t.roff, t.rend = 0, 0
}

// frame follows TLS record framing over b, the bytes about to be handed
// over, and returns how many of them go: up to the end of the current
// record, or all of b when the record goes on past it.
func (t *tlsTransport) frame(b []byte) int {
	i := 0
	for i < len(b) {
		if t.hn < len(t.hdr) {
			k := copy(t.hdr[t.hn:], b[i:])
			t.hn += k
			i += k
			if t.hn == len(t.hdr) {
				t.left = int(t.hdr[3])<<8 | int(t.hdr[4])
				if t.left == 0 {
					t.hn = 0
					return i
				}
			}
			continue
		}
		k := min(t.left, len(b)-i)
		t.left -= k
		i += k
		if t.left == 0 {
			t.hn = 0
			return i
		}
	}
	return i
}

// Write is crypto/tls's record write: kept for WriteAwait's single
// write while it collects, raw otherwise.
func (t *tlsTransport) Write(p []byte) (int, error) {
	t.mu.Lock()
	if t.collect {
		t.wbuf = append(t.wbuf, p...)
		t.mu.Unlock()
		return len(p), nil
	}
	t.mu.Unlock()
	return t.raw.Write(p)
}

// writeAwait writes what was collected (wbuf; t.mu held, collect set) and
// waits, in the same poller read operation, for the connection to have
// something to read, as RawIO.WriteAwait does. t.mu is let go as soon as
// the records are in the socket, so a record written meanwhile by another
// goroutine (crypto/tls's close_notify on Close, say) waits for them but
// not for the answer. The error is the write's.
func (t *tlsTransport) writeAwait() error {
	t.wrote, t.flushed, t.wn, t.errno = false, false, 0, 0
	t.raw.rc.Read(t.awaitFn)
	if t.flushed {
		return nil
	}
	// Not all of it went inside the operation: the socket's buffer was
	// full, the write failed, or the read deadline had passed or the
	// connection was closed before it began. The records must still go,
	// in order (crypto/tls counted them as sent): the rest goes as Write
	// sends it, ahead of anyone else's.
	var err error
	if t.errno != 0 {
		err = t.raw.opError("write", t.errno)
	} else {
		_, err = t.raw.Write(t.wbuf[t.wn:])
	}
	t.collect = false
	t.wbuf = t.wbuf[:0]
	t.mu.Unlock()
	return err
}

func (t *tlsTransport) awaitFD(fd uintptr) bool {
	if t.wrote {
		return true // readable, or a stale wake-up the next Read sorts out
	}
	t.wrote = true
	for t.wn < len(t.wbuf) {
		p := t.wbuf[t.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			t.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true // full: writeAwait sends the rest
		default:
			t.errno = e
			return true
		}
	}
	t.flushed = true
	t.collect = false
	t.wbuf = t.wbuf[:0]
	t.mu.Unlock()
	return false
}

// NetConn is the connection the TLS records cross, for what is set on
// its socket (keepalive).
func (t *tlsTransport) NetConn() net.Conn { return t.Conn }

// TLSConn is a TLS connection running on ForTLS's connection (WrapTLS),
// whose Read keeps the decrypted bytes a caller's buffer had no room for
// itself rather than leaving them inside crypto/tls, where RawIO.Serve
// could not see them. Everything else is the *tls.Conn's.
type TLSConn struct {
	*tls.Conn
	t  *tlsTransport
	mu sync.Mutex // held for a Read: pbuf and plain are its
	// plain[poff:] is decrypted bytes not yet read, in pbuf; perr the
	// error that came with them.
	pbuf  *[]byte
	plain []byte
	poff  int
	perr  error
}

// WrapTLS returns tc as a *TLSConn when it runs on ForTLS's connection,
// so that NewRawIO gives it raw I/O; tc itself otherwise. Wrap a
// connection before its first Read, and read it only through the
// wrapper.
func WrapTLS(tc *tls.Conn) net.Conn {
	t, ok := tc.NetConn().(*tlsTransport)
	if !ok {
		return tc
	}
	return &TLSConn{Conn: tc, t: t}
}

// Read reads decrypted bytes, whole records at a time from crypto/tls.
func (c *TLSConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.poff < len(c.plain) {
		n := copy(p, c.plain[c.poff:])
		c.poff += n
		if c.poff < len(c.plain) {
			return n, nil
		}
		c.dropPlain()
		err := c.perr
		c.perr = nil
		return n, err
	}
	if len(p) >= maxPlaintext {
		return c.Conn.Read(p)
	}
	if c.pbuf == nil {
		c.pbuf = tlsBufPool.Get().(*[]byte)
	}
	n, err := c.Conn.Read((*c.pbuf)[:maxPlaintext])
	m := copy(p, (*c.pbuf)[:n])
	if m < n {
		c.plain, c.poff, c.perr = (*c.pbuf)[:n], m, err
		return m, nil
	}
	c.dropPlain()
	return m, err
}

func (c *TLSConn) dropPlain() {
	if c.pbuf != nil {
		tlsBufPool.Put(c.pbuf)
		c.pbuf = nil
	}
	c.plain, c.poff = nil, 0
}

// buffered is how many decrypted bytes Read keeps.
func (c *TLSConn) buffered() int { return len(c.plain) - c.poff }

// newTLSRawIO is NewRawIO of a TLSConn (replay: bytes read ahead of its
// plaintext, served first).
func newTLSRawIO(c *TLSConn, replay *Conn) *RawIO {
	r := &RawIO{replay: replay, tlsc: c, tlsT: c.t}
	r.tlsStepFn = r.tlsStep
	return r
}

// tlsRead is Read through TLS.
func (r *RawIO) tlsRead(p []byte) (int, error) {
	n, err := r.tlsc.Read(p)
	return n, tlsErr(err)
}

func tlsErr(err error) error {
	if err == errTLSWouldBlock {
		return ErrWouldBlock
	}
	return err
}

// tlsPending says whether bytes already read from the socket wait in any
// layer above it: a wait for the socket would not announce them.
func (r *RawIO) tlsPending() bool {
	return r.tlsc.buffered() > 0 || r.tlsT.buffered() > 0 || (r.replay != nil && r.replay.Buffered() > 0)
}

// tlsServe is Serve through TLS: the socket's poller operation is the one
// below TLS, and a step that would wait while bytes are pending in TLS's
// layers is run again instead.
func (r *RawIO) tlsServe(step func() bool) error {
	r.step = step
	err := r.tlsT.raw.Serve(r.tlsStepFn)
	r.step = nil
	return err
}

func (r *RawIO) tlsStep() bool {
	for {
		if wait := r.step(); !wait || !r.tlsPending() {
			return wait
		}
	}
}

// tlsWriteAwait is WriteAwait through TLS: crypto/tls's records for p
// are collected and written in one write(2), which the wait follows in
// the same poller operation.
func (r *RawIO) tlsWriteAwait(p []byte) (int, error) {
	if r.tlsPending() {
		return r.tlsc.Write(p) // there is something to read already
	}
	// One WriteAwait at a time: wbuf and the await state are its.
	r.wrMu.Lock()
	defer r.wrMu.Unlock()
	t := r.tlsT
	t.mu.Lock()
	t.collect = true
	t.wbuf = t.wbuf[:0]
	t.mu.Unlock()
	n, err := r.tlsc.Write(p)
	t.mu.Lock()
	if err != nil || len(t.wbuf) == 0 {
		// What was collected still goes, in order: crypto/tls counted
		// those records as sent.
		var werr error
		if len(t.wbuf) > 0 {
			_, werr = t.raw.Write(t.wbuf)
		}
		t.collect = false
		t.wbuf = t.wbuf[:0]
		t.mu.Unlock()
		if err == nil {
			err = werr
		}
		return n, err
	}
	// writeAwait lets t.mu go.
	if werr := t.writeAwait(); werr != nil {
		return n, werr
	}
	return n, nil
}
