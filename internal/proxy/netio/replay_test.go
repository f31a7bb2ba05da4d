package netio

import (
	"io"
	"net"
	"testing"
)

// Replay serves the bytes read ahead, then the connection's own, and keeps
// half-close on a TCP connection.
func TestReplay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte(" world"))
			c.Close()
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if Replay(nc, nil) != nc {
		t.Errorf("Replay without a prefix must return the connection itself")
	}
	c := Replay(nc, []byte("hello"))
	if _, ok := c.(halfCloser); !ok {
		t.Errorf("Replay of a TCP connection lost CloseWrite")
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello world" {
		t.Errorf("read %q, %v; want the prefix then the connection's bytes", got, err)
	}
}
