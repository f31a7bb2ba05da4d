package meshdns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/trellismesh/trellis/internal/testing/dnstest"
)

var ip = netip.MustParseAddr

// shop is the services most tests serve.
var shop = []Service{
	{Namespace: "shop", Name: "reviews", VIPs: []netip.Addr{ip("10.96.0.10")}},
	{Namespace: "shop", Name: "ratings", VIPs: []netip.Addr{ip("10.96.0.11"), ip("fd00:96::11")}},
	{Namespace: "shop", Name: "db", Headless: true, PodIPs: []netip.Addr{ip("10.244.0.5"), ip("10.244.0.6")},
		VIPs: []netip.Addr{ip("10.96.0.99")}}, // ignored: headless
	{Namespace: "shop", Name: "empty", Headless: true},
	{Namespace: "other", Name: "reviews", VIPs: []netip.Addr{ip("10.96.1.10")}},
}

// testServer is a Server serving on 127.0.0.1 over UDP and TCP.
type testServer struct {
	*Server
	dnstest.Addrs
}

// start serves svcs until the test ends and checks that Serve then returns
// nil and leaves no goroutine behind.
func start(t *testing.T, svcs []Service) *testServer {
	t.Helper()
	s := New("cluster.local", nil)
	s.SetServices(svcs)
	return &testServer{Server: s, Addrs: dnstest.Serve(t, s.Serve)}
}

func TestResolver(t *testing.T) {
	ts := start(t, shop)
	for _, transport := range []string{"udp", "tcp"} {
		r := ts.Resolver(transport == "tcp")
		for _, tc := range []struct {
			name, network string
			want          []netip.Addr // nil: not found
		}{
			{"reviews.shop.svc.cluster.local.", "ip4", []netip.Addr{ip("10.96.0.10")}},
			{"REVIEWS.Shop.SVC.Cluster.Local.", "ip4", []netip.Addr{ip("10.96.0.10")}},
			{"reviews.other.svc.cluster.local.", "ip4", []netip.Addr{ip("10.96.1.10")}},
			{"ratings.shop.svc.cluster.local.", "ip", []netip.Addr{ip("10.96.0.11"), ip("fd00:96::11")}},
			{"ratings.shop.svc.cluster.local.", "ip6", []netip.Addr{ip("fd00:96::11")}},
			{"db.shop.svc.cluster.local.", "ip4", []netip.Addr{ip("10.244.0.5"), ip("10.244.0.6")}},
			{"nope.shop.svc.cluster.local.", "ip", nil},
			{"reviews.shop.svc.cluster.local.", "ip6", nil}, // exists, no AAAA
		} {
			t.Run(transport+"/"+tc.name+"/"+tc.network, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				got, err := r.LookupNetIP(ctx, tc.network, tc.name)
				if tc.want == nil {
					var de *net.DNSError
					if !errors.As(err, &de) || !de.IsNotFound {
						t.Fatalf("LookupNetIP = %v, %v; want a not-found DNSError", got, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				slices.SortFunc(got, netip.Addr.Compare)
				if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
					t.Errorf("LookupNetIP(%q) (-want +got):\n%s", tc.name, diff)
				}
			})
		}
	}
}

// TestResolverOutsideDomain: names the mesh does not serve fail, and not as
// a temporary error (REFUSED, not SERVFAIL) that callers would retry.
func TestResolverOutsideDomain(t *testing.T) {
	ts := start(t, shop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := ts.Resolver(false).LookupNetIP(ctx, "ip4", "example.com.")
	var de *net.DNSError
	if !errors.As(err, &de) || de.IsTemporary {
		t.Fatalf("LookupNetIP(example.com.) = %v; want a permanent DNSError", err)
	}
}

// TestResolverTruncation: a headless Service with more pods than fit in 512
// bytes comes back truncated over UDP, and Go's resolver gets it all by
// retrying over TCP.
func TestResolverTruncation(t *testing.T) {
	ts := start(t, []Service{bigHeadless(100)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := ts.Resolver(false).LookupNetIP(ctx, "ip4", "big.shop.svc.cluster.local.")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Errorf("got %d addresses, want 100", len(got))
	}
}

func bigHeadless(n int) Service {
	svc := Service{Namespace: "shop", Name: "big", Headless: true}
	for i := range n {
		svc.PodIPs = append(svc.PodIPs, netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(1 + i%250)}))
	}
	return svc
}

// summary is what the tests compare of an answer.
type summary struct {
	RCode         dnsmessage.RCode
	Authoritative bool
	Truncated     bool
	Question      string
	Answers       []string
	Authorities   []string
	OPT           string // "" when the answer has no OPT record
}

func summarize(t testing.TB, msg []byte) summary {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(msg); err != nil {
		t.Fatalf("unpacking the answer: %v", err)
	}
	s := summary{RCode: m.RCode, Authoritative: m.Authoritative, Truncated: m.Truncated}
	for _, q := range m.Questions {
		s.Question = q.Name.String() + " " + q.Type.String()
	}
	rr := func(r dnsmessage.Resource) string {
		h := fmt.Sprintf("%s %d ", r.Header.Name, r.Header.TTL)
		switch b := r.Body.(type) {
		case *dnsmessage.AResource:
			return h + "A " + netip.AddrFrom4(b.A).String()
		case *dnsmessage.AAAAResource:
			return h + "AAAA " + netip.AddrFrom16(b.AAAA).String()
		case *dnsmessage.SOAResource:
			return h + fmt.Sprintf("SOA %s %s min=%d", b.NS, b.MBox, b.MinTTL)
		}
		return h + r.Header.Type.String()
	}
	for _, r := range m.Answers {
		s.Answers = append(s.Answers, rr(r))
	}
	for _, r := range m.Authorities {
		s.Authorities = append(s.Authorities, rr(r))
	}
	for _, r := range m.Additionals {
		if r.Header.Type == dnsmessage.TypeOPT {
			s.OPT = fmt.Sprintf("size=%d rcode=%v", r.Header.Class, r.Header.ExtendedRCode(m.RCode))
		}
	}
	return s
}

// query builds a query for name and type; edns > 0 adds an OPT record
// advertising that UDP size.
func query(t testing.TB, id uint16, name string, typ dnsmessage.Type, edns int) []byte {
	t.Helper()
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
	}
	if edns > 0 {
		var h dnsmessage.ResourceHeader
		if err := h.SetEDNS0(edns, dnsmessage.RCodeSuccess, false); err != nil {
			t.Fatal(err)
		}
		m.Additionals = append(m.Additionals, dnsmessage.Resource{Header: h, Body: &dnsmessage.OPTResource{}})
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const soa = "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. min=5"

func TestAnswers(t *testing.T) {
	ts := start(t, shop)
	A, AAAA := dnsmessage.TypeA, dnsmessage.TypeAAAA
	for _, tc := range []struct {
		desc string
		name string
		typ  dnsmessage.Type
		edns int
		want summary
	}{
		{"A", "reviews.shop.svc.cluster.local.", A, 0, summary{
			Authoritative: true, Question: "reviews.shop.svc.cluster.local. TypeA",
			Answers: []string{"reviews.shop.svc.cluster.local. 5 A 10.96.0.10"}}},
		{"case is kept in the answer, ignored in the lookup", "Reviews.SHOP.svc.cluster.local.", A, 0, summary{
			Authoritative: true, Question: "Reviews.SHOP.svc.cluster.local. TypeA",
			Answers: []string{"Reviews.SHOP.svc.cluster.local. 5 A 10.96.0.10"}}},
		{"AAAA", "ratings.shop.svc.cluster.local.", AAAA, 0, summary{
			Authoritative: true, Question: "ratings.shop.svc.cluster.local. TypeAAAA",
			Answers: []string{"ratings.shop.svc.cluster.local. 5 AAAA fd00:96::11"}}},
		{"ANY gives both families", "ratings.shop.svc.cluster.local.", dnsmessage.TypeALL, 0, summary{
			Authoritative: true, Question: "ratings.shop.svc.cluster.local. TypeALL",
			Answers: []string{
				"ratings.shop.svc.cluster.local. 5 A 10.96.0.11",
				"ratings.shop.svc.cluster.local. 5 AAAA fd00:96::11",
			}}},
		{"AAAA of an IPv4-only service: no data", "reviews.shop.svc.cluster.local.", AAAA, 0, summary{
			Authoritative: true, Question: "reviews.shop.svc.cluster.local. TypeAAAA",
			Authorities: []string{soa}}},
		{"other type: no data", "reviews.shop.svc.cluster.local.", dnsmessage.TypeTXT, 0, summary{
			Authoritative: true, Question: "reviews.shop.svc.cluster.local. TypeTXT",
			Authorities: []string{soa}}},
		{"headless: pod IPs, not the VIP", "db.shop.svc.cluster.local.", A, 0, summary{
			Authoritative: true, Question: "db.shop.svc.cluster.local. TypeA",
			Answers: []string{
				"db.shop.svc.cluster.local. 5 A 10.244.0.5",
				"db.shop.svc.cluster.local. 5 A 10.244.0.6",
			}}},
		{"headless with no ready pods: no data", "empty.shop.svc.cluster.local.", A, 0, summary{
			Authoritative: true, Question: "empty.shop.svc.cluster.local. TypeA",
			Authorities: []string{soa}}},
		{"namespace: empty non-terminal", "shop.svc.cluster.local.", A, 0, summary{
			Authoritative: true, Question: "shop.svc.cluster.local. TypeA",
			Authorities: []string{soa}}},
		{"svc: empty non-terminal", "svc.cluster.local.", A, 0, summary{
			Authoritative: true, Question: "svc.cluster.local. TypeA",
			Authorities: []string{soa}}},
		{"SOA at the apex", "cluster.local.", dnsmessage.TypeSOA, 0, summary{
			Authoritative: true, Question: "cluster.local. TypeSOA",
			Answers: []string{soa}}},
		{"unknown service: NXDOMAIN", "nope.shop.svc.cluster.local.", A, 0, summary{
			RCode: dnsmessage.RCodeNameError, Authoritative: true, Question: "nope.shop.svc.cluster.local. TypeA",
			Authorities: []string{soa}}},
		{"unknown namespace: NXDOMAIN", "reviews.nope.svc.cluster.local.", A, 0, summary{
			RCode: dnsmessage.RCodeNameError, Authoritative: true, Question: "reviews.nope.svc.cluster.local. TypeA",
			Authorities: []string{soa}}},
		{"below a service: NXDOMAIN", "x.reviews.shop.svc.cluster.local.", A, 0, summary{
			RCode: dnsmessage.RCodeNameError, Authoritative: true, Question: "x.reviews.shop.svc.cluster.local. TypeA",
			Authorities: []string{soa}}},
		{"search-list expansion of a short name: NXDOMAIN", "reviews.shop.svc.cluster.local.shop.svc.cluster.local.", A, 0, summary{
			RCode: dnsmessage.RCodeNameError, Authoritative: true, Question: "reviews.shop.svc.cluster.local.shop.svc.cluster.local. TypeA",
			Authorities: []string{soa}}},
		{"outside the domain: REFUSED", "example.com.", A, 0, summary{
			RCode: dnsmessage.RCodeRefused, Question: "example.com. TypeA"}},
		{"a suffix that is not a parent: REFUSED", "evilcluster.local.", A, 0, summary{
			RCode: dnsmessage.RCodeRefused, Question: "evilcluster.local. TypeA"}},
		{"root: REFUSED", ".", dnsmessage.TypeNS, 0, summary{
			RCode: dnsmessage.RCodeRefused, Question: ". TypeNS"}},
		{"zone transfer: REFUSED", "cluster.local.", dnsmessage.TypeAXFR, 0, summary{
			RCode: dnsmessage.RCodeRefused, Question: "cluster.local. TypeAXFR"}},
		{"EDNS0 is echoed", "reviews.shop.svc.cluster.local.", A, 4096, summary{
			Authoritative: true, Question: "reviews.shop.svc.cluster.local. TypeA",
			Answers: []string{"reviews.shop.svc.cluster.local. 5 A 10.96.0.10"},
			OPT:     "size=1232 rcode=RCodeSuccess"}},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(network+"/"+tc.desc, func(t *testing.T) {
				got := summarize(t, ts.Exchange(t, network, query(t, 42, tc.name, tc.typ, tc.edns)))
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("answer to %s %v (-want +got):\n%s", tc.name, tc.typ, diff)
				}
			})
		}
	}
}

// TestTruncation: UDP answers fit 512 bytes, or the EDNS0 size up to 1232,
// with TC set when records were left out; TCP answers are whole.
func TestTruncation(t *testing.T) {
	ts := start(t, []Service{bigHeadless(100)})
	const name = "big.shop.svc.cluster.local."
	for _, tc := range []struct {
		network        string
		edns           int
		maxLen         int
		wantTruncated  bool
		wantAllAnswers bool
	}{
		{"udp", 0, 512, true, false},
		{"udp", 256, 512, true, false}, // below 512 means 512 (RFC 6891)
		{"udp", 1232, 1232, true, false},
		{"udp", 65000, 1232, true, false}, // we never send more than 1232
		{"tcp", 0, 65535, false, true},
	} {
		t.Run(fmt.Sprintf("%s/edns=%d", tc.network, tc.edns), func(t *testing.T) {
			msg := ts.Exchange(t, tc.network, query(t, 7, name, dnsmessage.TypeA, tc.edns))
			if len(msg) > tc.maxLen {
				t.Errorf("answer is %d bytes, want at most %d", len(msg), tc.maxLen)
			}
			got := summarize(t, msg)
			if got.Truncated != tc.wantTruncated {
				t.Errorf("TC = %v, want %v", got.Truncated, tc.wantTruncated)
			}
			if n := len(got.Answers); (n == 100) != tc.wantAllAnswers || n == 0 {
				t.Errorf("%d answers; want all 100: %v", n, tc.wantAllAnswers)
			}
			if got.RCode != dnsmessage.RCodeSuccess || (tc.edns > 0) != (got.OPT != "") {
				t.Errorf("rcode %v, OPT %q for a query with EDNS0 size %d", got.RCode, got.OPT, tc.edns)
			}
			// A truncated answer still holds as many records as fit.
			if tc.wantTruncated && len(msg)+16 <= tc.maxLen {
				t.Errorf("truncated at %d bytes when another 16-byte record fits in %d", len(msg), tc.maxLen)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	ts := start(t, shop)
	valid := query(t, 0xbeef, "reviews.shop.svc.cluster.local.", dnsmessage.TypeA, 0)
	withHeader := func(qd, an, ns, ar uint16, rest []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, 0xbeef)
		b = binary.BigEndian.AppendUint16(b, 0x0100) // RD
		for _, n := range []uint16{qd, an, ns, ar} {
			b = binary.BigEndian.AppendUint16(b, n)
		}
		return append(b, rest...)
	}
	question := valid[12:]
	opt := []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0} // root, OPT, size 4096, no options
	formerr := summary{RCode: dnsmessage.RCodeFormatError}
	for _, tc := range []struct {
		desc string
		msg  []byte
		want summary
	}{
		{"no question", withHeader(0, 0, 0, 0, nil), formerr},
		{"two questions", withHeader(2, 0, 0, 0, append(slices.Clone(question), question...)), formerr},
		{"question cut short", withHeader(1, 0, 0, 0, question[:5]), formerr},
		{"question count past the end", withHeader(3, 0, 0, 0, question), formerr},
		{"pointer loop", withHeader(1, 0, 0, 0, []byte{0xc0, 12, 0, 1, 0, 1}), formerr},
		{"label with a dot", withHeader(1, 0, 0, 0, []byte{3, 'a', '.', 'b', 0, 0, 1, 0, 1}), formerr},
		{"answer count past the end", withHeader(1, 1, 0, 0, question), formerr},
		{"two OPT records", withHeader(1, 0, 0, 2, append(append(slices.Clone(question), opt...), opt...)), formerr},
		{"OPT not at the root", withHeader(1, 0, 0, 1, append(slices.Clone(question), 1, 'x', 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0)), formerr},
		{"NOTIFY", func() []byte {
			m := slices.Clone(valid)
			m[2] |= 4 << 3
			return m
		}(), summary{RCode: dnsmessage.RCodeNotImplemented}},
		{"EDNS version 1: BADVERS", withHeader(1, 0, 0, 1, append(slices.Clone(question), 0, 0, 41, 0x10, 0, 0, 1, 0, 0, 0, 0)),
			summary{Question: "reviews.shop.svc.cluster.local. TypeA", OPT: "size=1232 rcode=16"}},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(network+"/"+tc.desc, func(t *testing.T) {
				resp := ts.Exchange(t, network, tc.msg)
				if id := binary.BigEndian.Uint16(resp); id != 0xbeef {
					t.Errorf("answer id %#x, want the query's 0xbeef", id)
				}
				if diff := cmp.Diff(tc.want, summarize(t, resp)); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}

	// What has no header, or is itself an answer, gets no answer.
	for _, msg := range [][]byte{nil, {1, 2, 3}, valid[:11], ts.respond(valid, true)} {
		if resp := ts.respond(msg, true); resp != nil {
			t.Errorf("respond(%x) = %x, want no answer", msg, resp)
		}
	}

	// Over TCP garbage ends the connection, and the server keeps serving.
	c, err := net.Dial("tcp", ts.TCP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	summarize(t, dnstest.ExchangeTCP(t, c, valid)) // a connection carries several queries
	summarize(t, dnstest.ExchangeTCP(t, c, valid))
	c.Write([]byte{0, 3, 1, 2, 3})
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes after garbage, want the connection closed", n)
	}
	summarize(t, ts.Exchange(t, "tcp", valid))
}

// TestSetServicesWhileServing swaps between two sets of services under a
// stream of queries: every answer must come from one whole set (run with
// -race to check the swap itself).
func TestSetServicesWhileServing(t *testing.T) {
	ts := start(t, nil)
	setA := []Service{{Namespace: "shop", Name: "reviews", VIPs: []netip.Addr{ip("10.96.0.1")}}}
	setB := []Service{{Namespace: "shop", Name: "reviews", VIPs: []netip.Addr{ip("10.96.0.2"), ip("10.96.0.3")}}}
	ts.SetServices(setA)
	wantA := []string{"reviews.shop.svc.cluster.local. 5 A 10.96.0.1"}
	wantB := []string{"reviews.shop.svc.cluster.local. 5 A 10.96.0.2", "reviews.shop.svc.cluster.local. 5 A 10.96.0.3"}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				ts.SetServices(setB)
			} else {
				ts.SetServices(setA)
			}
		}
	})
	seen := map[string]int{}
	var mu sync.Mutex
	var qg sync.WaitGroup
	for w := range 8 {
		network := []string{"udp", "tcp"}[w%2]
		qg.Go(func() {
			for range 100 {
				got := summarize(t, ts.Exchange(t, network, query(t, 1, "reviews.shop.svc.cluster.local.", dnsmessage.TypeA, 0)))
				which := "A"
				if cmp.Equal(got.Answers, wantB) {
					which = "B"
				} else if !cmp.Equal(got.Answers, wantA) {
					t.Errorf("answer from neither set: %v", got.Answers)
					return
				}
				mu.Lock()
				seen[which]++
				mu.Unlock()
			}
		})
	}
	qg.Wait()
	close(stop)
	wg.Wait()
	if seen["A"] == 0 || seen["B"] == 0 {
		t.Logf("answers seen per set: %v (the swap raced ahead of the queries)", seen)
	}
}

func TestSetServicesSkipsBadNames(t *testing.T) {
	s := New("Cluster.Local.", nil)
	s.SetServices([]Service{
		{Namespace: "shop", Name: "Bad_Name", VIPs: []netip.Addr{ip("10.96.0.1")}},
		{Namespace: "", Name: "x", VIPs: []netip.Addr{ip("10.96.0.2")}},
		{Namespace: "shop", Name: "good", VIPs: []netip.Addr{ip("::ffff:10.96.0.3"), ip("10.96.0.3"), {}}},
	})
	z := s.zone.Load()
	var names []string
	for n := range z.addrs {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"cluster.local.", "good.shop.svc.cluster.local.", "shop.svc.cluster.local.", "svc.cluster.local."}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	// A 4in6 VIP is an IPv4 address; duplicates and invalid addresses drop.
	if got := z.addrs["good.shop.svc.cluster.local."]; len(got) != 1 || got[0] != ip("10.96.0.3") {
		t.Errorf("good's addresses = %v, want [10.96.0.3]", got)
	}
}

func TestResolvConf(t *testing.T) {
	got := ResolvConf("cluster.local", "shop", ip("10.244.0.1"))
	want := "nameserver 10.244.0.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ResolvConf (-want +got):\n%s", diff)
	}
}

func TestServeNeedsASocket(t *testing.T) {
	if err := New("", nil).Serve(context.Background(), nil, nil); err == nil {
		t.Error("Serve(nil, nil) = nil, want an error")
	}
}

// FuzzRespond feeds arbitrary messages to the query path: it must never
// panic, and whatever it answers must be a well-formed response to the
// query's id that fits the transport.
func FuzzRespond(f *testing.F) {
	for _, seed := range [][]byte{
		query(f, 1, "reviews.shop.svc.cluster.local.", dnsmessage.TypeA, 0),
		query(f, 2, "db.shop.svc.cluster.local.", dnsmessage.TypeAAAA, 1232),
		query(f, 3, "nope.cluster.local.", dnsmessage.TypeA, 0),
		query(f, 4, "example.com.", dnsmessage.TypeA, 0),
		query(f, 5, "big.shop.svc.cluster.local.", dnsmessage.TypeALL, 0),
		{0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},
		{},
	} {
		f.Add(seed, true)
	}
	s := New("cluster.local", nil)
	s.SetServices(append(slices.Clone(shop), bigHeadless(100)))
	f.Fuzz(func(t *testing.T, msg []byte, udp bool) {
		resp := s.respond(msg, udp)
		if resp == nil {
			return
		}
		limit := 65535
		if udp {
			limit = udpMaxSize
		}
		if len(resp) > limit {
			t.Fatalf("%d-byte answer over the %d-byte limit", len(resp), limit)
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if !m.Response || m.ID != binary.BigEndian.Uint16(msg) {
			t.Fatalf("answer header %+v does not answer id %#x", m.Header, binary.BigEndian.Uint16(msg))
		}
		if udp && len(resp) > udpMinSize {
			if req, err := parse(msg); err != nil || !req.edns {
				t.Fatalf("%d-byte UDP answer to a query without EDNS0", len(resp))
			}
		}
	})
}
