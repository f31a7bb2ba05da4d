package hcm

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// The four MeshConfig pathNormalization settings, as Istio translates
// them into the connection manager.
var (
	normNone   = xdsresource.PathNormalization{EscapedSlashes: xdsresource.EscapedSlashesKeep}
	normBase   = xdsresource.PathNormalization{Normalize: true, EscapedSlashes: xdsresource.EscapedSlashesKeep}
	normMerge  = xdsresource.PathNormalization{Normalize: true, MergeSlashes: true, EscapedSlashes: xdsresource.EscapedSlashesKeep}
	normDecode = xdsresource.PathNormalization{Normalize: true, MergeSlashes: true, EscapedSlashes: xdsresource.EscapedSlashesForward}
)

// TestNormalizeTarget runs Envoy's path utility cases and Istio's
// integration expectations for each MeshConfig setting.
func TestNormalizeTarget(t *testing.T) {
	type tc struct {
		in, want string
		out      pathOutcome
	}
	changed := func(in, want string) tc {
		if in == want {
			return tc{in, want, pathAsIs}
		}
		return tc{in, want, pathChanged}
	}
	for _, set := range []struct {
		name  string
		n     xdsresource.PathNormalization
		cases []tc
	}{
		{"NONE", normNone, []tc{
			changed("/a/../b", "/a/../b"),
			changed("//a//b", "//a//b"),
			changed(`/a\b`, `/a\b`),
			changed("/a%2Fb", "/a%2Fb"),
			changed("/app#foo", "/app"), // Envoy drops a fragment whatever the settings
		}},
		{"BASE", normBase, []tc{
			// Envoy's PathUtilityTest.
			changed("/xyz", "/xyz"),
			changed("/x/y/z", "/x/y/z"),
			changed("/a/b/../c", "/a/c"),
			changed("/a/b/./c", "/a/b/c"),
			changed("a/b/../c", "/a/c"),
			changed("/a/b/../../../../c", "/c"),
			changed(`/a/..\c`, "/c"),
			changed("/%c0%af", "/%c0%af"),
			changed("/%5c%25", "/%5c%25"),
			changed("/a/b/%2E%2E/c", "/a/c"),
			changed("/a/b/%2e%2e/c", "/a/c"),
			changed("/a/b/%2E./c", "/a/c"),
			changed("/a/b/%2E/c", "/a/b/c"),
			changed("..", "/"),
			changed("/../a/b", "/a/b"),
			changed("/./a/b", "/a/b"),
			changed("/A/B/C", "/A/B/C"),
			changed("/a/%2F%2f/c", "/a/%2F%2f/c"),
			{"/xyz/.%00../abc", "", pathReject},
			{"/xyz/%00.%00./abc", "", pathReject},
			{"/xyz/AAAAA%%0000/abc", "", pathReject},
			// Trailing dot segments leave the directory.
			changed("/a/b/.", "/a/b/"),
			changed("/a/b/..", "/a/"),
			changed("/a/./b", "/a/b"),
			changed("/a/../b", "/b"),
			// Slashes are not merged under BASE.
			changed("//a//b", "//a//b"),
			changed("/app//../admin", "/app/admin"),
			// Istio's integration expectations.
			changed("/app/%2E./admin", "/admin"),
			changed("/xyz%30..//abc", "/xyz0..//abc"),
			changed(`/app\admin`, "/app/admin"),
			changed(`/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc`, `/%5Capp%2f%5c%2F..%2fadmin%5c/abc`),
			// Unreserved characters decoded, others kept as written.
			changed("/%7euser/%41%62", "/~user/Ab"),
			changed("/a%20b", "/a%20b"),
			// Characters a path may not hold are escaped.
			changed("/a\"b", "/a%22b"),
			// The query is left alone.
			changed("/a/../b?x=/../y&z=%2e%2e", "/b?x=/../y&z=%2e%2e"),
			changed("/a?b/../c", "/a?b/../c"),
			changed("/a/./b#frag", "/a/b"),
		}},
		{"MERGE_SLASHES", normMerge, []tc{
			changed("//a//b", "/a/b"),
			changed("/app//", "/app/"),
			changed("/app/%2f", "/app/%2f"),
			changed("/xyz%30..//abc", "/xyz0../abc"),
			changed(`/app/\/\/\admin`, "/app/admin"),
			changed(`/%2Fapp%5cadmin%5Cabc`, `/%2Fapp%5cadmin%5Cabc`),
			changed("/app//../admin", "/app/admin"),
			changed("/app//../../admin", "/admin"),
			changed("/a//b?a=///c", "/a/b?a=///c"),
		}},
		{"DECODE_AND_MERGE_SLASHES", normDecode, []tc{
			changed("/app/%2f", "/app/"),
			changed("/app%2f/", "/app/"),
			changed("/admin%2Fx", "/admin/x"),
			changed(`/%2Fapp%5cadmin%5Cabc`, "/app/admin/abc"),
			changed(`/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc`, "/app/admin/abc"),
			changed("/%c0%2e%c0%2e/admin", "/%c0.%c0./admin"),
			changed("/%c0%2fadmin", "/%c0/admin"),
			changed("/a?x=%2F", "/a?x=%2F"),
		}},
		{"REJECT_REQUEST", xdsresource.PathNormalization{Normalize: true, EscapedSlashes: xdsresource.EscapedSlashesReject}, []tc{
			{"/a%2Fb", "", pathReject},
			{"/a%5cb", "", pathReject},
			changed("/a/b?x=%2F", "/a/b?x=%2F"),
			changed("/a/./b", "/a/b"),
		}},
		{"UNESCAPE_AND_REDIRECT", xdsresource.PathNormalization{Normalize: true, MergeSlashes: true, EscapedSlashes: xdsresource.EscapedSlashesRedirect}, []tc{
			{"/a%2Fb", "/a/b", pathRedirect},
			{"/a%2F%2Fb/./c?q", "/a/b/c?q", pathRedirect},
			changed("/a/./b", "/a/b"),
		}},
		{"UNESCAPE_AND_FORWARD without normalize_path", xdsresource.PathNormalization{EscapedSlashes: xdsresource.EscapedSlashesForward}, []tc{
			changed("/a%2Fb", "/a/b"),
			changed("/a%5Cb/../c", `/a\b/../c`),
		}},
	} {
		t.Run(set.name, func(t *testing.T) {
			for _, c := range set.cases {
				got, out := normalizeTarget(c.in, set.n)
				if out != c.out || (out != pathReject && got != c.want) {
					t.Errorf("%s: %q (outcome %d), want %q (outcome %d)", c.in, got, out, c.want, c.out)
				}
			}
		})
	}
}

// TestNormalizeTargetKeepsNormalPaths: what a path already normal is
// left as, it is left without a copy.
func TestNormalizeTargetKeepsNormalPaths(t *testing.T) {
	for _, n := range []xdsresource.PathNormalization{normNone, normBase, normMerge, normDecode} {
		for _, p := range []string{"/", "/a/b", "/a/b/", "/a/.b/c..d/...", "/%C3%A9t%c3%a9", "/a/b?x=/../y#", "/a%25b", "/a:b@c!$&'()*+,;=", "/a?"} {
			if strings.Contains(p, "#") {
				continue
			}
			got, out := normalizeTarget(p, n)
			if out != pathAsIs || got != p {
				t.Errorf("%+v: %q became %q (outcome %d), want it as is", n, p, got, out)
			}
		}
	}
}

// TestNormalizePathAllocations: the request path's normalization step
// costs an already-normal request nothing.
func TestNormalizePathAllocations(t *testing.T) {
	s := New(Config{})
	r := httptest.NewRequest("GET", "/api/v1/orders/42?expand=items", nil)
	x := &exchange{r: r, c: &Conn{Paths: func() xdsresource.PathNormalization { return normDecode }}}
	n := testing.AllocsPerRun(200, func() {
		if !s.normalizePath(x) {
			t.Fatal("refused a normal path")
		}
	})
	if n != 0 {
		t.Errorf("normalizePath on a normal path: %.0f allocations, want 0", n)
	}
}

// TestNormalizePathRewritesRequest: a changed path is what the request
// carries on (RequestURI for the router and authorization, URL for the
// upstream), an absolute-form target keeping its scheme and authority.
func TestNormalizePathRewritesRequest(t *testing.T) {
	s := New(Config{})
	for _, c := range []struct{ target, uri, path, raw, query string }{
		{"/public/../admin?x=1", "/admin?x=1", "/admin", "/admin", "x=1"},
		{"/a/%2e/b%20c", "/a/b%20c", "/a/b c", "/a/b%20c", ""},
		{"http://svc:80/a/./b?q", "http://svc:80/a/b?q", "/a/b", "/a/b", "q"},
		{"/admin%2Fx", "/admin/x", "/admin/x", "/admin/x", ""},
	} {
		r := httptest.NewRequest("GET", c.target, nil)
		x := &exchange{r: r, c: &Conn{Paths: func() xdsresource.PathNormalization { return normDecode }}}
		if !s.normalizePath(x) {
			t.Fatalf("%s: refused", c.target)
		}
		if r.RequestURI != c.uri || r.URL.Path != c.path || r.URL.EscapedPath() != c.raw || r.URL.RawQuery != c.query {
			t.Errorf("%s: RequestURI %q, URL path %q escaped %q query %q; want %q, %q, %q, %q", c.target, r.RequestURI, r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, c.uri, c.path, c.raw, c.query)
		}
		if got := requestPath(r); got != strings.TrimPrefix(c.uri, "http://svc:80") {
			t.Errorf("%s: requestPath %q", c.target, got)
		}
	}
}

// TestNormalizePathAnswers: the escaped-slash actions that answer
// themselves: REJECT_REQUEST is Envoy's 400, UNESCAPE_AND_REDIRECT a 307
// to the normalized path (its query kept) and, for gRPC, which follows no
// redirect, INTERNAL; a NUL is a 400 whatever the action. Each is counted.
func TestNormalizePathAnswers(t *testing.T) {
	reject := xdsresource.PathNormalization{Normalize: true, EscapedSlashes: xdsresource.EscapedSlashesReject}
	redirect := xdsresource.PathNormalization{Normalize: true, MergeSlashes: true, EscapedSlashes: xdsresource.EscapedSlashesRedirect}
	for _, tc := range []struct {
		name     string
		n        xdsresource.PathNormalization
		target   string
		grpc     bool
		status   int
		location string
		grpcCode string
	}{
		{"reject", reject, "/a%2Fb", false, 400, "", ""},
		{"reject backslash", reject, "/a%5cb", false, 400, "", ""},
		{"NUL", normBase, "/a%00b", false, 400, "", ""},
		{"redirect", redirect, "/a%2F%2Fb/./c?q=1", false, 307, "/a/b/c?q=1", ""},
		{"redirect gRPC", redirect, "/pkg.Svc%2FMethod", true, 200, "", "13"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{})
			r := httptest.NewRequest("GET", tc.target, nil)
			if tc.grpc {
				r.Header.Set("Content-Type", "application/grpc")
			}
			rec := httptest.NewRecorder()
			n := tc.n
			x := &exchange{r: r, w: &stdWriter{ResponseWriter: rec}, c: &Conn{Paths: func() xdsresource.PathNormalization { return n }}}
			if s.normalizePath(x) {
				t.Fatal("the request went on")
			}
			if rec.Code != tc.status || rec.Header().Get("Location") != tc.location || rec.Header().Get("Grpc-Status") != tc.grpcCode {
				t.Errorf("%d Location %q grpc-status %q; want %d %q %q", rec.Code, rec.Header().Get("Location"), rec.Header().Get("Grpc-Status"), tc.status, tc.location, tc.grpcCode)
			}
			if got := s.stats.RqFailedPathNormalization.Load() + s.stats.RqRedirectedWithNormalizedPath.Load(); got != 1 {
				t.Errorf("counted %d, want 1", got)
			}
		})
	}
}
