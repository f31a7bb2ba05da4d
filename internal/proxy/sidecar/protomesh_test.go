package sidecar_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// appConfig is one Service, app, with a port of each protocol (HTTP on
// 8080 and 8081, gRPC on 7070, TCP on 9000), whose single endpoint base.2 runs a
// sidecar; extra is appended (a DestinationRule, say).
func appConfig(base, extra string) string {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  selector: {app: app}
  ports:
  - {name: http-web, port: 8080}
  - {name: grpc-greet, port: 7070}
  - {name: tcp-echo, port: 9000}
  - {name: http-raw, port: 8081}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: app-1}
spec: {address: %s.2, labels: {app: app, security.istio.io/tlsMode: istio}}
`, base)
	if extra != "" {
		cfg += "---\n" + extra
	}
	return cfg
}

// appMesh is a client pod (base.1) and the app's pod (base.2), each with
// its sidecar, and the app's HTTP server on base.2:8080.
type appMesh struct {
	m              *meshtest.Mesh
	client, server *meshtest.Pod
	base           string
}

// newAppMesh starts the app's HTTP server with h (GET /healthz answers
// 200 before h sees anything), both sidecars, and waits until the client
// reaches the app through them. opts adjust both sidecars' options.
func newAppMesh(t testing.TB, base, extra string, h http.HandlerFunc, opts ...func(*sidecar.Options)) *appMesh {
	t.Helper()
	am := &appMesh{m: meshtest.New(t, appConfig(base, extra)), base: base}
	meshtest.Backend(t, base+".2:8080", "app", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		if h == nil {
			io.WriteString(w, "app")
			return
		}
		h(w, r)
	})
	am.server = am.m.Sidecar("app-1", base+".2", map[string]string{"app": "app"}, opts...)
	am.client = am.m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}, opts...)
	c := am.client.Client()
	defer c.CloseIdleConnections()
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := c.Get("http://app:8080/healthz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "app" {
			return fmt.Sprintf("app answered %d (%s)", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"))
		}
		return ""
	})
	return am
}

// dialProxy opens a raw connection from the pod to its forward proxy.
func dialProxy(t testing.TB, p *meshtest.Pod) net.Conn {
	t.Helper()
	c, err := p.Dialer().Dial("tcp", net.JoinHostPort(p.IP.String(), "15001"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// connectVia opens a CONNECT tunnel to target through the pod's forward
// proxy; early is sent in the same write as the CONNECT request, before
// the proxy answered it. The returned reader has the bytes after the 200.
func connectVia(t testing.TB, p *meshtest.Pod, target string, early string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialProxy(t, p)
	if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"+early); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("CONNECT %s: %s %s", target, resp.Status, b)
	}
	return c, br
}

// A minimal websocket (RFC 6455): enough of the handshake and framing to
// see every byte cross the proxies.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

const (
	wsText   = 1
	wsBinary = 2
	wsClose  = 8
)

// wsWrite writes one final frame, masked as clients must.
func wsWrite(w io.Writer, op byte, payload []byte, masked bool) error {
	hdr := []byte{0x80 | op}
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, mbit|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, mbit|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, mbit|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	body := payload
	if masked {
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		hdr = append(hdr, key[:]...)
		body = make([]byte, len(payload))
		for i, b := range payload {
			body[i] = b ^ key[i%4]
		}
	}
	_, err := w.Write(append(hdr, body...))
	return err
}

// wsRead reads one frame and unmasks it; it reports whether it was masked.
func wsRead(r io.Reader) (op byte, payload []byte, masked bool, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	if h[0]&0x80 == 0 {
		return 0, nil, false, errors.New("fragmented frame")
	}
	op = h[0] & 0x0f
	masked = h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 64<<20 {
		return 0, nil, false, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	if masked {
		if _, err = io.ReadFull(r, key[:]); err != nil {
			return
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return op, payload, masked, nil
}

func hasToken(h http.Header, name, token string) bool {
	for _, v := range h[http.CanonicalHeaderKey(name)] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsEcho is a websocket server: it greets first (a server-first byte must
// not wait for the client), then echoes every frame, and answers a close
// with a close. X-Ws-Proto on the 101 says which HTTP version the request
// reached the app with.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if !hasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") == "" {
		http.Error(w, fmt.Sprintf("not a websocket handshake (HTTP/%d.%d, Connection %q, Upgrade %q)", r.ProtoMajor, r.ProtoMinor, r.Header.Get("Connection"), r.Header.Get("Upgrade")), http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Ws-Proto: %d\r\n\r\n", wsAccept(r.Header.Get("Sec-WebSocket-Key")), r.ProtoMajor)
	// The greeting goes in the same segment as the 101.
	wsWrite(brw, wsText, []byte("hello"), false)
	if brw.Flush() != nil {
		return
	}
	for {
		op, payload, masked, err := wsRead(brw)
		if err != nil {
			return
		}
		if !masked {
			wsWrite(conn, wsClose, []byte{0x03, 0xea}, false) // 1002: protocol error
			return
		}
		if op == wsClose {
			wsWrite(conn, wsClose, payload, false)
			return
		}
		if wsWrite(conn, op, payload, false) != nil {
			return
		}
	}
}
