package hcm

import (
	"io"
	"net/http"
)

// upgrade finishes a request the upstream switched to another protocol
// (websocket): the 101 goes to the client on its hijacked connection, and
// from then on bytes flow both ways until either side closes.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		s.log.Debug("101 without a writable body", "host", r.Host)
		panic(http.ErrAbortHandler)
	}
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 downstream: upgrades do not exist there (RFC 9113 §8.6).
		s.log.Debug("cannot hijack for upgrade", "err", err)
		panic(http.ErrAbortHandler)
	}
	defer conn.Close()
	resp.Header = w.Header()
	resp.Body = nil
	resp.ContentLength = -1
	if err := resp.Write(brw); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Bytes the client sent after its request are already buffered.
		if n := brw.Reader.Buffered(); n > 0 {
			b, _ := brw.Reader.Peek(n)
			if _, err := up.Write(b); err != nil {
				return
			}
		}
		buf := getBuf()
		io.CopyBuffer(up, conn, *buf)
		putBuf(buf)
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	buf := getBuf()
	io.CopyBuffer(conn, up, *buf)
	putBuf(buf)
	conn.Close()
	up.Close()
	<-done
}
