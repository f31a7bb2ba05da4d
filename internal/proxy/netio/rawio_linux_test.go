package netio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"slices"
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

// Bytes read ahead (Replay) come first, then the socket.
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

// Serve calls its step at once and again whenever there is something to
// read. Bytes that arrive while a step runs, and that the poller has
// already seen by the time the step ends without reading them, end the
// next wait at once: an ordinary Read there would forget them and wait
// for more that never comes (here, until the deadline).
func TestRawIOServeRemembersArrivals(t *testing.T) {
	c, s := rawPair(t)
	rs := NewRawIO(s)
	s.SetReadDeadline(time.Now().Add(5 * time.Second)) // a lost wake-up fails, not hangs
	c.Write([]byte("one"))
	var got []string
	blocked := 0
	buf := make([]byte, 16)
	err := rs.Serve(func() bool {
		n, err := rs.Read(buf)
		switch {
		case errors.Is(err, ErrWouldBlock):
			blocked++
			return true
		case err != nil:
			t.Errorf("read in a step: %v", err)
			return false
		}
		got = append(got, string(buf[:n]))
		switch len(got) {
		case 1:
			// "two" arrives while this step runs; sleeping lets the
			// runtime poll the network and see it first.
			c.Write([]byte("two"))
			time.Sleep(50 * time.Millisecond)
			return true // without reading it
		case 2:
			time.AfterFunc(30*time.Millisecond, func() { c.Write([]byte("three")) })
			return true
		}
		return false
	})
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if want := []string{"one", "two", "three"}; !slices.Equal(got, want) {
		t.Errorf("steps read %q, want %q", got, want)
	}
	if blocked > 1 {
		t.Errorf("%d steps found nothing to read, want at most one (a stale wake-up)", blocked)
	}
	// Reads after Serve wait again.
	go func() { time.Sleep(20 * time.Millisecond); c.Write([]byte("four")) }()
	if n, err := rs.Read(buf); err != nil || string(buf[:n]) != "four" {
		t.Errorf("read after Serve: %q, %v", buf[:n], err)
	}
}

// Serve's wait ends with the read deadline, and with Close.
func TestRawIOServeDeadlineAndClose(t *testing.T) {
	_, s := rawPair(t)
	rs := NewRawIO(s)
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	steps := 0
	err := rs.Serve(func() bool { steps++; return true })
	if !errors.Is(err, os.ErrDeadlineExceeded) || steps != 1 {
		t.Fatalf("Serve past the deadline: %v after %d steps, want a timeout after 1", err, steps)
	}
	s.SetReadDeadline(time.Time{})
	time.AfterFunc(20*time.Millisecond, func() { s.Close() })
	if err := rs.Serve(func() bool { return true }); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a connection closed meanwhile: %v, want net.ErrClosed", err)
	}
}

// WriteAwait writes everything, socket buffers' worth or more, and
// returns once the answer is there to read; a deadline or a peer that
// is gone ends it too, and the next Read says which.
func TestRawIOWriteAwait(t *testing.T) {
	c, s := rawPair(t)
	rc := NewRawIO(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer := func(want int, reply string) {
		got, err := io.ReadFull(s, make([]byte, want))
		if err != nil {
			t.Errorf("the peer read %d bytes: %v", got, err)
			return
		}
		time.Sleep(30 * time.Millisecond)
		s.Write([]byte(reply))
	}
	go answer(4, "pong")
	start := time.Now()
	if n, err := rc.WriteAwait([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("WriteAwait: %d, %v", n, err)
	}
	if waited := time.Since(start); waited < 25*time.Millisecond {
		t.Errorf("WriteAwait returned after %v, before the answer (30ms)", waited)
	}
	buf := make([]byte, 16)
	if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("read after WriteAwait: %q, %v", buf[:n], err)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	go answer(len(big), "ok")
	if n, err := rc.WriteAwait(big); n != len(big) || err != nil {
		t.Fatalf("WriteAwait of 4 MiB: %d, %v", n, err)
	}
	if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "ok" {
		t.Fatalf("read after the big WriteAwait: %q, %v", buf[:n], err)
	}

	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if n, err := rc.WriteAwait([]byte("x")); n != 1 || err != nil {
		t.Fatalf("WriteAwait unanswered: %d, %v; want the write's success", n, err)
	}
	if _, err := rc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after an unanswered WriteAwait: %v, want a timeout", err)
	}

	// A peer that closed while the connection sat idle: its reset ends
	// the wait long before the deadline.
	io.ReadFull(s, make([]byte, 1))
	s.Close()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start = time.Now()
	rc.WriteAwait([]byte("y"))
	_, err := rc.Read(buf)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("after writing to a closed peer: %v after %v, want EOF or a reset at once", err, time.Since(start))
	}
}
