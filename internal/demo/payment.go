package demo

import (
	"fmt"
	"net/http"
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

// newPayment serves POST /pay and POST /refund. It keeps nothing but a
// counter for payment ids: the demo is about who may call it (the seed
// AuthorizationPolicy) and retries, not bookkeeping.
func newPayment(d *deps) (http.Handler, error) {
	var seq atomic.Uint64
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
