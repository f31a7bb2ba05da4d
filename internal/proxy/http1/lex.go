package http1

import "strings"

// The lexical rules the package's parsers and followers share: requests
// and responses read names and values by the same rules (RFC 9110, RFC
// 9112), spelled here once.

// trimOWS drops optional whitespace (SP and HTAB) from both ends of a
// field value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// canonicalName appends name (a token) spelled as
// textproto.CanonicalMIMEHeaderKey spells it.
func canonicalName(dst, name []byte) []byte {
	upper := true
	for _, c := range name {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}

// hasToken reports whether the comma-separated list v has token (lower
// case), as httpguts.HeaderValuesContainsToken reads one value.
func hasToken(v, token string) bool {
	for len(v) > 0 {
		elem := v
		if i := strings.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		elem = strings.Trim(elem, " \t")
		if len(elem) != len(token) {
			continue
		}
		same := true
		for i := 0; i < len(elem) && same; i++ {
			c := elem[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			same = c == token[i]
		}
		if same {
			return true
		}
	}
	return false
}

// HasLineBreak reports whether s holds CR or LF, which would let a value
// written into a head start a header (or a message) of its own.
func HasLineBreak(s string) bool {
	return strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, '\n') >= 0
}

// internString returns b as a string: common's when common has it, else the one
// *strs holds, else a new one that it adds to *strs while *strs has fewer
// than maxStrings strings and b is at most maxLen bytes. A connection's
// messages repeat their names and values, so after its first message they
// cost no allocation; the bounds keep a hostile peer from growing the
// table.
func internString(strs *map[string]string, common map[string]string, b []byte, maxStrings, maxLen int) string {
	if s, ok := common[string(b)]; ok {
		return s
	}
	if s, ok := (*strs)[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(b) <= maxLen && len(*strs) < maxStrings {
		if *strs == nil {
			*strs = make(map[string]string)
		}
		(*strs)[s] = s
	}
	return s
}

// tokenChar reports whether c may appear in a token (RFC 9110 §5.6.2),
// which header names and methods are.
func tokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validName reports whether name is a token, the only names net/http
// canonicalises (and accepts).
func validName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !tokenChar(c) {
			return false
		}
	}
	return true
}

// validValueByte is textproto's: VCHAR, SP, HTAB and obs-text.
func validValueByte(c byte) bool {
	return c >= 0x80 || c == '\t' || (c >= 0x20 && c != 0x7f)
}

// asciiEqualFold reports whether b is lower, a lower-case ASCII string,
// ignoring case.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
