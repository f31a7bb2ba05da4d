// Package tunnel carries TCP streams between sidecars as HTTP/2 CONNECT
// streams, the shape of Istio's HBONE: the client proxy opens a stream to
// the server pod's tunnel port (15008) with :authority set to the
// destination ip:port, and the server proxy connects that stream to the app
// at $POD_IP:<port>. Many tunnels share one HTTP/2 connection, so a busy pod
// pair costs one TCP (later mTLS) handshake rather than one per stream.
//
// Both ends use net/http's own HTTP/2 (Go 1.26), not golang.org/x/net/http2,
// whose HTTP/2 API is deprecated in its favour and from Go 1.27 merely wraps
// it. http.Transport.NewClientConn gives the Dialer single connections it
// pools itself (source address, how many per peer, when to open another,
// reservations via Reserve/Available), and the server hands each CONNECT
// handler a request body and a flushable response that flow independently:
// a full-duplex stream. Protocols selects h2c with prior knowledge until the
// security issue fills in the TLS fields.
package tunnel

import (
	"io"
	"sync"
)

// bufSize matches io.Copy's own buffer: large enough that a bulk transfer
// moves in few syscalls and DATA frames, small enough to pool per stream.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// copyBuffer copies with a pooled buffer. The wrappers hide ReaderFrom and
// WriterTo: for the conns and bodies here those fall back to io.Copy with a
// fresh 32 KiB buffer per call, which is the allocation the pool avoids.
func copyBuffer(dst io.Writer, src io.Reader) (int64, error) {
	buf := bufPool.Get().(*[bufSize]byte)
	defer bufPool.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf[:])
}
