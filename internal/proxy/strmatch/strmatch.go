package strmatch

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Kind says how a Matcher compares.
type Kind uint8

// Matcher kinds: Envoy's, plus NonEmpty, which authorization compiles
// Istio's ".+" to so the common "any value" rule needs no regex.
const (
	Exact Kind = iota
	Prefix
	Suffix
	Contains
	Regex
	NonEmpty
)

// Matcher is a compiled string matcher. The zero value is an exact match
// of the empty string.
type Matcher struct {
	kind  Kind
	value string // ASCII lower-cased when fold
	fold  bool
	re    *regexp.Regexp
}

// Compile compiles s. A regex is used as s.Regex holds it: callers that
// need it anchored to the whole value anchor it first. ignore_case does
// not apply to a regex, as in Envoy.
func Compile(s xdsresource.StringMatcher) (Matcher, error) {
	m := Matcher{value: s.Value, fold: s.IgnoreCase}
	switch s.Kind {
	case xdsresource.StringExact:
		m.kind = Exact
	case xdsresource.StringPrefix:
		m.kind = Prefix
	case xdsresource.StringSuffix:
		m.kind = Suffix
	case xdsresource.StringContains:
		m.kind = Contains
	case xdsresource.StringRegex:
		if s.Regex == nil {
			return Matcher{}, errors.New("safe_regex without a compiled regex")
		}
		return Matcher{kind: Regex, value: s.Value, re: s.Regex}, nil
	default:
		return Matcher{}, fmt.Errorf("unknown string match kind %d", s.Kind)
	}
	if m.fold {
		m.value = ASCIILower(m.value)
	}
	return m, nil
}

// MatchRegex matches values against re as given (for matchers that are
// not StringMatchers, such as a URI template).
func MatchRegex(re *regexp.Regexp) Matcher { return Matcher{kind: Regex, re: re} }

// MatchNonEmpty matches any value but the empty one.
func MatchNonEmpty() Matcher { return Matcher{kind: NonEmpty} }

// MatchContains matches values containing sub, case-sensitively.
func MatchContains(sub string) Matcher { return Matcher{kind: Contains, value: sub} }

// Kind is the matcher's kind.
func (m *Matcher) Kind() Kind { return m.kind }

// Value is the string compared with, ASCII lower-cased when IgnoreCase.
func (m *Matcher) Value() string { return m.value }

// IgnoreCase reports whether ASCII letters are folded.
func (m *Matcher) IgnoreCase() bool { return m.fold }

// Match reports whether v matches. It never allocates.
func (m *Matcher) Match(v string) bool {
	switch m.kind {
	case Exact:
		return len(v) == len(m.value) && HasPrefix(v, m.value, m.fold)
	case Prefix:
		return HasPrefix(v, m.value, m.fold)
	case Suffix:
		return len(v) >= len(m.value) && HasPrefix(v[len(v)-len(m.value):], m.value, m.fold)
	case Contains:
		if !m.fold {
			return strings.Contains(v, m.value)
		}
		for i := 0; i+len(m.value) <= len(v); i++ {
			if HasPrefix(v[i:], m.value, true) {
				return true
			}
		}
		return false
	case NonEmpty:
		return v != ""
	case Regex:
		return m.re.MatchString(v)
	}
	return false
}

// HasPrefix reports whether s starts with prefix; with fold, prefix must
// already be ASCII lower case and the ASCII letters of s are folded
// (Envoy folds ASCII only, unlike strings.EqualFold, which would let the
// Kelvin sign match "k").
func HasPrefix(s, prefix string, fold bool) bool {
	if len(s) < len(prefix) {
		return false
	}
	if !fold {
		return s[:len(prefix)] == prefix
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// ASCIILower lower-cases the ASCII letters of s and leaves every other
// byte alone, allocating only when s has an upper-case letter.
func ASCIILower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// AppendLower appends s to dst with its ASCII letters lower-cased. Given
// a stack buffer, m[string(AppendLower(buf[:0], v))] looks a folded key
// up without allocating; only a value longer than the buffer allocates.
func AppendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
