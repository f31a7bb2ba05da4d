package hcm

import (
	"io"
	"net/http"
)

// upgrade finishes a request the upstream switched to another protocol
// (websocket): the 101 goes to the client on its hijacked connection, and
// from then on bytes flow both ways until either side closes.
//
// protocol is the upgrade the 101 named, which this hop's response must
// name again (with Connection: Upgrade) since hop-by-hop headers were not
// copied; a 101 that names none, or answers a request that asked for no
// upgrade, is not one the client can follow and is refused.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, resp *http.Response, protocol string) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || protocol == "" || !isUpgradeRequest(r) {
		s.log.Debug("101 not switching to a protocol the client asked for", "host", r.Host, "upgrade", protocol, "writable", ok)
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
	// Written by hand: Response.Write would add Connection: close to a
	// response without a length.
	h := w.Header()
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", protocol)
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	if err := h.Write(brw); err != nil {
		return
	}
	brw.WriteString("\r\n")
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

// CloseWrite half-closes the connection when what it wraps can (TCP, a
// tunnel stream), and closes it otherwise: a CONNECT tunnel passes a
// peer's FIN on with it while the other direction keeps flowing.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
