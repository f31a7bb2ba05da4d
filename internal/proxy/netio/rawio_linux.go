package netio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// RawIO reads and writes a TCP connection with raw read(2) and write(2)
// calls, through the runtime's poller (syscall.RawConn) for waiting and
// deadlines as net.Conn's own Read and Write do. The difference is what a
// system call costs the runtime: net's Read and Write enter it as a
// blocking call, and each entry wakes the runtime's monitor thread (a
// futex) when the process had been idle, which a proxy at a steady
// request rate always has. Reads and writes on a non-blocking socket never
// block, so they need no such accounting. Profiles of a sidecar at 1,000
// requests a second put that wake-up and the monitor's own spinning at a
// tenth of its CPU (docs/performance.md, "Sidecar").
//
// Like net.Conn's, its Reads (and its Writes) may come from several
// goroutines at once: each waits for the one before it, as the
// connection's own lock would have it wait.
type RawIO struct {
	replay *Conn // its peeked bytes are read first
	tcp    *net.TCPConn
	rc     syscall.RawConn
	rdMu   sync.Mutex // held for a whole Read (or Serve): rd is its state
	rd     rawOp
	wrMu   sync.Mutex
	wr     rawOp

	// While Serve runs, serving is set, fd is the socket and step the
	// caller's loop; its Reads then never wait.
	serving bool
	fd      uintptr
	step    func() bool
	serveFn func(fd uintptr) bool
	// awaitFn writes wr.p and then has the poller wait for something to
	// read (WriteAwait); awaited says the write is behind it.
	awaitFn func(fd uintptr) bool
	awaited bool

	// Through TLS (tlsio_linux.go): tlsc runs on tlsT, ForTLS's raw
	// connection, and every operation goes through tlsc; rc and tcp are
	// unset.
	tlsc      *TLSConn
	tlsT      *tlsTransport
	tlsStepFn func() bool
}

// ErrWouldBlock is what a Read inside Serve returns when nothing is there
// to read: the step should return true, to be called again once there is.
var ErrWouldBlock = errors.New("netio: nothing to read yet")

type rawOp struct {
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// NewRawIO returns raw I/O for nc when it is a *net.TCPConn, or a TLS
// connection WrapTLS made (tlsio_linux.go), or one of those that Replay
// or ReplayPooled wrapped (whose bytes read ahead come first); nil
// otherwise, and under the race detector (race.go), and callers use nc's
// own Read and Write.
func NewRawIO(nc net.Conn) *RawIO {
	if raceEnabled {
		return nil
	}
	var replay *Conn
	switch c := nc.(type) {
	case *Conn:
		replay, nc = c, c.Conn
	case *halfCloseConn:
		replay, nc = &c.Conn, c.Conn.Conn
	}
	if tc, ok := nc.(*TLSConn); ok {
		return newTLSRawIO(tc, replay)
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	r := &RawIO{replay: replay, tcp: tcp, rc: rc}
	r.rd.fn = r.readFD
	r.wr.fn = r.writeFD
	r.serveFn = r.serveFD
	r.awaitFn = r.awaitFD
	return r
}

func (r *RawIO) readFD(fd uintptr) bool {
	op := &r.rd
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&op.p[0])), uintptr(len(op.p)))
		switch e {
		case 0:
			op.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for data
		}
		op.errno = e
		return true
	}
}

func (r *RawIO) writeFD(fd uintptr) bool {
	op := &r.wr
	for op.n < len(op.p) {
		p := op.p[op.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			op.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the poller waits for room
		default:
			op.errno = e
			return true
		}
	}
	return true
}

// Read is net.Conn's Read. Inside Serve, called from its step, it reads
// what is there without waiting, and returns ErrWouldBlock when nothing is.
func (r *RawIO) Read(p []byte) (int, error) {
	if r.replay != nil && r.replay.Buffered() > 0 {
		return r.replay.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.tlsc != nil {
		return r.tlsRead(p)
	}
	if r.serving {
		return r.readNow(p)
	}
	r.rdMu.Lock()
	defer r.rdMu.Unlock()
	op := &r.rd
	op.p, op.n, op.errno = p, 0, 0
	return r.readDone(r.rc.Read(op.fn))
}

// readNow is Read inside Serve: one read(2), no wait.
func (r *RawIO) readNow(p []byte) (int, error) {
	op := &r.rd
	op.p, op.n, op.errno = p, 0, 0
	if !r.readFD(r.fd) {
		op.p = nil
		return 0, ErrWouldBlock
	}
	return r.readDone(nil)
}

// readDone is a read's result from rd, once the poller is done (err).
func (r *RawIO) readDone(err error) (int, error) {
	op := &r.rd
	op.p = nil
	switch {
	case err != nil: // closed, or the deadline passed
		return 0, err
	case op.errno != 0:
		return 0, r.opError("read", op.errno)
	case op.n == 0:
		return 0, io.EOF
	}
	return op.n, nil
}

// Serve runs a connection's request loop inside one read operation of
// the runtime's poller, so that after answering a request the loop can
// wait for the next one without first trying a read that finds nothing.
//
// Go's poller forgets, at the start of every read, that the socket
// became readable before it (the read is expected to find those bytes),
// so a plain Read after a response always costs an empty read(2) before
// the wait: a fifth of a sidecar's system calls at a steady request rate.
// Within one operation nothing is forgotten: an arrival while the step
// runs (a pipelined request, say) is remembered and ends the next wait
// at once. So step is called first at once, then again each time the
// connection has something to read; it returns true to wait for that,
// false to end Serve. Inside step, Reads of r (from the calling
// goroutine only) never wait: they return ErrWouldBlock when nothing is
// there. Nothing else may read r while Serve runs, and step must not
// leave anything waiting on such a read, or it would block until Serve
// ends. The error is the wait's: the read deadline passed, or the
// connection was closed.
func (r *RawIO) Serve(step func() (wait bool)) error {
	if r.tlsc != nil {
		return r.tlsServe(step)
	}
	r.rdMu.Lock()
	defer r.rdMu.Unlock()
	r.step = step
	err := r.rc.Read(r.serveFn)
	r.serving, r.step = false, nil
	return err
}

func (r *RawIO) serveFD(fd uintptr) bool {
	r.fd, r.serving = fd, true
	return !r.step()
}

// WriteAwait writes p, as Write, and then waits until the connection
// has something to read, its read deadline passes or it is closed,
// without the read(2) that Read would try first and that, right after a
// request went out, finds nothing (see Serve): for a caller that writes
// a request and reads its answer. What ended the wait is for the next
// Read to find; the error is the write's.
func (r *RawIO) WriteAwait(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.replay != nil && r.replay.Buffered() > 0 {
		return r.Write(p) // there is something to read already
	}
	if r.tlsc != nil {
		return r.tlsWriteAwait(p)
	}
	r.wrMu.Lock()
	op := &r.wr
	op.p, op.n, op.errno = p, 0, 0
	r.awaited = false
	werr := r.rc.Read(r.awaitFn)
	n, errno := op.n, op.errno
	op.p = nil
	r.wrMu.Unlock()
	switch {
	case errno != 0:
		return n, r.opError("write", errno)
	case n == len(p):
		return n, nil
	case werr != nil: // the deadline passed, or closed, before all went
		return n, werr
	}
	// The socket's buffer filled: the rest waits for room as Write does.
	m, err := r.Write(p[n:])
	return n + m, err
}

func (r *RawIO) awaitFD(fd uintptr) bool {
	if r.awaited {
		return true // readable, or a stale wake-up the next Read sorts out
	}
	r.awaited = true
	if !r.writeFD(fd) || r.wr.errno != 0 {
		return true // full, or failed: WriteAwait goes on without waiting
	}
	return false
}

// Write is net.Conn's Write.
func (r *RawIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.tlsc != nil {
		return r.tlsc.Write(p)
	}
	r.wrMu.Lock()
	defer r.wrMu.Unlock()
	op := &r.wr
	op.p, op.n, op.errno = p, 0, 0
	err := r.rc.Write(op.fn)
	op.p = nil
	n := op.n
	switch {
	case err != nil:
		return n, err
	case op.errno != 0:
		return n, r.opError("write", op.errno)
	}
	return n, nil
}

func (r *RawIO) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: r.tcp.LocalAddr(), Addr: r.tcp.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
