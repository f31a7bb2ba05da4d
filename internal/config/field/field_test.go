package field

import "testing"

func TestPathString(t *testing.T) {
	p := NewPath("spec").Child("http").Index(1).Child("route").Index(0).Child("weight")
	if got, want := p.String(), "spec.http[1].route[0].weight"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	h := NewPath("spec", "http").Index(0).Child("match").Index(0).Child("headers").Key("user")
	if got, want := h.String(), "spec.http[0].match[0].headers[user]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := Errorf(p, "must be >= %d", 0).Error(); got != "spec.http[1].route[0].weight: must be >= 0" {
		t.Fatalf("got %q", got)
	}
	var nilPath *Path
	if nilPath.String() != "" {
		t.Fatal("nil path must render empty")
	}
}
