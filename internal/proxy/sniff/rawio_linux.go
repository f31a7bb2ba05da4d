package sniff

import (
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
	rdMu   sync.Mutex // held for a whole Read: rd is its state
	rd     rawOp
	wrMu   sync.Mutex
	wr     rawOp
}

type rawOp struct {
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// NewRawIO returns raw I/O for nc when it is a *net.TCPConn, or one that
// Detect or Replay wrapped (whose bytes read ahead come first); nil
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

// Read is net.Conn's Read.
func (r *RawIO) Read(p []byte) (int, error) {
	if r.replay != nil && r.replay.Buffered() > 0 {
		return r.replay.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	r.rdMu.Lock()
	defer r.rdMu.Unlock()
	op := &r.rd
	op.p, op.n, op.errno = p, 0, 0
	err := r.rc.Read(op.fn)
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

// Write is net.Conn's Write.
func (r *RawIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
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
