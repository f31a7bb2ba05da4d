package router

import (
	"math/bits"
	"net/http"
	"net/netip"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/proxy/xxhash"
)

func hashTable(t testing.TB, hps ...xdsresource.HashPolicy) (*Table, *xdsresource.RouteAction) {
	t.Helper()
	tb := mustCompile(t, &xdsresource.RouteConfig{VirtualHosts: []xdsresource.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []xdsresource.Route{{
		Name: "r", Action: &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: "c", Weight: 1}}, HashPolicies: hps},
	}}}}})
	_, r := tb.Match(&Request{Path: "/"})
	return tb, r.Action
}

func TestHash(t *testing.T) {
	rotl := func(h uint64) uint64 { return bits.RotateLeft64(h, 1) }
	src := netip.MustParseAddr("10.1.2.3")
	for _, tc := range []struct {
		name   string
		hps    []xdsresource.HashPolicy
		req    *Request
		want   uint64
		wantOK bool
	}{
		{"header", []xdsresource.HashPolicy{{Kind: xdsresource.HashHeader, Name: "x-user"}},
			&Request{Path: "/", Header: http.Header{"X-User": {"alice"}}}, xxhash.Sum64("alice", 0), true},
		{"header values sorted, seeds chained", []xdsresource.HashPolicy{{Kind: xdsresource.HashHeader, Name: "x-user"}},
			&Request{Path: "/", Header: http.Header{"X-User": {"b", "a"}}}, xxhash.Sum64("b", xxhash.Sum64("a", 0)), true},
		{"pseudo-header", []xdsresource.HashPolicy{{Kind: xdsresource.HashHeader, Name: ":authority"}},
			&Request{Authority: "reviews", Path: "/"}, xxhash.Sum64("reviews", 0), true},
		{"missing header", []xdsresource.HashPolicy{{Kind: xdsresource.HashHeader, Name: "x-user"}},
			&Request{Path: "/"}, 0, false},
		{"cookie, quoted", []xdsresource.HashPolicy{{Kind: xdsresource.HashCookie, Name: "session"}},
			&Request{Path: "/", Header: http.Header{"Cookie": {"a=1;  session=\"s1\"; b"}}}, xxhash.Sum64("s1", 0), true},
		{"cookie in a later header", []xdsresource.HashPolicy{{Kind: xdsresource.HashCookie, Name: "session"}},
			&Request{Path: "/", Header: http.Header{"Cookie": {"a=1", "session=s2"}}}, xxhash.Sum64("s2", 0), true},
		{"empty cookie", []xdsresource.HashPolicy{{Kind: xdsresource.HashCookie, Name: "session"}},
			&Request{Path: "/", Header: http.Header{"Cookie": {"session="}}}, 0, false},
		{"source ip", []xdsresource.HashPolicy{{Kind: xdsresource.HashSourceIP}},
			&Request{Path: "/", SourceIP: src}, xxhash.Sum64("10.1.2.3", 0), true},
		{"source ip, v4-mapped", []xdsresource.HashPolicy{{Kind: xdsresource.HashSourceIP}},
			&Request{Path: "/", SourceIP: netip.AddrFrom16(src.As16())}, xxhash.Sum64("10.1.2.3", 0), true},
		{"no source ip", []xdsresource.HashPolicy{{Kind: xdsresource.HashSourceIP}}, &Request{Path: "/"}, 0, false},
		{"query parameter, raw first value", []xdsresource.HashPolicy{{Kind: xdsresource.HashQueryParam, Name: "u"}},
			&Request{Path: "/x?u=a%20b&u=c"}, xxhash.Sum64("a%20b", 0), true},
		{"combined", []xdsresource.HashPolicy{{Kind: xdsresource.HashHeader, Name: "x-user"}, {Kind: xdsresource.HashHeader, Name: "x-missing"}, {Kind: xdsresource.HashSourceIP}},
			&Request{Path: "/", Header: http.Header{"X-User": {"alice"}}, SourceIP: src}, rotl(xxhash.Sum64("alice", 0)) ^ xxhash.Sum64("10.1.2.3", 0), true},
	} {
		tb, a := hashTable(t, tc.hps...)
		got, ok := tb.Hash(a, tc.req)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: got (%#x, %v), want (%#x, %v)", tc.name, got, ok, tc.want, tc.wantOK)
		}
		// An action the table did not compile hashes the same.
		copied := *a
		if got2, ok2 := tb.Hash(&copied, tc.req); got2 != got || ok2 != ok {
			t.Errorf("%s: foreign action hashed differently", tc.name)
		}
	}
	tb, _ := hashTable(t)
	if _, ok := tb.Hash(&xdsresource.RouteAction{}, &Request{}); ok {
		t.Error("no policies gave a hash")
	}
}
