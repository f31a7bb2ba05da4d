package strmatch

import (
	"regexp"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

func TestMatch(t *testing.T) {
	exact, prefix, suffix, contains := xdsresource.StringExact, xdsresource.StringPrefix, xdsresource.StringSuffix, xdsresource.StringContains
	tests := []struct {
		name  string
		kind  xdsresource.StringKind
		value string
		fold  bool
		in    string
		want  bool
	}{
		{"exact", exact, "Bar", false, "Bar", true},
		{"exact other case", exact, "Bar", false, "bar", false},
		{"exact longer", exact, "Bar", false, "Barx", false},
		{"exact empty", exact, "", false, "", true},
		{"exact fold", exact, "Bar", true, "bAR", true},
		{"exact fold longer", exact, "Bar", true, "bARx", false},
		{"exact fold other", exact, "Bar", true, "baz", false},

		{"prefix", prefix, "/API", false, "/API/v1", true},
		{"prefix other case", prefix, "/API", false, "/api/v1", false},
		{"prefix shorter", prefix, "/API", false, "/AP", false},
		{"prefix fold", prefix, "/API", true, "/aPi/v1", true},
		{"prefix fold other", prefix, "/API", true, "/apx/v1", false},

		{"suffix", suffix, ".Com", false, "a.Com", true},
		{"suffix other case", suffix, ".Com", false, "a.com", false},
		{"suffix shorter", suffix, ".Com", false, "Com", false},
		{"suffix fold", suffix, ".Com", true, "A.cOM", true},
		{"suffix fold other", suffix, ".Com", true, "a.co", false},

		{"contains", contains, "Ns", false, "/Ns/x", true},
		{"contains other case", contains, "Ns", false, "/ns/x", false},
		{"contains fold", contains, "Ns", true, "/nS/x", true},
		{"contains fold at end", contains, "Ns", true, "xxNS", true},
		{"contains fold absent", contains, "Ns", true, "/n/s", false},
		{"contains fold longer than value", contains, "Ns", true, "n", false},

		// Envoy folds ASCII only: non-ASCII letters compare as bytes.
		{"fold keeps non-ASCII", exact, "É", true, "É", true},
		{"fold does not lower non-ASCII", exact, "É", true, "é", false},
		{"fold Kelvin sign is not k", exact, "\u212a", true, "k", false},
		{"fold k is not Kelvin sign", exact, "k", true, "\u212a", false},
		{"fold ASCII around non-ASCII", prefix, "ÀB", true, "Àbc", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(xdsresource.StringMatcher{Kind: tt.kind, Value: tt.value, IgnoreCase: tt.fold})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Match(tt.in); got != tt.want {
				t.Errorf("%v %q ignore_case=%v on %q = %v, want %v", tt.kind, tt.value, tt.fold, tt.in, got, tt.want)
			}
		})
	}
}

func TestRegex(t *testing.T) {
	re := regexp.MustCompile(`^(?:[a-z]+/v\d)$`)
	for _, fold := range []bool{false, true} {
		m, err := Compile(xdsresource.StringMatcher{Kind: xdsresource.StringRegex, Value: re.String(), Regex: re, IgnoreCase: fold})
		if err != nil {
			t.Fatal(err)
		}
		// ignore_case does not apply to a regex, as in Envoy.
		for in, want := range map[string]bool{"api/v1": true, "API/v1": false, "api/v1x": false, "": false} {
			if got := m.Match(in); got != want {
				t.Errorf("ignore_case=%v: regex on %q = %v, want %v", fold, in, got, want)
			}
		}
		if m.IgnoreCase() {
			t.Errorf("ignore_case=%v: a regex matcher reports IgnoreCase", fold)
		}
	}
	// The regex is used as given; anchoring is the caller's.
	m := MatchRegex(regexp.MustCompile(`v\d`))
	if !m.Match("/api/v1/x") {
		t.Error("unanchored regex did not match inside the value")
	}
}

func TestConstructors(t *testing.T) {
	ne := MatchNonEmpty()
	if ne.Match("") || !ne.Match("x") || ne.Kind() != NonEmpty {
		t.Errorf("MatchNonEmpty: empty %v, x %v, kind %d", ne.Match(""), ne.Match("x"), ne.Kind())
	}
	c := MatchContains("/ns/foo/")
	if !c.Match("spiffe://cluster.local/ns/foo/sa/a") || c.Match("spiffe://cluster.local/ns/FOO/sa/a") || c.Kind() != Contains || c.Value() != "/ns/foo/" {
		t.Errorf("MatchContains: %+v", c)
	}
	var zero Matcher
	if !zero.Match("") || zero.Match("a") {
		t.Error("the zero Matcher is not an exact match of the empty string")
	}
}

func TestCompileValueFolded(t *testing.T) {
	m, err := Compile(xdsresource.StringMatcher{Kind: xdsresource.StringExact, Value: "GET", IgnoreCase: true})
	if err != nil {
		t.Fatal(err)
	}
	// Authorization builds set lookups from Value, folding the request's
	// value the same way.
	if m.Kind() != Exact || m.Value() != "get" || !m.IgnoreCase() {
		t.Errorf("got kind %d value %q ignore_case %v, want exact \"get\" true", m.Kind(), m.Value(), m.IgnoreCase())
	}
}

func TestCompileErrors(t *testing.T) {
	for _, s := range []xdsresource.StringMatcher{
		{Kind: xdsresource.StringRegex, Value: "a.*"},
		{Kind: xdsresource.StringKind(99), Value: "a"},
	} {
		if _, err := Compile(s); err == nil {
			t.Errorf("Compile(%+v) succeeded, want an error", s)
		}
	}
}

func TestASCIILower(t *testing.T) {
	for in, want := range map[string]string{"": "", "abc": "abc", "AbC-Ä": "abc-Ä", "\u212a": "\u212a"} {
		if got := ASCIILower(in); got != want {
			t.Errorf("ASCIILower(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchAllocatesNothing(t *testing.T) {
	var ms []Matcher
	for _, k := range []xdsresource.StringKind{xdsresource.StringExact, xdsresource.StringPrefix, xdsresource.StringSuffix, xdsresource.StringContains} {
		for _, fold := range []bool{false, true} {
			m, err := Compile(xdsresource.StringMatcher{Kind: k, Value: "Needle", IgnoreCase: fold})
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, m)
		}
	}
	ms = append(ms, MatchNonEmpty(), MatchRegex(regexp.MustCompile(`^(?:.*needle.*)$`)))
	v := strings.Repeat("hay", 20) + "NEEDLE" + strings.Repeat("hay", 20)
	if n := testing.AllocsPerRun(1000, func() {
		for i := range ms {
			ms[i].Match(v)
		}
	}); n != 0 {
		t.Errorf("Match allocated %v times per run, want 0", n)
	}
}

func BenchmarkMatch(b *testing.B) {
	m, _ := Compile(xdsresource.StringMatcher{Kind: xdsresource.StringContains, Value: "/ns/default/", IgnoreCase: true})
	v := "spiffe://cluster.local/ns/default/sa/productpage"
	for b.Loop() {
		m.Match(v)
	}
}

func TestAppendLower(t *testing.T) {
	var buf [8]byte
	if got := string(AppendLower(buf[:0], "AbC-Ä")); got != "abc-Ä" {
		t.Errorf("AppendLower = %q, want %q", got, "abc-Ä")
	}
	set := map[string]bool{"host.example": true}
	var big [64]byte
	if n := testing.AllocsPerRun(100, func() {
		if !set[string(AppendLower(big[:0], "Host.EXAMPLE"))] {
			t.Fatal("folded key not found")
		}
	}); n != 0 {
		t.Errorf("a lookup through a stack buffer allocated %v times, want 0", n)
	}
	if got := string(AppendLower(buf[:0], "LONGER-THAN-EIGHT")); got != "longer-than-eight" {
		t.Errorf("past the buffer: %q", got)
	}
}
