package sidecar_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// wsHandshake sends a websocket upgrade through the pod's forward proxy
// (absolute form, as an HTTP_PROXY client does) and returns the 101.
func wsHandshake(t *testing.T, p *meshtest.Pod, target string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c := dialProxy(t, p)
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	req := "GET http://" + target + "/ws HTTP/1.1\r\nHost: " + target + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("handshake: %s (%s) %s", resp.Status, resp.Header.Get("X-Trellis-Flags"), b)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		t.Errorf("Sec-WebSocket-Accept = %q, want %q", got, wsAccept(key))
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !hasToken(resp.Header, "Connection", "upgrade") {
		t.Errorf("101 lacks Upgrade/Connection: %v", resp.Header)
	}
	if hasToken(resp.Header, "Connection", "close") {
		t.Errorf("101 says Connection: close: %v", resp.Header)
	}
	return c, br, resp
}

// wsExchange checks the app's greeting, echoes of a text, a binary frame
// of each length encoding, and the close handshake, byte for byte.
func wsExchange(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	op, payload, masked, err := wsRead(br)
	if err != nil || op != wsText || string(payload) != "hello" || masked {
		t.Fatalf("greeting: op %d %q masked %v err %v", op, payload, masked, err)
	}
	big := make([]byte, 300<<10)
	rand.Read(big)
	for _, m := range []struct {
		op      byte
		payload []byte
	}{{wsText, []byte("ping through two proxies")}, {wsBinary, big[:200]}, {wsBinary, big[:60000]}, {wsBinary, big}} {
		if err := wsWrite(c, m.op, m.payload, true); err != nil {
			t.Fatal(err)
		}
		op, payload, _, err := wsRead(br)
		if err != nil {
			t.Fatalf("echo of %d bytes: %v", len(m.payload), err)
		}
		if op != m.op || !bytes.Equal(payload, m.payload) {
			t.Fatalf("echo of op %d, %d bytes: got op %d, %d bytes (equal %v)", m.op, len(m.payload), op, len(payload), bytes.Equal(payload, m.payload))
		}
	}
	if err := wsWrite(c, wsClose, []byte{0x03, 0xe8}, true); err != nil {
		t.Fatal(err)
	}
	op, payload, _, err = wsRead(br)
	if err != nil || op != wsClose || !bytes.Equal(payload, []byte{0x03, 0xe8}) {
		t.Fatalf("close: op %d %x err %v", op, payload, err)
	}
	// The app closed its connection: the end reaches the client.
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after close: read %d, %v; want EOF", n, err)
	}
}

// A websocket crosses two proxies: the client's forward proxy takes the
// absolute-form upgrade, the tunnel carries it to the app's sidecar, the
// app switches protocols, and frames flow both ways until the close.
func TestWebsocketEchoThroughTwoProxies(t *testing.T) {
	leak.Check(t)
	am := newAppMesh(t, "127.77.10", "", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			wsEcho(w, r)
			return
		}
		io.WriteString(w, "app")
	})
	for range 3 {
		c, br, resp := wsHandshake(t, am.client, "app:8080")
		if got := resp.Header.Get("X-Ws-Proto"); got != "1" {
			t.Errorf("the upgrade reached the app as HTTP/%s, want HTTP/1.1", got)
		}
		wsExchange(t, c, br)
		c.Close()
	}
	// Plain requests still work on the same port afterwards.
	c := am.client.Client()
	defer c.CloseIdleConnections()
	if resp, body := meshtest.Get(t, c, "http://app:8080/", nil); resp.StatusCode != 200 || body != "app" {
		t.Errorf("after websockets: %d %q", resp.StatusCode, body)
	}
}

// tcpApp serves the app's TCP port: after a first line "echo" it echoes
// until the client's FIN and then still sends a last line; after "fin" it
// half-closes at once and reports how many bytes it then received.
func tcpApp(t *testing.T, addr string) <-chan int {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 8)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				cmd, err := br.ReadString('\n')
				if err != nil {
					return
				}
				switch cmd {
				case "echo\n":
					io.WriteString(c, "ready\n")
					if _, err := io.Copy(c, br); err != nil {
						return
					}
					io.WriteString(c, "bye after EOF\n")
				case "fin\n":
					c.(*net.TCPConn).CloseWrite()
					n, _ := io.Copy(io.Discard, br)
					got <- int(n)
				}
			})
		}
	})
	return got
}

// Raw TCP crosses two proxies through the forward proxy's CONNECT: bytes
// echo both ways intact, and a FIN travels each way on its own while the
// other direction keeps flowing (half-close).
func TestTCPEchoThroughTwoProxies(t *testing.T) {
	leak.Check(t)
	am := newAppMesh(t, "127.77.12", "", nil)
	finCounts := tcpApp(t, "127.77.12.2:9000")

	for _, early := range []bool{false, true} {
		// early: the first bytes go in the same write as the CONNECT.
		var c net.Conn
		var br *bufio.Reader
		if early {
			c, br = connectVia(t, am.client, "app:9000", "echo\n")
		} else {
			c, br = connectVia(t, am.client, "app:9000", "")
			io.WriteString(c, "echo\n")
		}
		if line, err := br.ReadString('\n'); line != "ready\n" {
			t.Fatalf("early %v: first line %q, %v", early, line, err)
		}
		payload := make([]byte, 1<<20)
		rand.Read(payload)
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			werr <- err
		}()
		back := make([]byte, len(payload))
		if _, err := io.ReadFull(br, back); err != nil {
			t.Fatalf("early %v: echo: %v", early, err)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, payload) {
			t.Fatalf("early %v: echo differs", early)
		}
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "bye after EOF\n" {
			t.Errorf("early %v: after our FIN got %q, %v; want the app's last line, then EOF", early, rest, err)
		}
		c.Close()
	}

	if got := statsLine(t, am.client, "tcp.downstream_cx_total"); got == "" || got == "0" {
		t.Errorf("tcp.downstream_cx_total = %q, want the TCP connections counted", got)
	}

	// The app half-closes first; what we send afterwards still arrives:
	// sidecars tunnel with HTTP/1.1 CONNECT, a raw TCP stream, so the
	// app's FIN travels as a FIN. (Over HTTP/2 streams on net/http it
	// could not: its server ends a response only by returning from the
	// handler, which resets the request side.)
	t.Run("AppHalfClosesFirst", func(t *testing.T) {
		tcpAppHalfClosesFirst(t, am.client, "app:9000", finCounts)
	})
	// Without a tunnel (a destination outside the mesh, through the
	// passthrough) it works.
	outside := tcpApp(t, "127.77.12.9:9000")
	t.Run("OutsideHalfClosesFirst", func(t *testing.T) {
		tcpAppHalfClosesFirst(t, am.client, "127.77.12.9:9000", outside)
	})
}

func tcpAppHalfClosesFirst(t *testing.T, client *meshtest.Pod, target string, finCounts <-chan int) {
	c, br := connectVia(t, client, target, "")
	io.WriteString(c, "fin\n")
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the app's FIN: read %d, %v; want EOF", n, err)
	}
	const after = 256 << 10
	if _, err := c.Write(make([]byte, after)); err != nil {
		t.Fatalf("writing after the app's FIN: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case n := <-finCounts:
		if n != after {
			t.Errorf("the app got %d bytes after its FIN, want %d", n, after)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app never saw our bytes and FIN after its own FIN")
	}
	c.Close()
}
