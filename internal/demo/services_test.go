package demo

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

func TestRatings(t *testing.T) {
	leak.Check(t)
	c := client(t)
	srv := start(t, "ratings", nil)
	for id, stars := range map[string]int{"0": 5, "1": 4, "4": 1, "5": 5, "12": 3} {
		code, _, body := do(t, c, "GET", srv.URL+"/ratings/"+id, "")
		if code != 200 {
			t.Fatalf("GET /ratings/%s = %d %s", id, code, body)
		}
		got := decode[rating](t, body)
		if got.Stars != stars || got.Stars < 1 || got.Stars > 5 {
			t.Errorf("GET /ratings/%s = %+v, want %d stars", id, got, stars)
		}
	}
	code, _, body := do(t, c, "GET", srv.URL+"/ratings/abc", "")
	if code != 400 || !strings.Contains(body, `product id \"abc\": want a non-negative integer`) {
		t.Errorf("GET /ratings/abc = %d %s, want 400 naming the bad id", code, body)
	}
	if code, _, _ := do(t, c, "POST", srv.URL+"/ratings/0", "{}"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ratings/0 = %d, want 405", code)
	}
}

func TestReviewsVersions(t *testing.T) {
	leak.Check(t)
	c := client(t)
	ratings := start(t, "ratings", nil)
	for _, tc := range []struct {
		version string
		want    *reviewRatings
	}{
		{"v1", nil},
		{"v2", &reviewRatings{Stars: 5, Color: "black"}},
		{"v3", &reviewRatings{Stars: 5, Color: "red"}},
	} {
		t.Run(tc.version, func(t *testing.T) {
			srv := start(t, "reviews", map[string]string{"VERSION": tc.version, "RATINGS_URL": ratings.URL, "POD_NAME": "reviews-" + tc.version + "-0"})
			code, h, body := do(t, c, "GET", srv.URL+"/reviews/0", "")
			if code != 200 {
				t.Fatalf("GET /reviews/0 = %d %s", code, body)
			}
			want := reviewsBody{ID: 0, Version: tc.version, Pod: "reviews-" + tc.version + "-0", Reviews: demoReviews, Ratings: tc.want}
			if diff := cmp.Diff(want, decode[reviewsBody](t, body)); diff != "" {
				t.Errorf("GET /reviews/0 (-want +got):\n%s", diff)
			}
			if v := h.Get("X-Reviews-Version"); v != tc.version {
				t.Errorf("X-Reviews-Version = %q, want %q", v, tc.version)
			}
			// Every answer names the version, errors and probes included.
			for _, path := range []string{"/healthz", "/reviews/x", "/nowhere"} {
				if _, h, _ := do(t, c, "GET", srv.URL+path, ""); h.Get("X-Reviews-Version") != tc.version {
					t.Errorf("GET %s: X-Reviews-Version = %q, want %q", path, h.Get("X-Reviews-Version"), tc.version)
				}
			}
		})
	}
}

func TestReviewsV1NeverCallsRatings(t *testing.T) {
	leak.Check(t)
	c := client(t)
	// RATINGS_URL points nowhere: v1 must not notice.
	srv := start(t, "reviews", map[string]string{"RATINGS_URL": "http://127.0.0.1:1"})
	code, h, body := do(t, c, "GET", srv.URL+"/reviews/3", "")
	if code != 200 || h.Get("X-Reviews-Version") != "v1" || strings.Contains(body, "ratings") {
		t.Errorf("v1 GET /reviews/3 = %d %s %s, want 200 from v1 with no ratings", code, h.Get("X-Reviews-Version"), body)
	}
}

func TestReviewsDegradeWhenRatingsDown(t *testing.T) {
	leak.Check(t)
	c := client(t)
	ratings := start(t, "ratings", nil)
	srv := start(t, "reviews", map[string]string{"VERSION": "v3", "RATINGS_URL": ratings.URL})
	if err := ratings.stop(t); err != nil {
		t.Fatal(err)
	}
	code, _, body := do(t, c, "GET", srv.URL+"/reviews/0", "")
	if code != 200 {
		t.Fatalf("GET /reviews/0 with ratings down = %d %s, want 200", code, body)
	}
	got := decode[reviewsBody](t, body)
	if got.Ratings == nil || got.Ratings.Stars != 0 || !strings.HasPrefix(got.Ratings.Error, "ratings unavailable: Get \""+ratings.URL) {
		t.Errorf("ratings = %+v, want an error naming the ratings URL and no stars", got.Ratings)
	}
	if len(got.Reviews) != 2 {
		t.Errorf("reviews = %v, want both reviews despite ratings being down", got.Reviews)
	}
}

// TestReviewsCallRatingsThroughProxy checks that reviews asks for ratings
// by its mesh name through the configured HTTP proxy, as an explicit-mode
// sidecar receives it, forwarding the routing headers.
func TestReviewsCallRatingsThroughProxy(t *testing.T) {
	leak.Check(t)
	c := client(t)
	var (
		mu   sync.Mutex
		seen []string
	)
	ratings := start(t, "ratings", nil)
	// A recording forward proxy in front of the real ratings.
	rec := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.String()+" user="+r.Header.Get("User"))
		mu.Unlock()
		resp, err := c.Get(ratings.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	srv := start(t, "reviews", map[string]string{"VERSION": "v2"}, withProxy(rec))
	req, _ := http.NewRequest("GET", srv.URL+"/reviews/1", nil)
	req.Header.Set("User", "test-user")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /reviews/1 = %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"GET http://ratings:9080/ratings/1 user=test-user"}, seen); diff != "" {
		t.Errorf("requests the proxy saw (-want +got):\n%s", diff)
	}
}

func TestFrontend(t *testing.T) {
	leak.Check(t)
	c := client(t)
	ratings := start(t, "ratings", nil)
	reviews := start(t, "reviews", map[string]string{"VERSION": "v3", "RATINGS_URL": ratings.URL, "POD_NAME": "reviews-v3-0"})
	srv := start(t, "frontend", map[string]string{"REVIEWS_URL": reviews.URL})

	code, _, body := do(t, c, "GET", srv.URL+"/api/product", "")
	if code != 200 {
		t.Fatalf("GET /api/product = %d %s", code, body)
	}
	got := decode[productBody](t, body)
	if got.Title != "The Comedy of Errors" || got.ReviewsVersion != "v3" || got.Reviews == nil ||
		got.Reviews.Ratings == nil || got.Reviews.Ratings.Stars != 5 || got.Reviews.Ratings.Color != "red" || got.ReviewsError != "" {
		t.Errorf("GET /api/product = %s, want the product with v3's 5 red stars", body)
	}

	code, h, page := do(t, c, "GET", srv.URL+"/", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", code, h.Get("Content-Type"))
	}
	for _, want := range []string{
		"<h1>The Comedy of Errors</h1>",
		"An extremely entertaining play by Shakespeare.",
		`style="color: red">★★★★★</p>`,
		"Reviews served by <strong>reviews v3</strong> (pod reviews-v3-0)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET / lacks %q:\n%s", want, page)
		}
	}
	if code, _, _ := do(t, c, "GET", srv.URL+"/nowhere", ""); code != 404 {
		t.Errorf("GET /nowhere = %d, want 404", code)
	}
}

func TestFrontendDegradesWhenReviewsDown(t *testing.T) {
	leak.Check(t)
	c := client(t)
	srv := start(t, "frontend", map[string]string{"REVIEWS_URL": "http://127.0.0.1:1"})
	code, _, page := do(t, c, "GET", srv.URL+"/", "")
	if code != 200 || !strings.Contains(page, "product reviews are currently unavailable: reviews unavailable: Get &#34;http://127.0.0.1:1/reviews/0&#34;") {
		t.Errorf("GET / with reviews down = %d\n%s", code, page)
	}
	code, _, body := do(t, c, "GET", srv.URL+"/api/product", "")
	if got := decode[productBody](t, body); code != 200 || got.Reviews != nil || got.ReviewsError == "" {
		t.Errorf("GET /api/product with reviews down = %d %s", code, body)
	}
}

// TestFrontendShowsRatingsError checks what the shop's README says the
// product page shows while ratings fails (its fault-injection example):
// each review, with the ratings error in red where its stars would be.
func TestFrontendShowsRatingsError(t *testing.T) {
	leak.Check(t)
	c := client(t)
	// ratings as the fault leaves it: the caller's sidecar answers 503.
	faulted := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "fault filter abort", http.StatusServiceUnavailable)
	}))
	reviews := start(t, "reviews", map[string]string{"VERSION": "v3", "RATINGS_URL": faulted})
	srv := start(t, "frontend", map[string]string{"REVIEWS_URL": reviews.URL})
	code, _, page := do(t, c, "GET", srv.URL+"/", "")
	want := `<p class="error">ratings unavailable: GET ` + faulted + `/ratings/0: upstream answered 503 Service Unavailable: fault filter abort</p>`
	if code != 200 || strings.Count(page, want) != 2 || strings.Contains(page, "★") {
		t.Errorf("GET / with ratings failing = %d, want each of the 2 reviews with %s and no stars:\n%s", code, want, page)
	}
	if !strings.Contains(page, ".error { color: #a00; }") {
		t.Errorf("GET /: the error class is not red:\n%s", page)
	}
}

func TestPayment(t *testing.T) {
	leak.Check(t)
	c := client(t)
	srv := start(t, "payment-service", nil)
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"pay", "POST", "/pay", `{"order":"o-1","amount":12.5}`, 200, `{"status":"paid","id":"pay-1","order":"o-1","amount":12.5}`},
		{"pay again", "POST", "/pay", `{"order":"o-2","amount":3}`, 200, `{"status":"paid","id":"pay-2","order":"o-2","amount":3}`},
		{"refund", "POST", "/refund", `{"id":"pay-1"}`, 200, `{"status":"refunded","id":"pay-1"}`},
		{"refund without body", "POST", "/refund", ``, 200, `{"status":"refunded"}`},
		{"bad JSON", "POST", "/pay", `{"order":`, 400, `{"error":"invalid JSON body: unexpected EOF; want {\"order\":\"<order id>\",\"amount\":<positive number>}"}`},
		{"empty pay", "POST", "/pay", ``, 400, `{"error":"invalid JSON body: empty body; want {\"order\":\"<order id>\",\"amount\":<positive number>}"}`},
		{"unknown field", "POST", "/pay", `{"order":"o","amount":1,"currency":"EUR"}`, 400, `{"error":"invalid JSON body: json: unknown field \"currency\"; want {\"order\":\"<order id>\",\"amount\":<positive number>}"}`},
		{"trailing data", "POST", "/pay", `{"order":"o","amount":1} {}`, 400, `{"error":"invalid JSON body: unexpected data after the JSON object; want {\"order\":\"<order id>\",\"amount\":<positive number>}"}`},
		{"no order", "POST", "/pay", `{"amount":1}`, 400, `{"error":"\"order\" is required; want {\"order\":\"<order id>\",\"amount\":<positive number>}"}`},
		{"wrong type", "POST", "/pay", `{"order":7,"amount":1}`, 400, `{"error":"invalid JSON body: \"order\" is a JSON number, want a string; want {\"order\":\"<order id>\",\"amount\":<positive number>}"}`},
		{"zero amount", "POST", "/pay", `{"order":"o"}`, 400, `{"error":"\"amount\" must be a positive number; want {\"order\":\"<order id>\",\"amount\":<positive number>}"}`},
		{"bad refund JSON", "POST", "/refund", `[1]`, 400, `{"error":"invalid JSON body: the body is a JSON array, want an object; want nothing or {\"id\":\"<payment id>\",\"order\":\"<order id>\"}"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := do(t, c, tc.method, srv.URL+tc.path, tc.body)
			if code != tc.code || compact(t, body) != tc.want {
				t.Errorf("%s %s %s = %d %s, want %d %s", tc.method, tc.path, tc.body, code, body, tc.code, tc.want)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
	if code, _, _ := do(t, c, "GET", srv.URL+"/pay", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /pay = %d, want 405", code)
	}
}

func TestCheckoutAndRefund(t *testing.T) {
	leak.Check(t)
	c := client(t)
	payment := start(t, "payment-service", nil)
	checkout := start(t, "checkout-service", map[string]string{"PAYMENT_URL": payment.URL})
	refund := start(t, "refund-service", map[string]string{"PAYMENT_URL": payment.URL})

	code, _, body := do(t, c, "POST", checkout.URL+"/checkout", `{"order":"o-7","amount":20}`)
	if want := `{"order":"o-7","amount":20,"payment":{"status":"paid","id":"pay-1","order":"o-7","amount":20}}`; code != 200 || compact(t, body) != want {
		t.Errorf("POST /checkout = %d %s, want 200 %s", code, body, want)
	}
	code, _, body = do(t, c, "POST", refund.URL+"/refund", `{"id":"pay-1","order":"o-7"}`)
	if want := `{"status":"refunded","id":"pay-1","order":"o-7"}`; code != 200 || compact(t, body) != want {
		t.Errorf("POST /refund = %d %s, want 200 %s", code, body, want)
	}
	code, _, body = do(t, c, "POST", checkout.URL+"/checkout", `not json`)
	if code != 400 || !strings.Contains(body, "invalid JSON body: invalid character 'o' in literal null") {
		t.Errorf("POST /checkout bad JSON = %d %s, want 400", code, body)
	}
	code, _, body = do(t, c, "POST", refund.URL+"/refund", `{"bogus":1}`)
	if code != 400 || !strings.Contains(body, `unknown field \"bogus\"`) {
		t.Errorf("POST /refund bad JSON = %d %s, want 400", code, body)
	}
}

func TestCheckoutUpstreamFailures(t *testing.T) {
	leak.Check(t)
	c := client(t)
	// An AuthorizationPolicy refusing the caller looks like this to it.
	denied := startHandler(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "RBAC: access denied", http.StatusForbidden)
	}))
	refund := start(t, "refund-service", map[string]string{"PAYMENT_URL": denied})
	code, _, body := do(t, c, "POST", refund.URL+"/refund", "")
	want := `{"error":"payment-service: POST ` + denied + `/refund: upstream answered 403 Forbidden: RBAC: access denied","upstreamStatus":403}`
	if code != 502 || compact(t, body) != want {
		t.Errorf("refund denied = %d %s, want 502 %s", code, body, want)
	}

	checkout := start(t, "checkout-service", map[string]string{"PAYMENT_URL": "http://127.0.0.1:1"})
	code, _, body = do(t, c, "POST", checkout.URL+"/checkout", `{"order":"o","amount":1}`)
	if code != 502 || !strings.Contains(body, `payment-service: Post \"http://127.0.0.1:1/pay\"`) || strings.Contains(body, "upstreamStatus") {
		t.Errorf("checkout with payment down = %d %s, want 502 naming the payment URL", code, body)
	}
}
