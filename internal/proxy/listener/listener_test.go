package listener

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

func listen(t *testing.T, opts Options) *Listener {
	t.Helper()
	l, err := Listen("test", "127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Each connection gets its own handler with the address it was headed
// to; connections past MaxConnections are closed on accept and counted.
func TestServeAndConnectionLimit(t *testing.T) {
	leak.Check(t)
	l := listen(t, Options{MaxConnections: 2})
	release := make(chan struct{})
	dsts := make(chan netip.AddrPort, 4)
	served := make(chan error, 1)
	go func() {
		served <- l.Serve(func(c net.Conn, dst netip.AddrPort) {
			dsts <- dst
			<-release
			io.WriteString(c, "bye")
		})
	}()
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for range 2 {
		if dst := <-dsts; dst.String() != l.Addr().String() {
			t.Errorf("dst %v, want the listener's own address %v", dst, l.Addr())
		}
	}
	// The third is over the limit: closed without a handler.
	conns[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conns[2].Read(make([]byte, 1)); err == nil {
		t.Errorf("the connection over the limit read %d bytes", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().CxOverflow != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := l.Stats(); st.CxOverflow != 1 || st.CxActive != 2 || st.CxTotal != 3 {
		t.Errorf("stats %+v, want 1 overflow, 2 active, 3 total", st)
	}
	close(release)
	for _, c := range conns[:2] {
		b, _ := io.ReadAll(c)
		if string(b) != "bye" {
			t.Errorf("read %q", b)
		}
		c.Close()
	}
	conns[2].Close()
	l.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if err := l.Wait(context.Background()); err != nil {
		t.Errorf("Wait: %v", err)
	}
}

// Wait gives handlers until ctx ends, then closes their connections.
func TestWaitClosesWhatOutlivesTheDeadline(t *testing.T) {
	leak.Check(t)
	l := listen(t, Options{})
	started := make(chan struct{})
	go l.Serve(func(c net.Conn, _ netip.AddrPort) {
		close(started)
		io.Copy(io.Discard, c) // until the connection is closed
	})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-started
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); err != context.DeadlineExceeded {
		t.Errorf("Wait = %v, want the deadline", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("the connection outlived Wait's deadline")
	}
}
