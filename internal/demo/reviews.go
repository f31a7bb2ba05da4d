package demo

import (
	"fmt"
	"net/http"
)

// reviewsVersionHeader names the version that answered, on every reviews
// response, so traffic splits can be counted from the outside.
const reviewsVersionHeader = "X-Reviews-Version"

type review struct {
	Reviewer string `json:"reviewer"`
	Text     string `json:"text"`
}

// reviewRatings is the stars reviews v2/v3 fetched, or why they could not.
type reviewRatings struct {
	Stars int    `json:"stars,omitempty"`
	Color string `json:"color,omitempty"`
	Error string `json:"error,omitempty"`
}

// reviewsBody is reviews' answer. Ratings is absent from v1's.
type reviewsBody struct {
	ID      int            `json:"id"`
	Version string         `json:"version"`
	Pod     string         `json:"pod,omitempty"`
	Reviews []review       `json:"reviews"`
	Ratings *reviewRatings `json:"ratings,omitempty"`
}

// demoReviews are Bookinfo's two reviews of The Comedy of Errors.
var demoReviews = []review{
	{Reviewer: "Reviewer1", Text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"},
	{Reviewer: "Reviewer2", Text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."},
}

// starColor is each version's star colour; v1 shows no stars at all.
var starColor = map[string]string{"v1": "", "v2": "black", "v3": "red"}

// newReviews serves GET /reviews/{id}. Its version comes from VERSION (the
// pod's `version` label in examples/shop), v1 by default: v1 never calls
// ratings, v2 shows its stars black, v3 red, as in Istio's Bookinfo. When
// ratings fails, reviews still answers, with the error in place of stars.
func newReviews(d *deps) (http.Handler, error) {
	version := d.env("VERSION", "v1")
	color, ok := starColor[version]
	if !ok {
		return nil, fmt.Errorf("VERSION %q: use v1, v2 or v3", version)
	}
	ratingsURL := d.env("RATINGS_URL", "http://ratings:9080")
	pod := d.getenv("POD_NAME")

	mux := newMux()
	mux.HandleFunc("GET /reviews/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r)
		if !ok {
			return
		}
		body := reviewsBody{ID: id, Version: version, Pod: pod, Reviews: demoReviews}
		if color != "" {
			var rt rating
			if _, err := d.call(r, http.MethodGet, fmt.Sprintf("%s/ratings/%d", ratingsURL, id), nil, &rt); err != nil {
				d.log.Warn("ratings unavailable", "error", err)
				body.Ratings = &reviewRatings{Error: "ratings unavailable: " + err.Error()}
			} else {
				body.Ratings = &reviewRatings{Stars: rt.Stars, Color: color}
			}
		}
		writeJSON(w, http.StatusOK, body)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(reviewsVersionHeader, version)
		mux.ServeHTTP(w, r)
	}), nil
}
