package http1

import (
	"net/textproto"
	"testing"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

func TestCanonicalNameMatchesTextproto(t *testing.T) {
	for _, n := range []string{"x-lower", "X-MiXeD-CaSe", "content-length", "a", "x--y", "SOAPAction", "-x"} {
		if got, want := string(canonicalName(nil, []byte(n))), textproto.CanonicalMIMEHeaderKey(n); got != want {
			t.Errorf("canonicalName(%q) = %q, want %q", n, got, want)
		}
	}
}

func TestHasTokenMatchesHttpguts(t *testing.T) {
	for _, v := range []string{"close", "Keep-Alive, Close", " upgrade ,x", "closed", "", ",,", "clo se", "\tCLOSE\t"} {
		for _, tok := range []string{"close", "upgrade", "keep-alive"} {
			if got, want := hasToken(v, tok), httpguts.HeaderValuesContainsToken([]string{v}, tok); got != want {
				t.Errorf("hasToken(%q, %q) = %v, httpguts says %v", v, tok, got, want)
			}
		}
	}
}

func TestTrimOWSAndLineBreaks(t *testing.T) {
	if got := string(trimOWS([]byte(" \t a b \t"))); got != "a b" {
		t.Errorf("trimOWS = %q", got)
	}
	for s, want := range map[string]bool{"ok": false, "a\r\nb": true, "a\nb": true, "a\rb": true, "": false} {
		if HasLineBreak(s) != want {
			t.Errorf("HasLineBreak(%q) = %v", s, !want)
		}
	}
}

func TestIntern(t *testing.T) {
	common := map[string]string{"GET": "GET"}
	var strs map[string]string
	a := internString(&strs, common, []byte("X-Custom"), 2, 16)
	b := internString(&strs, common, []byte("X-Custom"), 2, 16)
	if a != "X-Custom" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Errorf("the same bytes gave two strings")
	}
	if n := testing.AllocsPerRun(100, func() { internString(&strs, common, []byte("X-Custom"), 2, 16) }); n != 0 {
		t.Errorf("interned lookup allocates %v times", n)
	}
	internString(&strs, common, []byte("a-value-longer-than-sixteen"), 2, 16)
	internString(&strs, common, []byte("GET"), 2, 16)
	internString(&strs, common, []byte("Y"), 2, 16)
	internString(&strs, common, []byte("Z"), 2, 16)
	if len(strs) != 2 {
		t.Errorf("table holds %d strings, want its bound 2 (and no long or common ones): %v", len(strs), strs)
	}
}
