package demo

import (
	"html/template"
	"net/http"
	"strings"
)

// productBody is the frontend's /api/product answer: the product and what
// reviews said about it, or why it could not be asked.
type productBody struct {
	ID          int    `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
	// ReviewsVersion is the X-Reviews-Version of the reviews answer.
	ReviewsVersion string       `json:"reviewsVersion,omitempty"`
	Reviews        *reviewsBody `json:"reviews,omitempty"`
	ReviewsError   string       `json:"reviewsError,omitempty"`
}

// newFrontend serves the product page (GET /) and the same as JSON
// (GET /api/product), asking reviews (REVIEWS_URL, default
// http://reviews:9080) on every request. A failing reviews leaves the page
// up with the error in place of the reviews, as Bookinfo's productpage does.
func newFrontend(d *deps) (http.Handler, error) {
	reviewsURL := d.env("REVIEWS_URL", "http://reviews:9080")
	product := func(r *http.Request) productBody {
		p := productBody{
			ID:    0,
			Title: "The Comedy of Errors",
			Description: "Wikipedia Summary: The Comedy of Errors is one of William Shakespeare's early plays. " +
				"It is his shortest and one of his most farcical comedies, with a major part of the humour " +
				"coming from slapstick and mistaken identity, in addition to puns and word play.",
		}
		var rv reviewsBody
		h, err := d.call(r, http.MethodGet, reviewsURL+"/reviews/0", nil, &rv)
		if err != nil {
			d.log.Warn("reviews unavailable", "error", err)
			p.ReviewsError = "reviews unavailable: " + err.Error()
			return p
		}
		p.ReviewsVersion = h.Get(reviewsVersionHeader)
		p.Reviews = &rv
		return p
	}

	mux := newMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := page.Execute(w, product(r)); err != nil {
			d.log.Warn("rendering the page", "error", err)
		}
	})
	mux.HandleFunc("GET /api/product", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, product(r))
	})
	return mux, nil
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"stars": func(n int) string {
		n = max(0, min(n, 5))
		return strings.Repeat("★", n) + strings.Repeat("☆", 5-n)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}} · Trellis shop</title>
<style>
body { font-family: sans-serif; max-width: 46em; margin: 2em auto; padding: 0 1em; color: #222; }
.review { border-left: 3px solid #ccc; margin: 1em 0; padding: 0.2em 1em; }
.stars { font-size: 1.4em; }
.error { color: #a00; }
footer { color: #666; font-size: 0.9em; margin-top: 2em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>{{.Description}}</p>
<h2>Reviews</h2>
{{with .Reviews}}
{{range .Reviews}}<div class="review">
<p>{{.Text}}</p>
<p><em>— {{.Reviewer}}</em></p>
{{with $.Reviews.Ratings}}{{if .Error}}<p class="error">{{.Error}}</p>{{else}}<p class="stars" style="color: {{.Color}}">{{stars .Stars}}</p>{{end}}{{end}}
</div>
{{end}}
<footer>Reviews served by <strong>reviews {{$.ReviewsVersion}}</strong>{{with .Pod}} (pod {{.}}){{end}}.</footer>
{{else}}
<p class="error">Sorry, product reviews are currently unavailable: {{.ReviewsError}}</p>
{{end}}
</body>
</html>
`))
