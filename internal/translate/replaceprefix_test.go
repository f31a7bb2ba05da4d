package translate

import (
	"regexp"
	"strings"
	"testing"
)

// ReplacePrefixMatch as the Gateway API's table defines it, applied as the
// proxy applies a regex rewrite (every match replaced, \N a capture).
func TestReplacePrefix(t *testing.T) {
	for _, c := range []struct{ path, prefix, replacement, want string }{
		{"/foo/bar", "/foo", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz/", "/xyz/bar"},
		{"/foo", "/foo", "/xyz", "/xyz"},
		{"/foo/", "/foo", "/xyz", "/xyz/"},
		{"/foo/bar", "/foo", "", "/bar"},
		{"/foo/", "/foo", "", "/"},
		{"/foo", "/foo", "", "/"},
		{"/foo/", "/foo", "/", "/"},
		{"/foo", "/foo", "/", "/"},
		{"/foo/bar", "/", "/xyz", "/xyz/foo/bar"},
		{"/foo/bar", "/", "/", "/foo/bar"},
		{"/a.b/c", "/a.b", "/d", "/d/c"}, // the prefix is literal, not a pattern
	} {
		rr := replacePrefix(c.prefix, c.replacement)
		re := regexp.MustCompile(rr.GetPattern().GetRegex())
		sub := regexp.MustCompile(`\\(\d)`).ReplaceAllString(strings.ReplaceAll(rr.GetSubstitution(), "$", "$$"), "$${$1}")
		if got := re.ReplaceAllString(c.path, sub); got != c.want {
			t.Errorf("%s with prefix %q replaced by %q: %q, want %q (pattern %q, substitution %q)", c.path, c.prefix, c.replacement, got, c.want, rr.GetPattern().GetRegex(), rr.GetSubstitution())
		}
	}
}
