package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// retryConfig routes the app's paths with the user's retry policy
// (shared/seed-examples/payment-retries.yaml: attempts 3, perTryTimeout
// 2s, retryOn 5xx,reset,connect-failure) except /plain, which keeps
// Istio's default policy; /hang has a short per-try timeout; /post
// retries 503 for the body test. legacy is a service without a sidecar
// (so the client's sidecar sees its resets itself), and pair a service
// of two endpoints, one of them a closed port.
func retryConfig(base string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - match: [{uri: {prefix: /plain}}]
    route: [{destination: {host: app, port: {number: 8080}}}]
  - match: [{uri: {prefix: /hang}}]
    retries: {attempts: 3, perTryTimeout: 300ms, retryOn: "5xx,reset,connect-failure"}
    route: [{destination: {host: app, port: {number: 8080}}}]
  - match: [{uri: {prefix: /}}, {port: 8080}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset,connect-failure"}
    route: [{destination: {host: app, port: {number: 8080}}}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: legacy-1}
spec: {address: %[1]s.3, labels: {app: legacy}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy}
spec:
  hosts: [legacy]
  http:
  - retries: {attempts: 3, retryOn: "reset"}
    route: [{destination: {host: legacy}}]
---
apiVersion: v1
kind: Service
metadata: {name: pair}
spec:
  selector: {app: pair}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: pair-up}
spec: {address: %[1]s.4, labels: {app: pair}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: pair-down}
spec: {address: %[1]s.5, labels: {app: pair}}
---
apiVersion: v1
kind: Service
metadata: {name: gone}
spec:
  selector: {app: gone}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: gone-1}
spec: {address: %[1]s.7, labels: {app: gone}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gone}
spec:
  hosts: [gone]
  http:
  - retries: {attempts: 2, retryOn: connect-failure}
    route: [{destination: {host: gone}}]
`, base)
}

// tries counts the tries the app saw of each request, by the request id
// the client's sidecar gave it (a retry carries the same).
type tries struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tries) add(r *http.Request) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	id := r.URL.Path + " " + r.Header.Get("X-Request-Id")
	t.n[id]++
	return t.n[id]
}

func (t *tries) total(prefix string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	sum := 0
	for k, v := range t.n {
		if strings.HasPrefix(k, prefix) {
			sum += v
		}
	}
	return sum
}

// The user's retry policy takes retry logic out of application code: the
// client's sidecar tries a failed request again, up to three retries,
// and the client sees the failure only when every try failed.
func TestRetriesThroughSidecars(t *testing.T) {
	leak.Check(t)
	const base = "127.121.1"
	var seen tries
	am := newAppMesh(t, base, retryConfig(base), func(w http.ResponseWriter, r *http.Request) {
		try := seen.add(r)
		switch {
		case strings.HasPrefix(r.URL.Path, "/fail50"), strings.HasPrefix(r.URL.Path, "/plain50"):
			if rand.IntN(2) == 0 {
				http.Error(w, "flaky", http.StatusServiceUnavailable)
				return
			}
		case strings.HasPrefix(r.URL.Path, "/fail20"):
			if rand.IntN(5) == 0 {
				http.Error(w, "flaky", http.StatusServiceUnavailable)
				return
			}
		case strings.HasPrefix(r.URL.Path, "/hang"):
			if try == 1 {
				// Past the 300ms per-try timeout; the sidecar gives up on
				// this try and makes another.
				select {
				case <-r.Context().Done():
				case <-time.After(3 * time.Second):
				}
				return
			}
		case strings.HasPrefix(r.URL.Path, "/post"):
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if try == 1 {
				http.Error(w, "first try fails", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("X-Try", strconv.Itoa(try))
			w.Write(body)
			return
		case strings.HasPrefix(r.URL.Path, "/down"):
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "app")
	})
	// legacy resets the first try of each request, without an answer.
	var legacyTries tries
	meshtest.Backend(t, base+".3:8080", "legacy", func(w http.ResponseWriter, r *http.Request) {
		if legacyTries.add(r) == 1 {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0) // RST, not FIN
				}
				c.Close()
			}
			return
		}
		io.WriteString(w, "legacy")
	})
	var pairSeen atomic.Int64
	meshtest.Backend(t, base+".4:8080", "pair-up", func(w http.ResponseWriter, r *http.Request) {
		pairSeen.Add(1)
		io.WriteString(w, "pair-up")
	})
	c := am.client.Client()
	defer c.CloseIdleConnections()

	// share sends n GETs of path, several at a time, and returns the
	// share answered 200.
	share := func(t *testing.T, path string, n int) float64 {
		t.Helper()
		var ok atomic.Int64
		var wg sync.WaitGroup
		jobs := make(chan int)
		for range 8 {
			wg.Go(func() {
				for range jobs {
					resp, err := c.Get("http://app:8080" + path)
					if err != nil {
						t.Error(err)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
					} else if testing.Verbose() {
						t.Logf("DEBUG %d %s", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"))
					}
				}
			})
		}
		for i := range n {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		return float64(ok.Load()) / float64(n)
	}

	t.Run("HalfFailing", func(t *testing.T) {
		// Ideal: 1 − 0.5⁴ = 93.75 %.
		if got := share(t, "/fail50", 2000); got < 0.90 {
			t.Errorf("%.1f%% of 2,000 requests succeeded behind a 50%%-failing backend, want ≥ 90%%", got*100)
		}
	})
	t.Run("FifthFailing", func(t *testing.T) {
		if got := share(t, "/fail20", 2000); got < 0.99 {
			t.Errorf("%.1f%% of 2,000 requests succeeded behind a 20%%-failing backend, want ≥ 99%%", got*100)
		}
	})
	t.Run("DefaultPolicyKeepsAppErrors", func(t *testing.T) {
		// Istio's default policy retries connect failures and gRPC
		// errors, not an app's 503: about half fail, each tried once.
		const n = 1000
		got := share(t, "/plain50", n)
		if got < 0.40 || got > 0.60 {
			t.Errorf("%.1f%% succeeded, want ≈ 50%%: the app's 503 is not retried by default", got*100)
		}
		if tried := seen.total("/plain50"); tried != n {
			t.Errorf("the app saw %d tries of %d requests, want one each", tried, n)
		}
	})
	t.Run("PerTryTimeout", func(t *testing.T) {
		start := time.Now()
		resp, body := meshtest.Get(t, c, "http://app:8080/hang", nil)
		if resp.StatusCode != http.StatusOK || body != "app" {
			t.Fatalf("got %d %q (%s), want the second try's 200", resp.StatusCode, body, resp.Header.Get("X-Trellis-Flags"))
		}
		if took := time.Since(start); took < 300*time.Millisecond || took > 2*time.Second {
			t.Errorf("took %v, want the 300ms per-try timeout and one quick retry", took)
		}
	})
	t.Run("PostBodyIntact", func(t *testing.T) {
		payload := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
		for i := range 20 {
			body := append([]byte(strconv.Itoa(i)+":"), payload...)
			resp, err := c.Post("http://app:8080/post", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Try") != "2" {
				t.Fatalf("got %d, try %q, want the second try's 200", resp.StatusCode, resp.Header.Get("X-Try"))
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("the retried try got %d bytes, not the %d sent", len(got), len(body))
			}
		}
	})
	t.Run("BodyPastBoundNotRetried", func(t *testing.T) {
		body := bytes.Repeat([]byte("x"), 100<<10)
		resp, err := c.Post("http://app:8080/post", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("got %d, want the first try's 503: a 100 KiB body is not kept for retries", resp.StatusCode)
		}
	})
	t.Run("Exhausted", func(t *testing.T) {
		resp, body := meshtest.Get(t, c, "http://app:8080/down", nil)
		if resp.StatusCode != http.StatusServiceUnavailable || strings.TrimSpace(body) != "down" {
			t.Fatalf("got %d %q, want the app's last 503", resp.StatusCode, body)
		}
		if f := resp.Header.Get("X-Trellis-Flags"); f != "URX" {
			t.Errorf("flags %q, want URX (retries exhausted)", f)
		}
		if n := seen.total("/down"); n != 4 {
			t.Errorf("the app saw %d tries, want 4 (attempts: 3 retries after the first)", n)
		}
		// The client's sidecar counts them by Envoy's names.
		hc := &http.Client{}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("http://" + base + ".1:15000/stats")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		const stat = "cluster.outbound|8080||app.default.svc.cluster.local.upstream_rq_retry: "
		i := strings.Index(string(b), stat)
		if i < 0 {
			t.Fatalf("/stats has no %s:\n%s", stat, b)
		}
		n, _ := strconv.Atoi(strings.Fields(string(b)[i+len(stat):])[0])
		if n < 3 {
			t.Errorf("upstream_rq_retry %d, want ≥ 3", n)
		}
	})
	t.Run("ExhaustedLocalReply", func(t *testing.T) {
		// Nothing listens at gone's endpoint: three tries, then a local
		// reply that says so, flags and details alike.
		resp, body := meshtest.Get(t, c, "http://gone:8080/", nil)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasSuffix(strings.TrimSpace(body), "; retries exhausted after 3 tries") {
			t.Fatalf("got %d %q, want 503 ending \"; retries exhausted after 3 tries\"", resp.StatusCode, body)
		}
		if f := resp.Header.Get("X-Trellis-Flags"); f != "UF,URX" {
			t.Errorf("flags %q, want UF,URX", f)
		}
		if d, want := resp.Header.Get("X-Trellis-Details"), "upstream_reset_before_response_started{connection_failure}; retries exhausted after 3 tries"; d != want {
			t.Errorf("details %q, want %q", d, want)
		}
	})
	t.Run("Reset", func(t *testing.T) {
		for range 10 {
			resp, body := meshtest.Get(t, c, "http://legacy:8080/", nil)
			if resp.StatusCode != http.StatusOK || body != "legacy" {
				t.Fatalf("got %d %q (%s), want the retry's 200 after a reset", resp.StatusCode, body, resp.Header.Get("X-Trellis-Flags"))
			}
		}
	})
	t.Run("DefaultPolicyConnectFailure", func(t *testing.T) {
		// One endpoint of pair refuses connections; the default policy
		// retries on another host, so every request gets through.
		for range 40 {
			resp, body := meshtest.Get(t, c, "http://pair:8080/", nil)
			if resp.StatusCode != http.StatusOK || body != "pair-up" {
				t.Fatalf("got %d %q (%s), want pair-up", resp.StatusCode, body, resp.Header.Get("X-Trellis-Flags"))
			}
		}
	})
}

// A retry budget keeps retries from multiplying the load on a cluster in
// a full outage: with 20 requests in flight and a budget of 10 % (at
// least 1), at most 2 retries run at once, so 200 requests make far
// fewer than the 1,200 tries five retries each would; the refused
// retries answer with the app's 503 flagged UO, as Envoy flags a retry
// overflow.
func TestRetryBudgetCapsOutage(t *testing.T) {
	leak.Check(t)
	const base = "127.121.2"
	var tried atomic.Int64
	am := newAppMesh(t, base, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - match: [{uri: {prefix: /down}}]
    retries: {attempts: 5, retryOn: 5xx}
    route: [{destination: {host: app, port: {number: 8080}}}]
  - route: [{destination: {host: app}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    retryBudget: {percent: 10, minRetryConcurrency: 1}
`, func(w http.ResponseWriter, r *http.Request) {
		tried.Add(1)
		time.Sleep(5 * time.Millisecond)
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	c := am.client.Client()
	defer c.CloseIdleConnections()
	const n, conc = 200, 20
	var overflowed atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range conc {
		wg.Go(func() {
			for range jobs {
				resp, err := c.Get("http://app:8080/down")
				if err != nil {
					t.Error(err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("got %d, want the app's 503", resp.StatusCode)
				}
				if resp.Header.Get("X-Trellis-Flags") == "UO" {
					overflowed.Add(1)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if got := tried.Load(); got < n || got > 2*n {
		t.Errorf("the app saw %d tries of %d requests, want at most %d (without the budget: %d)", got, n, 2*n, 6*n)
	}
	if overflowed.Load() == 0 {
		t.Error("no answer was flagged UO: the budget refused no retry")
	}
}

// The x-envoy-* controls of Envoy's router are honoured from the pod's own
// app and never passed on: x-envoy-max-retries and x-envoy-retry-on give
// a route without retries some, and x-envoy-upstream-rq-timeout-ms sets
// the request's timeout.
func TestCallerRetryControls(t *testing.T) {
	leak.Check(t)
	const base = "127.121.3"
	var seen tries
	var leaked atomic.Int64
	am := newAppMesh(t, base, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - retries: {attempts: 0}
    route: [{destination: {host: app, port: {number: 8080}}}]
`, func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if strings.HasPrefix(k, "X-Envoy-") {
				leaked.Add(1)
			}
		}
		switch r.URL.Path {
		case "/flaky":
			if seen.add(r) < 3 {
				http.Error(w, "not yet", http.StatusServiceUnavailable)
				return
			}
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
			return
		}
		io.WriteString(w, "app")
	})
	c := am.client.Client()
	defer c.CloseIdleConnections()

	resp, _ := meshtest.Get(t, c, "http://app:8080/flaky", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("without controls got %d, want the app's 503 (retries are off on the route)", resp.StatusCode)
	}
	resp, body := meshtest.Get(t, c, "http://app:8080/flaky", map[string]string{"X-Envoy-Retry-On": "5xx", "X-Envoy-Max-Retries": "3"})
	if resp.StatusCode != http.StatusOK || body != "app" {
		t.Fatalf("with x-envoy-retry-on got %d %q, want the third try's 200", resp.StatusCode, body)
	}
	start := time.Now()
	resp, _ = meshtest.Get(t, c, "http://app:8080/slow", map[string]string{"X-Envoy-Upstream-Rq-Timeout-Ms": "100"})
	if resp.StatusCode != http.StatusGatewayTimeout || time.Since(start) > 2*time.Second {
		t.Fatalf("with a 100ms timeout got %d after %v, want 504 soon", resp.StatusCode, time.Since(start))
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("the app saw %d x-envoy-* headers, want none", n)
	}
}

// flakyGreeter fails the first try of each call UNAVAILABLE (or with the
// code the call asks for, every time), counting tries by the request id
// the client's sidecar gave the call.
type flakyGreeter struct {
	testpb.UnimplementedTestServiceServer
	mu    sync.Mutex
	tries map[string]int
}

func (g *flakyGreeter) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.mu.Lock()
	id := strings.Join(md.Get("x-request-id"), "")
	g.tries[id]++
	n := g.tries[id]
	g.mu.Unlock()
	if st := in.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.GetCode()), "asked for")
	}
	if n == 1 {
		return nil, status.Error(codes.Unavailable, "first try fails")
	}
	return &testpb.SimpleResponse{}, nil
}

func (g *flakyGreeter) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, v := range g.tries {
		n += v
	}
	return n
}

// Istio's default policy retries gRPC's UNAVAILABLE (a trailers-only
// answer through the server's sidecar), and not INTERNAL.
func TestDefaultRetryPolicyGRPC(t *testing.T) {
	leak.Check(t)
	const base = "127.121.4"
	am := newAppMesh(t, base, "", nil)
	ln, err := net.Listen("tcp", base+".2:7070")
	if err != nil {
		t.Fatal(err)
	}
	g := &flakyGreeter{tries: map[string]int{}}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, g)
	go srv.Serve(ln)
	defer srv.Stop()
	cc, err := grpc.NewClient("passthrough:///app:7070",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(connectDialer(am.client)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := testpb.NewTestServiceClient(cc)
	for i := range 10 {
		if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatalf("call %d: %v, want the retry's OK", i, err)
		}
	}
	if n := g.total(); n != 20 {
		t.Errorf("the app saw %d tries of 10 calls, want 20 (each retried once)", n)
	}
	before := g.total()
	_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Internal)}})
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want the app's INTERNAL", err)
	}
	if n := g.total() - before; n != 1 {
		t.Errorf("an INTERNAL call was tried %d times, want once: the default policy does not retry it", n)
	}
}

// A retry whose back-off the route's timeout cuts short gives its retry
// slot back: with maxRetries 1, request after request still gets its
// retry (none overflows), each ending 504 at the route's timeout.
func TestRetrySlotReturnedOnTimeout(t *testing.T) {
	leak.Check(t)
	const base = "127.121.5"
	am := newAppMesh(t, base, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - match: [{uri: {prefix: /down}}]
    timeout: 200ms
    retries: {attempts: 1, retryOn: 5xx, backoff: 10s}
    route: [{destination: {host: app, port: {number: 8080}}}]
  - route: [{destination: {host: app}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    connectionPool: {http: {maxRetries: 1}}
`, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	c := am.client.Client()
	defer c.CloseIdleConnections()
	timedOut := 0
	for range 8 {
		resp, _ := meshtest.Get(t, c, "http://app:8080/down", nil)
		switch f := resp.Header.Get("X-Trellis-Flags"); {
		case resp.StatusCode == http.StatusGatewayTimeout && f == "UT":
			timedOut++
		case f == "UO":
			t.Fatalf("a retry overflowed: the slot of an earlier request's cut-short retry was never given back")
		}
	}
	// The back-off is random in [0, 10s]: most of them outlast 200ms.
	if timedOut == 0 {
		t.Error("no request ended at the route's timeout during its back-off")
	}
}

// retryRemoteLocalities (Envoy's previous_priorities): the client in
// r1/z1 sends first to its own zone (priority 0 under locality failover);
// z1 answers 503, and the retry goes to the priority not tried yet, z2.
// Without it the retry stays in z1, where previous_hosts has no other
// host to prefer, and fails again.
func TestRetryRemoteLocalities(t *testing.T) {
	leak.Check(t)
	const base = "127.121.6"
	policy := func(remote bool) string {
		return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1000, interval: 10s, baseEjectionTime: 30s}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - retries: {attempts: 1, retryOn: 5xx, retryRemoteLocalities: %t}
    route: [{destination: {host: echo}}]
`, remote)
	}
	m := meshtest.New(t, echoLocalityConfig(base, echoZ1Pod(base), policy(false)))
	meshtest.Backend(t, base+".2:8080", "z1", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "z1 down", http.StatusServiceUnavailable)
	})
	meshtest.Backend(t, base+".3:8080", "z2", nil)
	c := clientInZ1(m, base).Client()
	defer c.CloseIdleConnections()
	m.WaitSynced()
	if got := zoneCounts(t, c, 50); got["z2"] != 0 {
		t.Errorf("without retryRemoteLocalities: answers %v, want none from z2 (the retry stays in the client's zone)", got)
	}
	m.Write("mesh.yaml", echoLocalityConfig(base, echoZ1Pod(base), policy(true)))
	waitFor(t, c, "z2")
	if got := zoneCounts(t, c, 50); got["z2"] != 50 {
		t.Errorf("with retryRemoteLocalities: answers %v, want all 50 from z2 on the retry", got)
	}
}
