package hcm

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// pathOutcome is what normalization makes of a request.
type pathOutcome uint8

const (
	pathAsIs     pathOutcome = iota // serve the path as it came
	pathChanged                     // serve the normalized path
	pathRedirect                    // 307 to the normalized path
	pathReject                      // 400
)

// normalizePath is the request path's first step, as Envoy's connection
// manager normalizes :path before any filter or the router runs: the
// path it leaves in the request is the one authorization judges, routes
// match and the upstream is sent, so no request is judged in one
// spelling and served in another. A path that cannot be normalized (a
// NUL), or escaped slashes under REJECT_REQUEST, is Envoy's 400; escaped
// slashes under UNESCAPE_AND_REDIRECT are a 307 to the unescaped path.
func (s *Server) normalizePath(x *exchange) bool {
	c := x.c
	if c == nil || c.Paths == nil {
		return true
	}
	r := x.r
	target := r.RequestURI
	if target == "" || target == "*" {
		return true
	}
	prefix, pq := splitTarget(target)
	norm, out := normalizeTarget(pq, c.Paths())
	switch out {
	case pathAsIs:
		return true
	case pathReject:
		s.stats.RqFailedPathNormalization.Add(1)
		s.reply(x, http.StatusBadRequest, 0, "path_normalization_failed: the path cannot be normalized or has escaped slashes (%2F, %5C), which this listener refuses")
		return false
	case pathRedirect:
		s.stats.RqRedirectedWithNormalizedPath.Add(1)
		if isGRPC(r) {
			// A gRPC client does not follow redirects: Envoy's INTERNAL.
			s.reply(x, http.StatusBadRequest, 0, "path_normalization_failed: escaped slashes in a gRPC path")
			return false
		}
		closeIfBodyPending(x.w.Header(), x)
		s.count(http.StatusTemporaryRedirect)
		x.w.Header().Set("Location", norm)
		x.w.WriteHeader(http.StatusTemporaryRedirect)
		return false
	}
	path, query := norm, ""
	if i := strings.IndexByte(norm, '?'); i >= 0 {
		path, query = norm[:i], norm[i+1:]
	}
	decoded, err := url.PathUnescape(path)
	if err != nil {
		// Only escapes the request line already had survive
		// normalization, and the parser refused invalid ones.
		s.stats.RqFailedPathNormalization.Add(1)
		s.reply(x, http.StatusBadRequest, 0, "path_normalization_failed: "+err.Error())
		return false
	}
	r.RequestURI = prefix + norm
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery = decoded, path, query
	if !strings.Contains(norm, "?") {
		r.URL.ForceQuery = false
	}
	return true
}

// splitTarget splits a request target into what comes before its path
// (an absolute-form target's scheme and authority, else nothing) and its
// path and query.
func splitTarget(target string) (prefix, pathQuery string) {
	if target[0] == '/' {
		return "", target
	}
	i := strings.Index(target, "://")
	if i < 0 {
		return "", target
	}
	rest := target[i+3:]
	j := strings.IndexAny(rest, "/?#")
	if j < 0 {
		return target, ""
	}
	return target[:i+3+j], rest[j:]
}

// normalizeTarget is Envoy's ConnectionManagerUtility::maybeNormalizePath
// on a path and query: the fragment dropped, then escaped slashes per the
// action, then RFC 3986 normalization (normalize_path), then merged
// slashes, the query untouched. It allocates only for a path it changes.
func normalizeTarget(pq string, n xdsresource.PathNormalization) (string, pathOutcome) {
	if !needsWork(pq, n) {
		return pq, pathAsIs
	}
	if i := strings.IndexByte(pq, '#'); i >= 0 {
		pq = pq[:i]
	}
	path, query := pq, ""
	if i := strings.IndexByte(pq, '?'); i >= 0 {
		path, query = pq[:i], pq[i:]
	}
	out := pathChanged
	if n.EscapedSlashes != xdsresource.EscapedSlashesKeep && n.EscapedSlashes != xdsresource.EscapedSlashesDefault {
		if p, found := unescapeSlashes(path); found {
			switch n.EscapedSlashes {
			case xdsresource.EscapedSlashesReject:
				return "", pathReject
			case xdsresource.EscapedSlashesRedirect:
				out = pathRedirect
			}
			path = p
		}
	}
	if n.Normalize {
		p, ok := canonicalPath(path)
		if !ok {
			return "", pathReject
		}
		path = p
	}
	if n.MergeSlashes {
		path = mergeSlashes(path)
	}
	return path + query, out
}

// needsWork reports whether normalization could change pq, without
// allocating: the answer for every path already in normal form is no.
func needsWork(pq string, n xdsresource.PathNormalization) bool {
	unescape := n.EscapedSlashes != xdsresource.EscapedSlashesKeep && n.EscapedSlashes != xdsresource.EscapedSlashesDefault
	if n.Normalize && (pq == "" || pq[0] != '/') {
		return true
	}
	for i := 0; i < len(pq); i++ {
		c := pq[i]
		switch {
		case c == '#':
			return true
		case c == '?':
			return false
		case c == '/':
			if n.MergeSlashes && i+1 < len(pq) && pq[i+1] == '/' {
				return true
			}
			if n.Normalize && dotSegmentAt(pq, i+1) {
				return true
			}
		case c == '%':
			if i+2 >= len(pq) {
				continue
			}
			v, ok := unhex2(pq[i+1], pq[i+2])
			if !ok {
				continue
			}
			if unescape && (v == '/' || v == '\\') {
				return true
			}
			if n.Normalize && (v == 0 || unreserved(v)) {
				return true
			}
		case n.Normalize && (c == '\\' || escapeInPath(c)):
			return true
		}
	}
	return false
}

// dotSegmentAt reports whether the segment starting at i of a path is
// "." or ".." (either dot possibly written %2e).
func dotSegmentAt(p string, i int) bool {
	dots := 0
	for dots < 3 {
		switch {
		case i < len(p) && p[i] == '.':
			i++
		case i+2 < len(p) && p[i] == '%' && p[i+1] == '2' && (p[i+2] == 'e' || p[i+2] == 'E'):
			i += 3
		default:
			return dots > 0 && (i == len(p) || p[i] == '/' || p[i] == '?' || p[i] == '#' || p[i] == '\\')
		}
		dots++
	}
	return false
}

// unescapeSlashes replaces %2F, %2f, %5C and %5c in a path with / and \,
// as Envoy's PathUtil::unescapeSlashes, and reports whether it found any.
func unescapeSlashes(p string) (string, bool) {
	var b strings.Builder
	found := false
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if v, ok := unhex2(p[i+1], p[i+2]); ok && (v == '/' || v == '\\') {
				if !found {
					b.Grow(len(p))
					b.WriteString(p[:i])
					found = true
				}
				b.WriteByte(v)
				i += 2
				continue
			}
		}
		if found {
			b.WriteByte(p[i])
		}
	}
	if !found {
		return p, false
	}
	return b.String(), true
}

// canonicalPath is Envoy's normalize_path (Chromium's path canonicalizer,
// which Envoy uses): a leading slash, backslashes as slashes, escaped
// unreserved characters decoded (other escapes kept as written, their
// case too), characters a path may not hold escaped, and "." and ".."
// segments resolved (".." above the root stays at the root). A NUL,
// written or escaped, makes the path invalid.
func canonicalPath(p string) (string, bool) {
	// Characters first, then segments: a segment is "." or ".." in
	// Chromium exactly when it is after decoding.
	chars := make([]byte, 0, len(p)+1)
	if p == "" || (p[0] != '/' && p[0] != '\\') {
		chars = append(chars, '/')
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == 0:
			return "", false
		case c == '\\':
			chars = append(chars, '/')
		case c == '%':
			if i+2 < len(p) {
				if v, ok := unhex2(p[i+1], p[i+2]); ok {
					switch {
					case v == 0:
						return "", false
					case unreserved(v):
						chars = append(chars, v)
					default:
						chars = append(chars, p[i:i+3]...)
					}
					i += 2
					continue
				}
			}
			// An invalid escape passes through, as browsers let it.
			chars = append(chars, '%')
		case escapeInPath(c):
			chars = append(chars, '%', upperHex[c>>4], upperHex[c&15])
		default:
			chars = append(chars, c)
		}
	}
	out := make([]byte, 0, len(chars))
	out = append(out, '/')
	segs := chars[1:]
	for {
		end := len(segs)
		last := true
		for j, c := range segs {
			if c == '/' {
				end, last = j, false
				break
			}
		}
		seg := segs[:end]
		switch string(seg) {
		case ".":
		case "..":
			// Drop the output's last segment: it ends in '/'.
			if len(out) > 1 {
				k := len(out) - 2
				for out[k] != '/' {
					k--
				}
				out = out[:k+1]
			}
		default:
			out = append(out, seg...)
			if !last {
				out = append(out, '/')
			}
		}
		if last {
			break
		}
		segs = segs[end+1:]
	}
	return string(out), true
}

// mergeSlashes makes each run of slashes in a path one.
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && len(b) > 0 && b[len(b)-1] == '/' {
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

const upperHex = "0123456789ABCDEF"

// unreserved are RFC 3986's unreserved characters, which normalization
// decodes when escaped.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// escapeInPath are the characters Chromium's canonicalizer escapes in a
// path: controls, space, DEL, bytes past ASCII and " < > ` { }.
func escapeInPath(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '`' || c == '{' || c == '}'
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
