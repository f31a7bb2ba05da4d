package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// BenchmarkSidecarMTLS is BenchmarkSidecar's request (a 1 KB POST echoed
// as 1 KB, one at a time) through two sidecars, in a plaintext mesh and in
// an mTLS mesh (certtest identities: every tunnel connection a TLS 1.3
// handshake with X25519MLKEM768 and both chains verified), in the same
// run. The mtls row reports its p50 and p99 as x-plaintext ratios against
// the plaintext row's, and every row the process's CPU per request (both
// sidecars, the client and the app together) and the tunnel handshakes
// the run needed (pooled connections: a handful, not one per request).
//
//	go test ./internal/proxy/sidecar -run '^$' -bench SidecarMTLS -benchtime 3s
func BenchmarkSidecarMTLS(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	ca := certtest.NewCA(b)
	type mesh struct {
		name   string
		client *meshtest.Pod
		addr   string
	}
	start := func(name, base string, mtls bool) mesh {
		m := meshtest.New(b, reviewsConfig(base, 100, 0))
		meshtest.Backend(b, base+".2:9080", "v1", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
			w.Write(payload)
		})
		id := func(sa string) []func(*sidecar.Options) {
			if !mtls {
				return nil
			}
			return []func(*sidecar.Options){withIdentity(b, ca, certtest.SPIFFE("default", sa), certtest.LeafOptions{})}
		}
		m.Sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"}, id("reviews")...)
		m.Sidecar("reviews-v2", base+".3", map[string]string{"app": "reviews", "version": "v2"}, id("reviews")...)
		c := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}, id("sleep")...)
		m.WaitSynced()
		return mesh{name: name, client: c, addr: base + ".1:15001"}
	}
	meshes := []mesh{start("plaintext", "127.77.153", false), start("mtls", "127.77.154", true)}
	do := func(c *http.Client) error {
		resp, err := c.Post("http://reviews:9080/echo", "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || n != int64(len(payload)) {
			return fmt.Errorf("status %d, %d bytes, %v (%s)", resp.StatusCode, n, err, resp.Header.Get("X-Trellis-Flags"))
		}
		return nil
	}
	var plainP50, plainP99 float64
	for _, ms := range meshes {
		b.Run(ms.name, func(b *testing.B) {
			d := &net.Dialer{}
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return d.DialContext(ctx, network, ms.addr)
				},
			}}
			defer c.CloseIdleConnections()
			for range 100 {
				if err := do(c); err != nil {
					b.Fatal(err)
				}
			}
			hs0 := statInt(b, ms.client, "tunnel.upstream.ssl.handshake")
			lat := make([]time.Duration, 0, b.N)
			cpu0 := processCPU()
			b.ResetTimer()
			for b.Loop() {
				t := time.Now()
				if err := do(c); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
			}
			b.StopTimer()
			cpu := processCPU() - cpu0
			slices.Sort(lat)
			p50, p99 := float64(lat[len(lat)/2].Microseconds()), float64(lat[len(lat)*99/100].Microseconds())
			b.ReportMetric(p50, "p50-µs")
			b.ReportMetric(p99, "p99-µs")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/req")
			b.ReportMetric(float64(statInt(b, ms.client, "tunnel.upstream.ssl.handshake")-hs0), "handshakes")
			if ms.name == "plaintext" {
				plainP50, plainP99 = p50, p99
			} else if plainP50 > 0 {
				b.ReportMetric(p50/plainP50, "p50-x-plaintext")
				b.ReportMetric(p99/plainP99, "p99-x-plaintext")
			}
		})
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
