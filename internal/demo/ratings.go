package demo

import (
	"net/http"
	"strconv"
)

// rating is ratings' answer.
type rating struct {
	ID    int `json:"id"`
	Stars int `json:"stars"`
}

// newRatings serves GET /ratings/{id}: a deterministic number of stars,
// 1 to 5, per product id (product 0, the demo's, has 5).
func newRatings(*deps) (http.Handler, error) {
	mux := newMux()
	mux.HandleFunc("GET /ratings/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, rating{ID: id, Stars: starsFor(id)})
	})
	return mux, nil
}

func starsFor(id int) int { return 5 - id%5 }

// productID parses the {id} path value, answering 400 when it is not a
// product id.
func productID(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.PathValue("id")
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 {
		writeError(w, http.StatusBadRequest, "product id %q: want a non-negative integer, e.g. 0", s)
		return 0, false
	}
	return id, true
}
