package identity

import (
	"strings"
	"testing"
)

func TestIDStringParse(t *testing.T) {
	id := ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "checkout"}
	if got, want := id.String(), "spiffe://cluster.local/ns/shop/sa/checkout"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if got := id.URL().String(); got != id.String() {
		t.Fatalf("URL() = %q, want %q", got, id.String())
	}
	back, err := Parse(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if back != id {
		t.Fatalf("Parse(String()) = %+v, want %+v", back, id)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://cluster.local/ns/a/sa/b", "scheme: must be spiffe"},
		{"spiffe://cluster.local/ns/a", "path: must be /ns/<namespace>/sa/<service account>"},
		{"spiffe://cluster.local/ns/a/sa/b/extra", "path: must be"},
		{"spiffe://cluster.local/sa/a/ns/b", "path: must be"},
		{"spiffe://cluster.local/ns//sa/b", "namespace: must not be empty"},
		{"spiffe:///ns/a/sa/b", "trustDomain: must not be empty"},
		{"spiffe://Cluster.Local/ns/a/sa/b", "trustDomain: \"Cluster.Local\" must be lower case"},
		{"spiffe://cluster.local:8080/ns/a/sa/b", "trustDomain: only a name"},
		{"spiffe://cluster.local/ns/a/sa/b?x=1", "no query"},
		{"spiffe://cluster.local/ns/a%2Fb/sa/c", "escaped"},
		{"spiffe://cluster.local/ns/a/sa/b c", "serviceAccount: \"b c\" has ' '"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}
