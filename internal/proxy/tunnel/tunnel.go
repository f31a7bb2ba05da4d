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
