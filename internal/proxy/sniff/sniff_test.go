package sniff

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
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
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
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// clientHello captures the first flight a crypto/tls client sends.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(c, cfg).Handshake() //nolint:errcheck // the server end is closed under it
	}()
	var out []byte
	hdr := make([]byte, 5)
	for {
		if _, err := io.ReadFull(s, hdr); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(s, body); err != nil {
			t.Fatal(err)
		}
		out = append(append(out, hdr...), body...)
		hl := int(out[6])<<16 | int(out[7])<<8 | int(out[8])
		if got := handshakeBytes(out); got >= 4+hl {
			break
		}
	}
	s.Close()
	c.Close()
	<-done
	return out
}

func handshakeBytes(records []byte) int {
	n := 0
	for len(records) >= 5 {
		l := int(records[3])<<8 | int(records[4])
		n += l
		records = records[5+l:]
	}
	return n
}

// resplit rewrites a ClientHello's records into records of at most size
// bytes each, as a client or middlebox may legally do.
func resplit(records []byte, size int) []byte {
	var hs []byte
	for len(records) >= 5 {
		l := int(records[3])<<8 | int(records[4])
		hs = append(hs, records[5:5+l]...)
		records = records[5+l:]
	}
	var out []byte
	for len(hs) > 0 {
		n := min(size, len(hs))
		out = append(out, 0x16, 3, 1, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

func longALPN(n int) []string {
	var p []string
	for i := range n {
		p = append(p, strings.Repeat(string(rune('a'+i%26)), 250))
	}
	return p
}

func TestDetect(t *testing.T) {
	leak.Check(t)
	hello := clientHello(t, &tls.Config{ServerName: "Reviews.Default.svc.", NextProtos: []string{"h2", "http/1.1"}})
	big := clientHello(t, &tls.Config{ServerName: "big.example", NextProtos: longALPN(20)})   // > smallPeek, one record
	huge := clientHello(t, &tls.Config{ServerName: "huge.example", NextProtos: longALPN(70)}) // > 16 KiB: two records
	tlsWant := Result{Protocol: TLS, SNI: "reviews.default.svc", ALPN: []string{"h2", "http/1.1"}}
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, far beyond any peek
	tests := []struct {
		name string
		in   []byte
		want Result
	}{
		{"http1 get", []byte("GET /ratings HTTP/1.1\r\nHost: ratings\r\n\r\n"), Result{Protocol: HTTP1, Method: "GET"}},
		{"http1 post with large body", append([]byte("POST /upload HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n"), body...), Result{Protocol: HTTP1, Method: "POST"}},
		{"http1 put", []byte("PUT / HTTP/1.1\r\n\r\n"), Result{Protocol: HTTP1, Method: "PUT"}},
		{"http1 delete", []byte("DELETE /x HTTP/1.0\r\n\r\n"), Result{Protocol: HTTP1, Method: "DELETE"}},
		{"http1 head", []byte("HEAD / HTTP/1.1\r\n\r\n"), Result{Protocol: HTTP1, Method: "HEAD"}},
		{"http1 options", []byte("OPTIONS * HTTP/1.1\r\n\r\n"), Result{Protocol: HTTP1, Method: "OPTIONS"}},
		{"http1 patch", []byte("PATCH / HTTP/1.1\r\n\r\n"), Result{Protocol: HTTP1, Method: "PATCH"}},
		{"http1 connect", []byte("CONNECT reviews:9080 HTTP/1.1\r\n\r\n"), Result{Protocol: HTTP1, Method: "CONNECT"}},
		{"http1 trace", []byte("TRACE / HTTP/1.1\r\n\r\n"), Result{Protocol: HTTP1, Method: "TRACE"}},
		{"h2 preface", []byte(h2Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"), Result{Protocol: HTTP2}},
		{"tls client hello", hello, tlsWant},
		{"tls client hello over 4 KiB", big, Result{Protocol: TLS, SNI: "big.example", ALPN: longALPN(20)}},
		{"tls client hello over two records", huge, Result{Protocol: TLS, SNI: "huge.example", ALPN: longALPN(32)}},
		{"tls client hello in 64-byte records", resplit(hello, 64), tlsWant},
		{"binary garbage", []byte{0x00, 0x01, 0xff, 0xfe, 0x16}, Result{Protocol: TCP}},
		{"redis resp", []byte("*1\r\n$4\r\nPING\r\n"), Result{Protocol: TCP}},
		{"lowercase method", []byte("get / HTTP/1.1\r\n\r\n"), Result{Protocol: TCP}},
		{"method without space", []byte("GETX / HTTP/1.1\r\n"), Result{Protocol: TCP}},
		{"pri but not h2", []byte("PRI * HTTP/1.1\r\n\r\n"), Result{Protocol: TCP}},
		{"tls alert record", []byte{0x15, 3, 3, 0, 2, 2, 40}, Result{Protocol: TCP}},
		{"handshake record not client hello", []byte{0x16, 3, 3, 0, 4, 2, 0, 0, 0}, Result{Protocol: TCP}},
		{"handshake record wrong version", []byte{0x16, 2, 0, 0, 4, 1, 0, 0, 0}, Result{Protocol: TCP}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			detected := make(chan struct{})
			echoed := make(chan []byte, 1)
			go func() {
				// Half-close only after detection, so a decision cannot
				// come from EOF: it must come from the bytes.
				go func() {
					<-detected
					client.CloseWrite()
				}()
				client.Write(tt.in) //nolint:errcheck // a failure shows as a short echo
				got, _ := io.ReadAll(client)
				echoed <- got
			}()
			start := time.Now()
			res, conn, err := Detect(server, 10*time.Second)
			close(detected)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Detect took %v; the bytes should decide without the timeout", d)
			}
			if diff := cmp.Diff(tt.want, res); diff != "" {
				t.Errorf("Detect result (-want +got):\n%s", diff)
			}
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.in) {
				t.Fatalf("replayed %d bytes, want the %d sent (first diff at %d)", len(got), len(tt.in), firstDiff(got, tt.in))
			}
			if _, err := conn.Write(got); err != nil {
				t.Fatal(err)
			}
			hc, ok := conn.(interface{ CloseWrite() error })
			if !ok {
				t.Fatalf("%T over a TCP conn has no CloseWrite", conn)
			}
			if err := hc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if back := <-echoed; !bytes.Equal(back, tt.in) {
				t.Errorf("echo returned %d bytes, want %d", len(back), len(tt.in))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestTLSHandshakeAfterDetect proves the peeked ClientHello is replayed
// byte for byte: a real TLS server completes the handshake over the
// returned conn and negotiates the ALPN Detect reported.
func TestTLSHandshakeAfterDetect(t *testing.T) {
	leak.Check(t)
	client, server := tcpPair(t)
	cert := selfSigned(t, "reviews.default.svc")
	type reply struct {
		proto, msg string
		err        error
	}
	done := make(chan reply, 1)
	go func() {
		tc := tls.Client(client, &tls.Config{ServerName: "reviews.default.svc", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			done <- reply{err: err}
			return
		}
		b, err := io.ReadAll(tc)
		done <- reply{proto: tc.ConnectionState().NegotiatedProtocol, msg: string(b), err: err}
	}()
	res, conn, err := Detect(server, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Protocol: TLS, SNI: "reviews.default.svc", ALPN: []string{"h2", "http/1.1"}}, res); diff != "" {
		t.Errorf("Detect (-want +got):\n%s", diff)
	}
	ts := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err := ts.Handshake(); err != nil {
		t.Fatalf("server handshake over the replayed conn: %v", err)
	}
	if _, err := ts.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	ts.Close()
	r := <-done
	if r.err != nil || r.proto != "h2" || r.msg != "hello" {
		t.Errorf("client got proto %q msg %q err %v, want h2 hello nil", r.proto, r.msg, r.err)
	}
}

func selfSigned(t *testing.T, host string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestServerFirst is MySQL/SMTP: the client says nothing until greeted.
// Detection must give up after the timeout without consuming anything,
// and leave no deadline behind on the connection.
func TestServerFirst(t *testing.T) {
	leak.Check(t)
	client, server := tcpPair(t)
	const timeout = 50 * time.Millisecond
	errc := make(chan error, 1)
	go func() {
		greeting := make([]byte, len("220 smtp ready\r\n"))
		if _, err := io.ReadFull(client, greeting); err != nil {
			errc <- err
			return
		}
		if string(greeting) != "220 smtp ready\r\n" {
			errc <- errors.New("greeting " + string(greeting))
			return
		}
		time.Sleep(3 * timeout) // past the detection deadline
		_, err := client.Write([]byte("EHLO client\r\n"))
		errc <- err
	}()
	start := time.Now()
	res, conn, err := Detect(server, timeout)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Protocol: TCP, TimedOut: true}, res); diff != "" {
		t.Errorf("Detect (-want +got):\n%s", diff)
	}
	if elapsed < timeout || elapsed > 2*time.Second {
		t.Errorf("Detect took %v, want about %v", elapsed, timeout)
	}
	if conn != net.Conn(server) {
		t.Errorf("Detect wrapped a conn it read nothing from: %T", conn)
	}
	if _, err := conn.Write([]byte("220 smtp ready\r\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("EHLO client\r\n"))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("read after detection (deadline not cleared?): %v", err)
	}
	if string(got) != "EHLO client\r\n" {
		t.Errorf("read %q", got)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestSlowClient sends a method in pieces; detection waits for enough
// bytes as long as the timeout allows.
func TestSlowClient(t *testing.T) {
	leak.Check(t)
	client, server := tcpPair(t)
	req := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	go func() {
		client.Write([]byte(req[:2])) //nolint:errcheck
		time.Sleep(50 * time.Millisecond)
		client.Write([]byte(req[2:])) //nolint:errcheck
		client.CloseWrite()
	}()
	res, conn, err := Detect(server, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Protocol: HTTP1, Method: "GET"}, res); diff != "" {
		t.Errorf("Detect (-want +got):\n%s", diff)
	}
	if got, _ := io.ReadAll(conn); string(got) != req {
		t.Errorf("replayed %q, want %q", got, req)
	}
}

// TestStalledPrefix: "GE" then silence is undecidable; after the timeout
// it is TCP and the two bytes are still delivered, followed by the rest.
func TestStalledPrefix(t *testing.T) {
	leak.Check(t)
	client, server := tcpPair(t)
	const timeout = 50 * time.Millisecond
	go func() {
		client.Write([]byte("GE")) //nolint:errcheck
		time.Sleep(3 * timeout)
		client.Write([]byte("T /")) //nolint:errcheck
		client.CloseWrite()
	}()
	res, conn, err := Detect(server, timeout)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Protocol: TCP, TimedOut: true}, res); diff != "" {
		t.Errorf("Detect (-want +got):\n%s", diff)
	}
	if got, err := io.ReadAll(conn); string(got) != "GET /" || err != nil {
		t.Errorf("read %q, %v; want %q", got, err, "GET /")
	}
}

// TestByteAtATime feeds each input one byte per read over net.Pipe, whose
// reads return exactly what one write sent.
func TestByteAtATime(t *testing.T) {
	leak.Check(t)
	hello := clientHello(t, &tls.Config{ServerName: "a.b", NextProtos: []string{"grpc-exp"}})
	tests := []struct {
		in   string
		want Result
	}{
		{"OPTIONS * HTTP/1.1\r\n\r\n", Result{Protocol: HTTP1, Method: "OPTIONS"}},
		{h2Preface, Result{Protocol: HTTP2}},
		{string(hello), Result{Protocol: TLS, SNI: "a.b", ALPN: []string{"grpc-exp"}}},
		{"PATCX", Result{Protocol: TCP}},
	}
	for _, tt := range tests {
		c, s := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range len(tt.in) {
				if _, err := c.Write([]byte{tt.in[i]}); err != nil {
					return
				}
			}
			c.Close()
		}()
		res, conn, err := Detect(s, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, res); diff != "" {
			t.Errorf("%.10q: Detect (-want +got):\n%s", tt.in, diff)
		}
		if _, ok := conn.(interface{ CloseWrite() error }); ok {
			t.Errorf("%T over net.Pipe claims CloseWrite", conn)
		}
		if got, _ := io.ReadAll(conn); string(got) != tt.in {
			t.Errorf("%.10q: replayed %d bytes, want %d", tt.in, len(got), len(tt.in))
		}
		conn.Close()
		<-done
	}
}

func TestClientClosesSilently(t *testing.T) {
	client, server := tcpPair(t)
	client.Close()
	res, conn, err := Detect(server, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Protocol: TCP}, res); diff != "" {
		t.Errorf("Detect (-want +got):\n%s", diff)
	}
	if conn != net.Conn(server) {
		t.Errorf("got %T, want the conn itself", conn)
	}
}

func TestReadErrorReturned(t *testing.T) {
	_, server := tcpPair(t)
	server.Close()
	if _, conn, err := Detect(server, time.Second); err == nil || conn != net.Conn(server) {
		t.Errorf("Detect on a closed conn = %v, %v; want the conn and an error", conn, err)
	}
}

// TestWrapperDeadlines: deadlines set on the returned conn reach the
// socket once the peeked bytes are served.
func TestWrapperDeadlines(t *testing.T) {
	leak.Check(t)
	client, server := tcpPair(t)
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	_, conn, err := Detect(server, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("first read %q, %v", buf[:n], err)
	}
	if _, err := conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v, want a timeout", err)
	}
	if nc := conn.(interface{ NetConn() net.Conn }).NetConn(); nc != net.Conn(server) {
		t.Errorf("NetConn = %T", nc)
	}
}

// TestCopyFastPath: io.Copy between two wrapped TCP conns goes through
// WriteTo/ReadFrom and still delivers the peeked bytes first.
func TestCopyFastPath(t *testing.T) {
	leak.Check(t)
	aClient, aServer := tcpPair(t)
	bClient, bServer := tcpPair(t)
	msg := append([]byte("PUT /x HTTP/1.1\r\n\r\n"), bytes.Repeat([]byte{'x'}, 1<<20)...)
	go func() {
		aClient.Write(msg) //nolint:errcheck
		aClient.CloseWrite()
	}()
	go func() {
		bClient.Write([]byte("POST ")) //nolint:errcheck
	}()
	_, src, err := Detect(aServer, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, dst, err := Detect(bServer, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(bClient)
		got <- b
	}()
	if n, err := io.Copy(dst, src); err != nil || n != int64(len(msg)) {
		t.Fatalf("io.Copy = %d, %v; want %d", n, err, len(msg))
	}
	dst.(interface{ CloseWrite() error }).CloseWrite()
	if b := <-got; !bytes.Equal(b, msg) {
		t.Errorf("copied %d bytes, want %d", len(b), len(msg))
	}
}

// TestClassifyPrefixes: a decision made on a prefix is the decision the
// whole input gets, so reads splitting anywhere cannot change the answer.
func TestClassifyPrefixes(t *testing.T) {
	hello := clientHello(t, &tls.Config{ServerName: "x.y", NextProtos: []string{"h2"}})
	for _, in := range [][]byte{hello, resplit(hello, 7), []byte(h2Preface), []byte("CONNECT a:1 HTTP/1.1\r\n"), []byte("\x16\x03\x01\x00")} {
		full, fullDone, _ := classify(in)
		for i := 1; i < len(in); i++ {
			res, done, _ := classify(in[:i])
			if !done {
				continue
			}
			if !fullDone {
				t.Fatalf("%.8q: prefix %d decided %v but the whole input is undecided", in, i, res)
			}
			if diff := cmp.Diff(full, res); diff != "" {
				t.Fatalf("%.8q: prefix %d decided differently (-whole +prefix):\n%s", in, i, diff)
			}
		}
	}
}

func TestParseClientHelloMalformed(t *testing.T) {
	hello := clientHello(t, &tls.Config{ServerName: "x.y", NextProtos: []string{"h2"}})
	body := hello[9:]
	for i := range len(body) {
		parseClientHello(body[:i]) // must not panic on any truncation
	}
	if sni, alpn, ok := parseClientHello(body); !ok || sni != "x.y" || !cmp.Equal(alpn, []string{"h2"}) {
		t.Errorf("parseClientHello = %q %q %v", sni, alpn, ok)
	}
	for _, h := range []string{"", ".", "a\x00b", "ü.example", strings.Repeat("a", 254)} {
		if got := hostName([]byte(h)); got != "" {
			t.Errorf("hostName(%q) = %q, want empty", h, got)
		}
	}
}

func TestProtocolString(t *testing.T) {
	for p, want := range map[Protocol]string{TCP: "tcp", HTTP1: "http/1.1", HTTP2: "h2c", TLS: "tls", 9: "unknown"} {
		if p.String() != want {
			t.Errorf("%d.String() = %q", p, p.String())
		}
	}
}
