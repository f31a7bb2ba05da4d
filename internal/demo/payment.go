package demo

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// payRequest is the body of POST /pay and POST /checkout.
type payRequest struct {
	Order  string  `json:"order"`
	Amount float64 `json:"amount"`
}

func (p payRequest) validate() error {
	if p.Order == "" {
		return fmt.Errorf(`"order" is required`)
	}
	if p.Amount <= 0 {
		return fmt.Errorf(`"amount" must be a positive number`)
	}
	return nil
}

// payment is payment-service's answer to /pay and /refund.
type payment struct {
	Status string  `json:"status"`
	ID     string  `json:"id,omitempty"`
	Order  string  `json:"order,omitempty"`
	Amount float64 `json:"amount,omitempty"`
}

// refundRequest is the (optional) body of POST /refund.
type refundRequest struct {
	ID    string `json:"id,omitempty"`
	Order string `json:"order,omitempty"`
}

const payUsage = `want {"order":"<order id>","amount":<positive number>}`

// newPayment serves POST /pay and POST /refund. It keeps a counter for
// payment ids and the flaky orders below: the demo is about who may call it
// (the seed AuthorizationPolicy) and retries, not bookkeeping.
func newPayment(d *deps) (http.Handler, error) {
	var seq atomic.Uint64
	flaky := newFlakyOrders(maxFlakyOrders)
	mux := newMux()
	mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) {
		var req payRequest
		if err := decodeJSON(w, r, &req, false); err != nil {
			writeError(w, http.StatusBadRequest, "invalid JSON body: %v; %s", err, payUsage)
			return
		}
		if err := req.validate(); err != nil {
			writeError(w, http.StatusBadRequest, "%v; %s", err, payUsage)
			return
		}
		if strings.HasPrefix(req.Order, flakyPrefix) && flaky.firstTry(req.Order) {
			d.log.Warn("simulated failure", "order", req.Order)
			writeError(w, http.StatusServiceUnavailable, "simulated failure: the first try of an order whose id starts with %s fails; try again", flakyPrefix)
			return
		}
		p := payment{Status: "paid", ID: fmt.Sprintf("pay-%d", seq.Add(1)), Order: req.Order, Amount: req.Amount}
		d.log.Info("paid", "order", p.Order, "amount", p.Amount, "id", p.ID)
		writeJSON(w, http.StatusOK, p)
	})
	mux.HandleFunc("POST /refund", func(w http.ResponseWriter, r *http.Request) {
		var req refundRequest
		if err := decodeJSON(w, r, &req, true); err != nil {
			writeError(w, http.StatusBadRequest, `invalid JSON body: %v; want nothing or {"id":"<payment id>","order":"<order id>"}`, err)
			return
		}
		d.log.Info("refunded", "order", req.Order, "id", req.ID)
		writeJSON(w, http.StatusOK, payment{Status: "refunded", ID: req.ID, Order: req.Order})
	})
	return mux, nil
}

// flakyPrefix marks the orders whose payment fails its first try, so that
// the shop demo shows a caller's sidecar retrying (payment-retries.yaml
// retries 5xx) without changing the user's config: a checkout of
// "flaky-1" is paid, and payment-service's log shows the 503 before it.
const flakyPrefix = "flaky-"

// maxFlakyOrders bounds the flaky orders remembered between a failed try
// and its retry, so that a client sending new flaky ids without retrying
// cannot grow the service's memory.
const maxFlakyOrders = 1024

// flakyOrders remembers the flaky orders whose last try failed, up to a
// bound: past it the oldest is forgotten, and its next try fails again
// (a caller that retries at once is never that far behind).
type flakyOrders struct {
	mu     sync.Mutex
	failed map[string]int // order → its slot in ring
	ring   []string       // the orders in the order they failed
	next   int            // the slot the next failure takes
}

func newFlakyOrders(n int) *flakyOrders {
	return &flakyOrders{failed: make(map[string]int, n), ring: make([]string, n)}
}

// firstTry reports whether this try of order is its first since it was
// last paid: the first fails and is remembered, the next one succeeds and
// is forgotten, so every new checkout of the order fails once again.
func (f *flakyOrders) firstTry(order string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.failed[order]; ok {
		delete(f.failed, order)
		return false
	}
	// The slot's order may have been paid since (then it is gone from
	// failed) or failed again into a newer slot: forget it only if it
	// still lives here.
	if old := f.ring[f.next]; old != "" && f.failed[old] == f.next {
		delete(f.failed, old)
	}
	f.ring[f.next] = order
	f.failed[order] = f.next
	f.next = (f.next + 1) % len(f.ring)
	return true
}
