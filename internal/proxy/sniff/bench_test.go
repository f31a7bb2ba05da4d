package sniff

import (
	"io"
	"net"
	"testing"
	"time"
)

const benchRequest = "GET /productpage HTTP/1.1\r\nHost: productpage:9080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"

// memConn serves one request per Detect with no syscalls, so the benchmark
// measures detection itself.
type memConn struct {
	net.Conn
	data string
	off  int
}

func (c *memConn) Read(p []byte) (int, error) {
	if c.off == len(c.data) {
		return 0, io.EOF
	}
	n := copy(p, c.data[c.off:])
	c.off += n
	return n, nil
}

func (c *memConn) SetReadDeadline(time.Time) error { return nil }

func BenchmarkDetectHTTP1(b *testing.B) {
	c := &memConn{data: benchRequest}
	buf := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		c.off = 0
		res, conn, err := Detect(c, time.Second)
		if err != nil || res.Protocol != HTTP1 {
			b.Fatal(res, err)
		}
		if n, _ := conn.Read(buf); n != len(benchRequest) {
			b.Fatal(n)
		}
	}
}

// BenchmarkDetectHTTP1TCP includes the loopback write, the read syscall and
// the deadline set/clear that a real listener pays.
func BenchmarkDetectHTTP1TCP(b *testing.B) {
	client, server := tcpPair(b)
	buf := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write([]byte(benchRequest)); err != nil {
			b.Fatal(err)
		}
		res, conn, err := Detect(server, time.Second)
		if err != nil || res.Protocol != HTTP1 {
			b.Fatal(res, err)
		}
		if n, _ := io.ReadFull(conn, buf[:len(benchRequest)]); n != len(benchRequest) {
			b.Fatal(n)
		}
	}
}
