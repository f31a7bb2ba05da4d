package hcm

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// FuzzH2Watch feeds arbitrary bytes after the client preface to the HTTP/2
// watch, split into reads at arbitrary points: it runs on net/http's
// reading goroutine, so it must never panic, whatever a client sends.
func FuzzH2Watch(f *testing.F) {
	f.Add([]byte("\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"), uint8(3))
	f.Add([]byte("\r\n\r\nSM\r\n\r\n\x00\x00\x05\x01\x08\x00\x00\x00\x01\x09abcd"), uint8(1))
	f.Add([]byte("\r\n\r\nSM\r\n\r\n\x00\x00\x03\x01\x24\x00\x00\x00\x01\x82\x84\x86\x00\x00\x01\x09\x04\x00\x00\x00\x01\x87"), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		stats := &Stats{}
		c := &headerConn{Conn: &Conn{Conn: a}, stats: stats, h2lim: newH2Limits(100, time.Hour)}
		step := int(split)%16 + 1
		for len(data) > 0 {
			k := min(step, len(data))
			c.watchH2(data[:k], nil)
			data = data[k:]
		}
	})
}

// BenchmarkH2Watch is the watch's cost per HTTP/2 request: the frame
// header and header block of a typical gRPC-like request, HPACK-encoded
// as a client would after the first request (mostly indexed).
func BenchmarkH2Watch(b *testing.B) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "reviews.default.svc.cluster.local:9080"}, {Name: ":path", Value: "/reviews.Reviews/Get"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		{Name: "grpc-timeout", Value: "999m"}, {Name: "user-agent", Value: "grpc-go/1.85.0"},
		{Name: "x-request-id", Value: "0d6e3c4a-3f0e-4c1b-9a53-5f1e2b7c9d10"},
	}
	frame := func(stream uint32) []byte {
		buf.Reset()
		for _, f := range fields {
			enc.WriteField(f)
		}
		block := buf.Bytes()
		h := []byte{byte(len(block) >> 16), byte(len(block) >> 8), byte(len(block)), h2FrameHeaders, h2FlagEndHeaders, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(h[5:], stream)
		return append(h, block...)
	}
	a, c2 := net.Pipe()
	defer a.Close()
	defer c2.Close()
	c := &headerConn{Conn: &Conn{Conn: a}, stats: &Stats{}, h2lim: newH2Limits(DefaultMaxHeaderBytes, DefaultReadHeaderTimeout)}
	c.watchH2([]byte("\r\n\r\nSM\r\n\r\n"), nil)
	c.watchH2(frame(1), nil)
	// From the second request on, every field is indexed and the block
	// is the same bytes.
	next := frame(3)
	c.watchH2(next, nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint32(next[5:], uint32(2*i+5))
		c.watchH2(next, nil)
	}
}
