package demo

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// TestPaymentFlakyOrders checks the demo's switch for seeing retries: the
// first try of an order whose id starts with flaky- answers 503 and logs
// "simulated failure", the next try is paid, and each new checkout of the
// same order fails once again; other orders are paid at once.
func TestPaymentFlakyOrders(t *testing.T) {
	leak.Check(t)
	c := client(t)
	logs := &syncBuffer{}
	srv := start(t, "payment-service", nil, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey || a.Key == "duration" || a.Key == "from" || a.Key == "address" {
					return slog.Attr{}
				}
				return a
			},
		}))
	})
	const failed = `{"error":"simulated failure: the first try of an order whose id starts with flaky- fails; try again"}`
	for i, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"order":"flaky-1","amount":5}`, 503, failed},
		{`{"order":"flaky-1","amount":5}`, 200, `{"status":"paid","id":"pay-1","order":"flaky-1","amount":5}`},
		{`{"order":"o-1","amount":2}`, 200, `{"status":"paid","id":"pay-2","order":"o-1","amount":2}`},
		// A second checkout of the same order: its first try fails again.
		{`{"order":"flaky-1","amount":5}`, 503, failed},
		{`{"order":"flaky-2","amount":1}`, 503, failed},
		{`{"order":"flaky-1","amount":5}`, 200, `{"status":"paid","id":"pay-3","order":"flaky-1","amount":5}`},
		{`{"order":"flaky-2","amount":1}`, 200, `{"status":"paid","id":"pay-4","order":"flaky-2","amount":1}`},
		// Not flaky: the prefix is the order id's.
		{`{"order":"o-flaky-3","amount":1}`, 200, `{"status":"paid","id":"pay-5","order":"o-flaky-3","amount":1}`},
	} {
		code, _, body := do(t, c, "POST", srv.URL+"/pay", tc.body)
		if code != tc.code || compact(t, body) != tc.want {
			t.Errorf("%d: POST /pay %s = %d %s, want %d %s", i, tc.body, code, body, tc.code, tc.want)
		}
	}
	if err := srv.stop(t); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "msg=listening") || strings.Contains(l, "shutting down") || strings.Contains(l, "msg=stopped") || l == "" {
			continue
		}
		got = append(got, l)
	}
	want := []string{
		`level=WARN msg="simulated failure" service=payment-service order=flaky-1`,
		`level=INFO msg=request service=payment-service method=POST path=/pay status=503`,
		`level=INFO msg=paid service=payment-service order=flaky-1 amount=5 id=pay-1`,
		`level=INFO msg=request service=payment-service method=POST path=/pay status=200`,
	}
	if diff := cmp.Diff(want, got[:min(len(got), len(want))]); diff != "" {
		t.Errorf("payment-service's log of a flaky order's two tries (-want +got):\n%s\nwhole log:\n%s", diff, logs)
	}
}

// TestCheckoutFlakyOrderWithoutRetry checks what checkout-service answers
// when nothing retries its payment (no sidecar in between): the flaky
// order's first try is the answer, a 502 naming payment-service's 503.
func TestCheckoutFlakyOrderWithoutRetry(t *testing.T) {
	leak.Check(t)
	c := client(t)
	payment := start(t, "payment-service", nil)
	checkout := start(t, "checkout-service", map[string]string{"PAYMENT_URL": payment.URL})
	code, _, body := do(t, c, "POST", checkout.URL+"/checkout", `{"order":"flaky-1","amount":5}`)
	want := `{"error":"payment-service: POST ` + payment.URL + `/pay: upstream answered 503 Service Unavailable: {\n  \"error\": \"simulated failure: the first try of an order whose id starts with flaky- fails; try again\"\n}","upstreamStatus":503}`
	if code != 502 || compact(t, body) != want {
		t.Errorf("POST /checkout flaky-1 = %d %s, want 502 %s", code, body, want)
	}
	// Its retry, as a sidecar would send it, is paid.
	code, _, body = do(t, c, "POST", checkout.URL+"/checkout", `{"order":"flaky-1","amount":5}`)
	if want := `{"order":"flaky-1","amount":5,"payment":{"status":"paid","id":"pay-1","order":"flaky-1","amount":5}}`; code != 200 || compact(t, body) != want {
		t.Errorf("POST /checkout flaky-1 again = %d %s, want 200 %s", code, body, want)
	}
}

// TestFlakyOrdersBounded checks that the flaky orders awaiting their retry
// are bounded: past the bound the oldest is forgotten (its retry fails
// again), the others are still remembered, and a slot whose order was
// paid meanwhile is reused without forgetting a newer failure.
func TestFlakyOrdersBounded(t *testing.T) {
	f := newFlakyOrders(3)
	first := func(order string) bool { return f.firstTry(order) }
	for _, o := range []string{"a", "b", "c"} {
		if !first(o) {
			t.Fatalf("first try of %s not reported first", o)
		}
	}
	if !first("d") { // takes a's slot: a is forgotten
		t.Fatal("first try of d not reported first")
	}
	if !first("a") {
		t.Error("a's retry after 3 newer failures: want forgotten (a first try again)")
	}
	// a now sits in b's old slot and b is forgotten; c and d are remembered.
	for _, o := range []string{"c", "d"} {
		if first(o) {
			t.Errorf("%s's retry reported as a first try; want it remembered", o)
		}
	}
	if len(f.failed) != 1 {
		t.Errorf("remembered %v, want a alone", f.failed)
	}
	// Many orders, each retried: nothing stays.
	for i := range 10 {
		o := fmt.Sprint("o", i)
		if !first(o) || first(o) {
			t.Fatalf("%s: want a failed first try and a paid retry", o)
		}
	}
	if len(f.failed) != 0 {
		t.Errorf("remembered %v after every order was retried, want none", f.failed)
	}
}

// syncBuffer is a bytes.Buffer safe for the service's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
