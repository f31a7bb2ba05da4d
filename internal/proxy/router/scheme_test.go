package router

import "testing"

// The scheme a route's :scheme matcher sees is Envoy's: an absolute-form
// target's, else a valid X-Forwarded-Proto, else the connection's.
func TestSchemeOf(t *testing.T) {
	for _, c := range []struct {
		target string
		xfp    []string
		tls    bool
		want   string
	}{
		{"/a", nil, false, "http"},
		{"/a", nil, true, "https"},
		{"/a", []string{"https"}, false, "https"},
		{"/a", []string{"HTTP"}, true, "http"},
		{"/a", []string{" https "}, false, "https"},
		{"/a", []string{"ftp"}, false, "http"},        // not a valid scheme: the connection's
		{"/a", []string{"https,http"}, false, "http"}, // a list is not one scheme
		{"/a", []string{"https", "http"}, false, "http"},
		{"http://reviews:9080/a", []string{"https"}, false, "http"}, // the target's scheme wins
		{"HTTPS://reviews/a", nil, false, "https"},
		{"/redirect?to=https://x", nil, false, "http"},
		{"", nil, false, "http"},
	} {
		if got := SchemeOf(c.target, c.xfp, c.tls); got != c.want {
			t.Errorf("SchemeOf(%q, %q, %v) = %q, want %q", c.target, c.xfp, c.tls, got, c.want)
		}
	}
}
