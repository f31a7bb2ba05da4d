package hcm_test

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// benchBody is the 1 KB body of bench/sidecar.sh's requests and answers.
var benchBody = bytes.Repeat([]byte("x"), 1024)

// benchRequest is what fortio sends in bench/sidecar.sh: a 1 KB POST.
var benchRequest = append([]byte("POST /echo HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: fortio.org/fortio-1.68.2\r\n"+
	"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n"), benchBody...)

// rawBackend answers every HTTP/1.1 request with a 1 KB body, without
// net/http, so that allocations counted in a benchmark are the proxy's.
func rawBackend(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	answer := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"+
		"Date: Wed, 25 Nov 2026 20:00:00 GMT\r\nContent-Length: 1024\r\n\r\n"), benchBody...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 8<<10)
				for {
					n, err := readRawMessage(br)
					if err != nil || n < 0 {
						return
					}
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// readRawMessage reads one HTTP/1.1 message with a Content-Length body (or
// none) from br and returns the body's length.
func readRawMessage(br *bufio.Reader) (int, error) {
	length := 0
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			if first {
				continue
			}
			break
		}
		first = false
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(k), "content-length") {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return 0, err
			}
			length = n
		}
	}
	if _, err := br.Discard(length); err != nil {
		return 0, err
	}
	return length, nil
}

// BenchmarkFastPath is one proxy (an outbound front end on the fast path,
// forwarding on the upstream direct path) between a raw client and a raw
// backend, one 1 KB POST answered with 1 KB at a time, as a sidecar in
// bench/sidecar.sh serves them. allocs/op are the proxy's own.
func BenchmarkFastPath(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		benchFastPath(b, &xdsresource.RouteAction{Timeout: 15 * time.Second})
	})
	// Istio's default retry policy, which every outbound route has unless
	// its VirtualService turns retries off: the POST's body is kept for a
	// retry that never comes.
	b.Run("default-retries", func(b *testing.B) {
		benchFastPath(b, &xdsresource.RouteAction{Timeout: 15 * time.Second, Retry: &xdsresource.RetryPolicy{
			On:         xdsresource.RetryConnectFailure | xdsresource.RetryRefusedStream | xdsresource.RetryGRPCUnavailable | xdsresource.RetryGRPCCancelled | xdsresource.RetryRetriableStatusCodes,
			NumRetries: 2, PreviousHosts: true, HostSelectionAttempts: 5, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond,
		}})
	})
}

func benchFastPath(b *testing.B, action *xdsresource.RouteAction) {
	benchFastPathConfig(b, hcm.Config{Outbound: true}, action)
}

// TestFastPathAllocations pins what a proxied request costs in
// allocations on a warm connection (BenchmarkFastPath's setup: one
// front end on the fast path, the upstream on the direct path, a raw
// client and backend that allocate nothing per request). It was 49 before
// the fast path read its own heads, 9 before the response's header map was
// the previous response's, 7 before the request's was the previous
// request's; it is 5 now, with some room for noise.
func TestFastPathAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("a real proxy on loopback")
	}
	f := startFrontEndTo(t, rawBackend(t), hcm.Config{Outbound: true}, 15*time.Second)
	c, err := net.Dial("tcp", f.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 8<<10)
	do := func() {
		if _, err := c.Write(benchRequest); err != nil {
			t.Fatal(err)
		}
		if n, err := readRawMessage(br); err != nil || n != len(benchBody) {
			t.Fatalf("answer: %d bytes, %v", n, err)
		}
	}
	for range 100 {
		do()
	}
	n := testing.AllocsPerRun(200, do)
	t.Logf("%.1f allocations per proxied request", n)
	if n > 7 {
		t.Errorf("%.1f allocations per proxied request, want at most 7", n)
	}
}
