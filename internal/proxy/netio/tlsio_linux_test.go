package netio

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"slices"
	"testing"
	"time"
)

// tlsPair is rawPair inside TLS 1.3, each side on ForTLS's connection and
// wrapped by WrapTLS (plainClient: the client on its *net.TCPConn, as a
// peer without raw I/O would be).
func tlsPair(t *testing.T, plainClient bool) (client, server net.Conn) {
	t.Helper()
	c, s := rawPair(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "netio"},
		DNSNames:     []string{"netio"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(der)
	roots.AddCert(leaf)
	var cc net.Conn = c
	if !plainClient {
		cc = ForTLS(c)
	}
	tc := tls.Client(cc, &tls.Config{MinVersion: tls.VersionTLS13, ServerName: "netio", RootCAs: roots, DynamicRecordSizingDisabled: true})
	ts := tls.Server(ForTLS(s), &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true})
	errc := make(chan error, 1)
	go func() { errc <- ts.Handshake() }()
	if err := tc.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return WrapTLS(tc), WrapTLS(ts)
}

// A TLS connection on ForTLS's raw connection gets RawIO, which reads what
// was written (through a caller's buffer smaller than a record too),
// writes more than a socket buffer takes, and ends with io.EOF.
func TestTLSRawIOReadWrite(t *testing.T) {
	c, s := tlsPair(t, false)
	rc, rs := NewRawIO(c), NewRawIO(s)
	if rc == nil || rs == nil {
		t.Fatal("no RawIO for a TLS connection on ForTLS")
	}
	if rc.tlsc == nil || rs.tlsc == nil {
		t.Fatal("RawIO of a TLS connection is not through TLS")
	}
	if _, ok := c.(*TLSConn); !ok {
		t.Fatalf("WrapTLS gave %T, want *TLSConn", c)
	}
	go func() {
		time.Sleep(20 * time.Millisecond) // the reader waits in the poller
		rc.Write([]byte("hello, world"))
	}()
	small := make([]byte, 5)
	var got []byte
	for len(got) < len("hello, world") {
		n, err := rs.Read(small)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, small[:n]...)
	}
	if string(got) != "hello, world" {
		t.Fatalf("read %q through a 5-byte buffer", got)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		n, err := rc.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	all, err := io.ReadAll(io.LimitReader(rs, int64(len(big))))
	if err != nil || !bytes.Equal(all, big) {
		t.Fatalf("read %d of %d bytes, equal %v: %v", len(all), len(big), bytes.Equal(all, big), err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write of 4 MiB: %v", err)
	}
	c.Close()
	if n, err := rs.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v, want io.EOF", n, err)
	}
}

// Serve through TLS does not wait while bytes already read from the
// socket wait above it: records that arrived together, of which a step
// read one, and a record's plaintext a step's buffer had no room for.
// Either would otherwise sit unserved until the peer sent more (here: the
// read deadline).
func TestTLSRawIOServeNothingLeftAbove(t *testing.T) {
	c, s := tlsPair(t, true)
	rs := NewRawIO(s)
	s.SetReadDeadline(time.Now().Add(2 * time.Second)) // a lost record fails, not hangs
	// Three records in the socket before the server reads: one read(2)
	// takes them all.
	for _, m := range []string{"one", "two", "three-and-more"} {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	var got []string
	buf := make([]byte, 8)
	err := rs.Serve(func() bool {
		n, err := rs.Read(buf)
		switch {
		case errors.Is(err, ErrWouldBlock):
			return true
		case err != nil:
			t.Errorf("read in a step: %v", err)
			return false
		}
		got = append(got, string(buf[:n]))
		// Wait after every read, as the fast path does after answering a
		// request whose bytes its buffer held exactly.
		return len(got) < 4
	})
	if err != nil {
		t.Fatalf("Serve: %v after reading %q", err, got)
	}
	if want := []string{"one", "two", "three-an", "d-more"}; !slices.Equal(got, want) {
		t.Errorf("steps read %q, want %q", got, want)
	}
}

// Serve through TLS waits for records in the poller (a record arriving
// while a step runs ends the next wait at once), leaves a partial record
// for the next step, and ends with the read deadline.
func TestTLSRawIOServeWaits(t *testing.T) {
	c, s := tlsPair(t, false)
	rc, rs := NewRawIO(c), NewRawIO(s)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	rc.Write([]byte("one"))
	var got []string
	buf := make([]byte, 64)
	err := rs.Serve(func() bool {
		n, err := rs.Read(buf)
		switch {
		case errors.Is(err, ErrWouldBlock):
			return true
		case err != nil:
			t.Errorf("read in a step: %v", err)
			return false
		}
		got = append(got, string(buf[:n]))
		switch len(got) {
		case 1:
			rc.Write([]byte("two"))
			time.Sleep(50 * time.Millisecond)
			return true
		case 2:
			time.AfterFunc(30*time.Millisecond, func() { rc.Write([]byte("three")) })
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
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := rs.Serve(func() bool { return true }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Serve past the deadline: %v, want a timeout", err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	// The connection still works: a timeout breaks nothing in TLS.
	go func() { time.Sleep(20 * time.Millisecond); rc.Write([]byte("four")) }()
	if n, err := rs.Read(buf); err != nil || string(buf[:n]) != "four" {
		t.Errorf("read after Serve: %q, %v", buf[:n], err)
	}
}

// WriteAwait through TLS sends the request's records and returns once
// the answer is there; a 4 MiB request (many records, more than the
// socket takes at once) arrives whole; an unanswered one ends with the
// deadline and the connection still works; and Close during the wait
// returns at once.
func TestTLSRawIOWriteAwait(t *testing.T) {
	c, s := tlsPair(t, false)
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
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	go answer(1+3, "yes")
	if _, err := rc.WriteAwait([]byte("abc")); err != nil {
		t.Fatalf("WriteAwait after a timeout: %v", err)
	}
	if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "yes" {
		t.Fatalf("read after a timeout: %q, %v", buf[:n], err)
	}

	// Close while WriteAwait waits: its close_notify goes behind the
	// request's records without waiting for the answer.
	closed := make(chan error, 1)
	time.AfterFunc(30*time.Millisecond, func() { closed <- c.Close() })
	start = time.Now()
	rc.WriteAwait([]byte("never answered"))
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("WriteAwait waited %v after Close", waited)
	}
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close blocked behind WriteAwait's wait")
	}
	got, _ := io.ReadAll(s)
	if string(got) != "never answered" {
		t.Errorf("the peer read %q before the close", got)
	}
}

// Decrypted bytes a RawIO Read had no room for are the connection's, not
// RawIO's: a reader the connection is handed to (the fast path hands
// HTTP/2, upgrades and chunked requests to net/http, which reads the
// connection itself) reads them next, in order.
func TestTLSConnKeepsWhatAReadLeft(t *testing.T) {
	c, s := tlsPair(t, false)
	rs := NewRawIO(s)
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\nhanded-over bytes")); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, len("GET / HTTP/1.1\r\n\r\n"))
	if _, err := io.ReadFull(rs, head); err != nil {
		t.Fatal(err)
	}
	c.Close()
	rest, err := io.ReadAll(Replay(s, nil))
	if err != nil || string(rest) != "handed-over bytes" {
		t.Fatalf("the connection read on %q, %v; want the rest of the record", rest, err)
	}
}
