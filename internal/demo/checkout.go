package demo

import "net/http"

// checkoutBody is checkout-service's answer: the order and its payment.
type checkoutBody struct {
	Order   string  `json:"order"`
	Amount  float64 `json:"amount"`
	Payment payment `json:"payment"`
}

// newCheckout serves POST /checkout {"order":..,"amount":..}: it pays
// through payment-service (PAYMENT_URL, default
// http://payment-service:9080) and answers the order with the payment. A
// failed payment answers 502 naming payment-service's status (403 when the
// AuthorizationPolicy refuses the caller).
func newCheckout(d *deps) (http.Handler, error) {
	paymentURL := d.env("PAYMENT_URL", "http://payment-service:9080")
	mux := newMux()
	mux.HandleFunc("POST /checkout", func(w http.ResponseWriter, r *http.Request) {
		var req payRequest
		if err := decodeJSON(w, r, &req, false); err != nil {
			writeError(w, http.StatusBadRequest, "invalid JSON body: %v; %s", err, payUsage)
			return
		}
		if err := req.validate(); err != nil {
			writeError(w, http.StatusBadRequest, "%v; %s", err, payUsage)
			return
		}
		var p payment
		if _, err := d.call(r, http.MethodPost, paymentURL+"/pay", req, &p); err != nil {
			d.log.Warn("payment failed", "order", req.Order, "error", err)
			writeUpstreamError(w, "payment-service", err)
			return
		}
		writeJSON(w, http.StatusOK, checkoutBody{Order: req.Order, Amount: req.Amount, Payment: p})
	})
	return mux, nil
}

// newRefund serves POST /refund (body optional, {"id":..,"order":..}) by
// asking payment-service (PAYMENT_URL) to refund, and answers its result.
func newRefund(d *deps) (http.Handler, error) {
	paymentURL := d.env("PAYMENT_URL", "http://payment-service:9080")
	mux := newMux()
	mux.HandleFunc("POST /refund", func(w http.ResponseWriter, r *http.Request) {
		var req refundRequest
		if err := decodeJSON(w, r, &req, true); err != nil {
			writeError(w, http.StatusBadRequest, `invalid JSON body: %v; want nothing or {"id":"<payment id>","order":"<order id>"}`, err)
			return
		}
		var p payment
		if _, err := d.call(r, http.MethodPost, paymentURL+"/refund", req, &p); err != nil {
			d.log.Warn("refund failed", "order", req.Order, "error", err)
			writeUpstreamError(w, "payment-service", err)
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
	return mux, nil
}
