package sniff

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func rawPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	if raceEnabled {
		t.Skip("RawIO is off under the race detector")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// RawIO reads what was written, waits for data that is not there yet,
// writes more than a socket buffer takes at once, and ends with io.EOF.
func TestRawIOReadWrite(t *testing.T) {
	c, s := rawPair(t)
	rc, rs := NewRawIO(c), NewRawIO(s)
	if rc == nil || rs == nil {
		t.Fatal("no RawIO for a TCP connection")
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		time.Sleep(20 * time.Millisecond) // the reader waits in the poller
		rc.Write([]byte("hello"))
	}()
	buf := make([]byte, 16)
	n, err := rs.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	<-wrote
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		n, err := rc.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		c.CloseWrite()
		done <- err
	}()
	got, err := io.ReadAll(rs)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(big))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, err := rs.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("after the peer's FIN: %d, %v; want EOF", n, err)
	}
}

// Deadlines work as on the connection itself, and so does Close.
func TestRawIODeadlineAndClose(t *testing.T) {
	c, s := rawPair(t)
	rs := NewRawIO(s)
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := rs.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	c.Write([]byte("x"))
	time.Sleep(10 * time.Millisecond)
	if _, err := rs.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read with data but past the deadline: %v, want a timeout", err)
	}
	s.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Close()
	}()
	rs.Read(make([]byte, 8)) // the x
	if _, err := rs.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read on a closed connection: %v, want net.ErrClosed", err)
	}
}

// A reset is an error that says so, as net's.
func TestRawIOReset(t *testing.T) {
	c, s := rawPair(t)
	rs := NewRawIO(s)
	c.SetLinger(0)
	c.Close()
	time.Sleep(20 * time.Millisecond)
	_, err := rs.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after a reset: %v, want ECONNRESET", err)
	}
}

// Bytes Replay or Detect read ahead come first, then the socket.
func TestRawIOReplayFirst(t *testing.T) {
	c, s := rawPair(t)
	rs := NewRawIO(Replay(s, []byte("ahead ")))
	if rs == nil {
		t.Fatal("no RawIO for a replayed TCP connection")
	}
	c.Write([]byte("then the socket"))
	c.CloseWrite()
	got, err := io.ReadAll(rs)
	if err != nil || string(got) != "ahead then the socket" {
		t.Errorf("read %q, %v", got, err)
	}
	if NewRawIO(&net.UnixConn{}) != nil {
		t.Errorf("RawIO for a connection that is not TCP")
	}
}

// Reads from several goroutines at once each get their own bytes, as on
// the connection itself (net/http's Transport may still be reading a
// connection whose protocol switched when its new owner starts to).
func TestRawIOConcurrentReads(t *testing.T) {
	c, s := rawPair(t)
	rs := NewRawIO(s)
	const readers, each = 8, 1000
	got := make(chan int, readers)
	for range readers {
		go func() {
			n := 0
			buf := make([]byte, 7)
			for {
				m, err := rs.Read(buf)
				for _, b := range buf[:m] {
					if b != 'x' {
						t.Errorf("read %q", buf[:m])
					}
				}
				n += m
				if err != nil {
					got <- n
					return
				}
			}
		}()
	}
	for range readers * each {
		c.Write([]byte("x"))
	}
	c.CloseWrite()
	total := 0
	for range readers {
		total += <-got
	}
	if total != readers*each {
		t.Errorf("the readers got %d bytes in all, want %d", total, readers*each)
	}
}
