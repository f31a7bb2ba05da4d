package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// BenchmarkSidecar is the Go side of bench/sidecar.sh: a 1 KB POST echoed
// back as 1 KB, sent (a) straight to the app and (b) through two sidecars
// (client pod's forward proxy -> HTTP/2 CONNECT tunnel -> server pod's
// sidecar -> app), all in one process on 127.77.40.0/24 with the control
// plane. The request goes to the client sidecar's 15001 in origin form
// with Host reviews:9080, as fortio sends it in the script.
//
// The sequential rows measure one request at a time (ns/op is the round
// trip; p50/p99 too); the c16 rows keep 16 requests in flight (ns/op is
// the inverse of throughput). The two-proxies rows also report added-µs
// and x-direct against the direct row: of the p50 for one at a time, of
// ns/op for c16. Run with
//
//	go test ./internal/proxy/sidecar -run '^$' -bench Sidecar -benchtime 3s
func BenchmarkSidecar(b *testing.B) {
	const base = "127.77.40"
	m := meshtest.New(b, reviewsConfig(base, 100, 0))
	payload := bytes.Repeat([]byte("x"), 1024)
	meshtest.Backend(b, base+".2:9080", "v1", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		w.Header().Set("X-Got", fmt.Sprint(n))
		w.Write(payload)
	})
	m.Sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"})
	m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})

	// Each client dials one fixed address whatever the URL says, so the
	// URL (and so the Host header) is the same in both rows.
	client := func(addr string) *http.Client {
		d := &net.Dialer{}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		}}
	}
	rows := []struct{ name, addr string }{
		{"direct", base + ".2:9080"},
		{"two-proxies", base + ".1:15001"},
	}
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
	for _, parallel := range []bool{false, true} {
		var direct float64 // the direct row's p50 or ns/op
		for _, row := range rows {
			name := row.name
			if parallel {
				name += "-c16"
			}
			b.Run(name, func(b *testing.B) {
				c := client(row.addr)
				defer c.CloseIdleConnections()
				for range 100 { // warm: connections, tunnel, pools
					if err := do(c); err != nil {
						b.Fatal(err)
					}
				}
				var lat []time.Duration
				b.ResetTimer()
				if parallel {
					b.SetParallelism(8) // 16 goroutines on 2 vCPUs
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := do(c); err != nil {
								b.Error(err)
								return
							}
						}
					})
				} else {
					lat = make([]time.Duration, 0, b.N)
					for b.Loop() {
						t := time.Now()
						if err := do(c); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t))
					}
				}
				b.StopTimer()
				// Sequential rows compare medians (the mean of one request at
				// a time is at the mercy of a busy machine's outliers);
				// parallel rows compare throughput.
				v := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if len(lat) > 0 {
					slices.Sort(lat)
					p50 := lat[len(lat)/2]
					b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
					v = float64(p50.Nanoseconds())
				}
				if strings.HasPrefix(row.name, "direct") {
					direct = v
				} else if direct > 0 {
					b.ReportMetric((v-direct)/1e3, "added-µs")
					b.ReportMetric(v/direct, "x-direct")
				}
			})
		}
	}
}
