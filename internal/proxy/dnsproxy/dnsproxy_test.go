package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/trellismesh/trellis/internal/dnsserver"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/dnstest"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

var ip = netip.MustParseAddr

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// shopRoutes are route configurations as the control plane sends them: one
// virtual host per service port, its names with and without the port, and
// its VIPs.
func shopRoutes() []*xdsresource.RouteConfig {
	vh := func(name string, domains ...string) xdsresource.VirtualHost {
		return xdsresource.VirtualHost{Name: name, Domains: domains}
	}
	return []*xdsresource.RouteConfig{
		{Name: "9080", VirtualHosts: []xdsresource.VirtualHost{
			vh("reviews.default.svc.cluster.local:9080",
				"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080",
				"reviews.default", "reviews.default:9080", "reviews.default.svc", "reviews.default.svc:9080",
				"reviews", "reviews:9080", "10.96.0.16", "10.96.0.16:9080"),
			vh("ratings.default.svc.cluster.local:9080",
				"ratings.default.svc.cluster.local", "ratings.default.svc.cluster.local:9080",
				"10.96.0.17:9080", "[fd00:96::17]:9080", "[fd00:96::17]"),
			vh("allow_any", "*"),
		}},
		{Name: "80", VirtualHosts: []xdsresource.VirtualHost{
			// A second port of reviews: the same VIP, no duplicate.
			vh("reviews.default.svc.cluster.local:80", "reviews.default.svc.cluster.local:80", "10.96.0.16:80"),
			// A ServiceEntry with an address, and one without (resolved
			// upstream, so not in the table).
			vh("api.example.com:80", "api.example.com", "api.example.com:80", "240.240.0.1", "240.240.0.1:80"),
			vh("dns.example.com:80", "dns.example.com", "dns.example.com:80"),
			vh("wild", "*.example.org", "*.example.org:80", "240.240.0.2"),
		}},
	}
}

func shopListeners() []*xdsresource.Listener {
	return []*xdsresource.Listener{
		{Name: "10.96.0.30_5432", Address: "10.96.0.30", Port: 5432, Direction: xdsresource.Outbound,
			Host: "db.default.svc.cluster.local", FilterChains: []xdsresource.FilterChain{{TCP: &xdsresource.TCPProxy{Cluster: "outbound|5432||db.default.svc.cluster.local"}}}},
		// No VIP (headless): nothing to answer with.
		{Name: "0.0.0.0_6379", Address: "0.0.0.0", Port: 6379, Host: "cache.default.svc.cluster.local"},
		{Name: "virtualOutbound", Address: "0.0.0.0", Port: 15001},
	}
}

func TestNewTable(t *testing.T) {
	tb := NewTable(shopListeners(), shopRoutes())
	got := map[string][]netip.Addr{}
	for name, addrs := range tb.hosts {
		got[name] = addrs
	}
	reviews := []netip.Addr{ip("10.96.0.16")}
	ratings := []netip.Addr{ip("10.96.0.17"), ip("fd00:96::17")}
	want := map[string][]netip.Addr{
		"reviews.default.svc.cluster.local.": reviews,
		"reviews.default.":                   reviews,
		"reviews.default.svc.":               reviews,
		"reviews.":                           reviews,
		"ratings.default.svc.cluster.local.": ratings,
		"api.example.com.":                   {ip("240.240.0.1")},
		"db.default.svc.cluster.local.":      {ip("10.96.0.30")},
	}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	for _, name := range []string{"Reviews.Default.SVC.cluster.local", "reviews.default.svc.cluster.local."} {
		if a, ok := tb.Lookup(name); !ok || !slices.Equal(a, reviews) {
			t.Errorf("Lookup(%q) = %v, %v", name, a, ok)
		}
	}
	if _, ok := (*Table)(nil).Lookup("reviews."); ok {
		t.Error("a nil table knows a name")
	}
}

func TestNameserver(t *testing.T) {
	for _, tc := range []struct {
		conf string
		want string
	}{
		{"nameserver 10.244.0.1\nsearch default.svc.cluster.local\noptions ndots:5\n", "10.244.0.1:53"},
		{"# comment\nsearch a\nnameserver   fd00::53 # trailing\nnameserver 1.1.1.1\n", "[fd00::53]:53"},
		{"nameserver bogus\nnameserver 10.0.0.2\n", "10.0.0.2:53"},
		{"search a\n", ""},
	} {
		got, err := parseNameserver(strings.NewReader(tc.conf))
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseNameserver(%q) = %v, want an error", tc.conf, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("parseNameserver(%q) = %v, %v; want %s", tc.conf, got, err, tc.want)
		}
	}
	if _, err := Nameserver("/nonexistent/resolv.conf"); err == nil {
		t.Error("Nameserver of a missing file succeeded")
	}
}

// upstream is a fake nameserver on 127.0.0.1 (UDP and TCP, same port).
type upstream struct {
	addr          netip.AddrPort
	udpQ, tcpQ    atomic.Int64
	answer        func(q dnsmessage.Message, udp bool) *dnsmessage.Message // nil: no answer
	lastQuestions chan string
}

// startUpstream serves answer until the test ends.
func startUpstream(t *testing.T, answer func(q dnsmessage.Message, udp bool) *dnsmessage.Message) *upstream {
	t.Helper()
	u := &upstream{answer: answer, lastQuestions: make(chan string, 100)}
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	// Find a port free for both transports.
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	handle := func(msg []byte, udp bool) []byte {
		var q dnsmessage.Message
		if err := q.Unpack(msg); err != nil || len(q.Questions) != 1 {
			return nil
		}
		select {
		case u.lastQuestions <- q.Questions[0].Name.String():
		default:
		}
		a := u.answer(q, udp)
		if a == nil {
			return nil
		}
		out, err := a.Pack()
		if err != nil {
			t.Errorf("upstream: packing its answer: %v", err)
			return nil
		}
		return out
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.udpQ.Add(1)
			if out := handle(buf[:n], true); out != nil {
				pc.WriteTo(out, from)
			}
		}
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				for {
					msg, err := dnsserver.ReadFramed(c)
					if err != nil {
						return
					}
					u.tcpQ.Add(1)
					out := handle(msg, false)
					if out == nil {
						return
					}
					if err := dnsserver.WriteFramed(c, out); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { pc.Close(); l.Close(); wg.Wait() })
	return u
}

// answerA answers every A query with addr, and anything else with NXDOMAIN.
func answerA(addr netip.Addr) func(dnsmessage.Message, bool) *dnsmessage.Message {
	return func(q dnsmessage.Message, _ bool) *dnsmessage.Message {
		r := &dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true, RecursionAvailable: true}, Questions: q.Questions}
		if q.Questions[0].Type != dnsmessage.TypeA {
			r.RCode = dnsmessage.RCodeNameError
			return r
		}
		r.Answers = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
			Body:   &dnsmessage.AResource{A: addr.As4()},
		}}
		return r
	}
}

// proxy is a Server serving on 127.0.0.1 over UDP and TCP.
type proxy struct {
	*Server
	dnstest.Addrs
}

// startProxy serves cfg with the shop table until the test ends and checks
// that Serve then returns nil and leaves no goroutine behind.
func startProxy(t *testing.T, cfg Config) *proxy {
	t.Helper()
	s := New(cfg)
	s.SetTable(NewTable(shopListeners(), shopRoutes()))
	addrs := dnstest.Serve(t, func(ctx context.Context, pc net.PacketConn, l net.Listener) error {
		return s.Serve(ctx, []net.PacketConn{pc}, []net.Listener{l})
	})
	return &proxy{Server: s, Addrs: addrs}
}

// exchange sends one query and returns the parsed answer.
func (p *proxy) exchange(t *testing.T, tcp bool, name string, typ dnsmessage.Type, edns bool) dnsmessage.Message {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	if edns {
		b.StartAdditionals()
		var oh dnsmessage.ResourceHeader
		oh.SetEDNS0(4096, dnsmessage.RCodeSuccess, false)
		b.OPTResource(oh, dnsmessage.OPTResource{})
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	resp := p.Exchange(t, network, msg)
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	if m.ID != 0x1234 || !m.Response {
		t.Fatalf("answer header %+v: want id 0x1234 and QR", m.Header)
	}
	return m
}

func addrsOf(m dnsmessage.Message) []netip.Addr {
	var out []netip.Addr
	for _, r := range m.Answers {
		switch b := r.Body.(type) {
		case *dnsmessage.AResource:
			out = append(out, netip.AddrFrom4(b.A))
		case *dnsmessage.AAAAResource:
			out = append(out, netip.AddrFrom16(b.AAAA))
		}
	}
	return out
}

func TestKnownNamesFromTheTable(t *testing.T) {
	up := startUpstream(t, answerA(ip("192.0.2.1")))
	p := startProxy(t, Config{Upstream: up.addr})
	for _, tcp := range []bool{false, true} {
		r := p.Resolver(tcp)
		for _, tc := range []struct {
			name, network string
			want          []netip.Addr // nil: found, no addresses
		}{
			{"reviews.default.svc.cluster.local.", "ip4", []netip.Addr{ip("10.96.0.16")}},
			{"REVIEWS.default.svc.Cluster.Local.", "ip4", []netip.Addr{ip("10.96.0.16")}},
			{"ratings.default.svc.cluster.local.", "ip", []netip.Addr{ip("10.96.0.17"), ip("fd00:96::17")}},
			{"ratings.default.svc.cluster.local.", "ip6", []netip.Addr{ip("fd00:96::17")}},
			{"db.default.svc.cluster.local.", "ip4", []netip.Addr{ip("10.96.0.30")}},
			{"api.example.com.", "ip4", []netip.Addr{ip("240.240.0.1")}},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			got, err := r.LookupNetIP(ctx, tc.network, tc.name)
			cancel()
			if err != nil {
				t.Errorf("tcp=%v LookupNetIP(%s, %s): %v", tcp, tc.network, tc.name, err)
				continue
			}
			slices.SortFunc(got, netip.Addr.Compare)
			if diff := cmp.Diff(tc.want, got, addrCmp); diff != "" {
				t.Errorf("tcp=%v LookupNetIP(%s, %s) (-want +got):\n%s", tcp, tc.network, tc.name, diff)
			}
		}
	}
	if n := up.udpQ.Load() + up.tcpQ.Load(); n != 0 {
		t.Errorf("the upstream got %d queries for names the table knows", n)
	}

	// The answer itself: authoritative, TTL 30, the question echoed as sent,
	// EDNS answered with EDNS.
	m := p.exchange(t, false, "Reviews.default.svc.cluster.local.", dnsmessage.TypeA, true)
	if !m.Authoritative || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
		t.Fatalf("answer %+v", m)
	}
	if h := m.Answers[0].Header; h.TTL != TTL || h.Name.String() != "Reviews.default.svc.cluster.local." {
		t.Errorf("answer record header %+v: want TTL %d and the question's name", h, TTL)
	}
	if len(m.Additionals) != 1 || m.Additionals[0].Header.Type != dnsmessage.TypeOPT {
		t.Errorf("an EDNS query's answer has additionals %v, want one OPT", m.Additionals)
	}
	// A known name without an address of the family: NOERROR, no data.
	m = p.exchange(t, true, "reviews.default.svc.cluster.local.", dnsmessage.TypeAAAA, false)
	if m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 || !m.Authoritative {
		t.Errorf("AAAA of an IPv4-only name: %+v, want NOERROR and no answers", m)
	}
	st := p.Stats()
	if st.Requests == 0 || st.Answered != st.Requests || st.Upstream != 0 {
		t.Errorf("stats %+v: want every request answered from the table", st)
	}
}

func TestUnknownNamesForwarded(t *testing.T) {
	up := startUpstream(t, answerA(ip("192.0.2.7")))
	p := startProxy(t, Config{Upstream: up.addr})
	for _, tcp := range []bool{false, true} {
		m := p.exchange(t, tcp, "example.com.", dnsmessage.TypeA, false)
		if got := addrsOf(m); !slices.Equal(got, []netip.Addr{ip("192.0.2.7")}) || m.Authoritative {
			t.Errorf("tcp=%v: forwarded answer %+v, want the upstream's 192.0.2.7", tcp, m)
		}
		// Types the table does not answer go upstream even for known names.
		m = p.exchange(t, tcp, "reviews.default.svc.cluster.local.", dnsmessage.TypeTXT, false)
		if m.RCode != dnsmessage.RCodeNameError {
			t.Errorf("tcp=%v: TXT of a known name: %+v, want the upstream's NXDOMAIN", tcp, m.Header)
		}
	}
	if up.udpQ.Load() != 2 || up.tcpQ.Load() != 2 {
		t.Errorf("upstream got %d UDP and %d TCP queries, want 2 and 2 (each query over its own transport)", up.udpQ.Load(), up.tcpQ.Load())
	}
	// Search-list expansions the table does not know are the upstream's too.
	r := p.Resolver(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := r.LookupNetIP(ctx, "ip4", "reviews.default.default.svc.cluster.local."); err != nil || !slices.Equal(got, []netip.Addr{ip("192.0.2.7")}) {
		t.Errorf("unknown expansion: %v, %v", got, err)
	}
	st := p.Stats()
	if st.Upstream != 5 || st.Answered != 0 || st.UpstreamFailures != 0 {
		t.Errorf("stats %+v: want 5 forwarded", st)
	}
}

// bigAnswer answers A queries with n addresses, truncated (no answers, TC)
// over UDP when they do not fit 512 bytes.
func bigAnswer(n int) func(dnsmessage.Message, bool) *dnsmessage.Message {
	return func(q dnsmessage.Message, udp bool) *dnsmessage.Message {
		r := &dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true}, Questions: q.Questions}
		for i := range n {
			r.Answers = append(r.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
				Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, byte(i)}},
			})
		}
		if out, _ := r.Pack(); udp && len(out) > 512 {
			r.Answers, r.Truncated = nil, true
		}
		return r
	}
}

func TestTruncatedRetriedOverTCP(t *testing.T) {
	t.Run("fits the client", func(t *testing.T) {
		// 40 addresses: over 512 bytes, so the upstream truncates over UDP,
		// but within the 1232 the proxy allows a client's EDNS.
		up := startUpstream(t, bigAnswer(40))
		p := startProxy(t, Config{Upstream: up.addr})
		m := p.exchange(t, false, "big.example.com.", dnsmessage.TypeA, true)
		if m.Truncated || len(m.Answers) != 40 {
			t.Errorf("answer TC=%v with %d records, want the whole TCP answer (40)", m.Truncated, len(m.Answers))
		}
		if up.udpQ.Load() != 1 || up.tcpQ.Load() != 1 {
			t.Errorf("upstream got %d UDP and %d TCP queries, want 1 and 1", up.udpQ.Load(), up.tcpQ.Load())
		}
		if st := p.Stats(); st.UpstreamTCPRetries != 1 {
			t.Errorf("stats %+v: want one TCP retry", st)
		}
	})
	t.Run("too big for the client", func(t *testing.T) {
		up := startUpstream(t, bigAnswer(40))
		p := startProxy(t, Config{Upstream: up.addr})
		// No EDNS: 512 bytes at most, so the client gets TC and retries
		// over TCP itself, which Go's resolver does.
		m := p.exchange(t, false, "big.example.com.", dnsmessage.TypeA, false)
		if !m.Truncated {
			t.Errorf("answer TC=%v with %d records, want TC", m.Truncated, len(m.Answers))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := p.Resolver(false).LookupNetIP(ctx, "ip4", "big.example.com.")
		if err != nil || len(got) != 40 {
			t.Errorf("Go's resolver got %d addresses, %v; want 40", len(got), err)
		}
	})
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("silent", func(t *testing.T) {
		up := startUpstream(t, func(dnsmessage.Message, bool) *dnsmessage.Message { return nil })
		p := startProxy(t, Config{Upstream: up.addr, Timeout: 200 * time.Millisecond})
		start := time.Now()
		m := p.exchange(t, false, "example.com.", dnsmessage.TypeA, false)
		if m.RCode != dnsmessage.RCodeServerFailure {
			t.Errorf("rcode %v, want SERVFAIL", m.RCode)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("SERVFAIL took %v, want about the 200ms timeout", d)
		}
		m = p.exchange(t, true, "example.com.", dnsmessage.TypeA, false)
		if m.RCode != dnsmessage.RCodeServerFailure {
			t.Errorf("tcp: rcode %v, want SERVFAIL", m.RCode)
		}
		if st := p.Stats(); st.UpstreamFailures != 2 {
			t.Errorf("stats %+v: want 2 failures", st)
		}
	})
	t.Run("none", func(t *testing.T) {
		p := startProxy(t, Config{})
		if m := p.exchange(t, false, "example.com.", dnsmessage.TypeA, false); m.RCode != dnsmessage.RCodeServerFailure {
			t.Errorf("no upstream: rcode %v, want SERVFAIL", m.RCode)
		}
		// The table still answers.
		if m := p.exchange(t, false, "reviews.", dnsmessage.TypeA, false); len(m.Answers) != 1 {
			t.Errorf("no upstream: reviews answered %+v", m)
		}
	})
}

func TestIgnoresWhatIsNotAQuery(t *testing.T) {
	p := startProxy(t, Config{})
	c, err := net.Dial("udp", p.UDP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A response and a runt get nothing; a malformed query gets FORMERR.
	resp := []byte{0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	c.Write(resp)
	c.Write([]byte{1, 2, 3})
	c.Write([]byte{0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'x'}) // question cut short
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf[:n]); err != nil || m.ID != 0xabcd || m.RCode != dnsmessage.RCodeFormatError {
		t.Errorf("first answer %+v, %v; want FORMERR to id 0xabcd", m.Header, err)
	}
}

// TestTableSwap queries while the table is swapped under it: every answer
// comes whole from one table or the other.
func TestTableSwap(t *testing.T) {
	p := startProxy(t, Config{})
	route := func(vip string) []*xdsresource.RouteConfig {
		return []*xdsresource.RouteConfig{{VirtualHosts: []xdsresource.VirtualHost{{Domains: []string{"svc.default.svc.cluster.local", vip, vip + ":80"}}}}}
	}
	a, b := NewTable(nil, route("10.96.0.1")), NewTable(nil, route("10.96.0.2"))
	p.SetTable(a)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			if i%2 == 0 {
				p.SetTable(b)
			} else {
				p.SetTable(a)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	seen := map[netip.Addr]int{}
	var mu sync.Mutex
	var qs sync.WaitGroup
	for range 4 {
		qs.Go(func() {
			r := p.Resolver(false)
			for range 50 {
				qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
				got, err := r.LookupNetIP(qctx, "ip4", "svc.default.svc.cluster.local.")
				qcancel()
				if err != nil || len(got) != 1 {
					t.Errorf("lookup during swaps: %v, %v", got, err)
					return
				}
				mu.Lock()
				seen[got[0]]++
				mu.Unlock()
			}
		})
	}
	qs.Wait()
	cancel()
	wg.Wait()
	for addr := range seen {
		if addr != ip("10.96.0.1") && addr != ip("10.96.0.2") {
			t.Errorf("answer %v from neither table", addr)
		}
	}
	p.SetTable(nil)
	if p.Table().Len() != 0 {
		t.Error("SetTable(nil) kept names")
	}
}

func TestServeNeedsASocket(t *testing.T) {
	if err := New(Config{}).Serve(context.Background(), nil, nil); err == nil {
		t.Error("Serve with nothing to serve succeeded")
	}
}

// TestServeStopsForwards: stopping the server ends forwards waiting on a
// silent upstream at once, not after their timeout.
func TestServeStopsForwards(t *testing.T) {
	leak.Check(t)
	up := startUpstream(t, func(dnsmessage.Message, bool) *dnsmessage.Message { return nil })
	s := New(Config{Upstream: up.addr, Timeout: time.Minute})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, []net.PacketConn{pc}, nil) }()
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("slow.example.com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	msg, _ := b.Finish()
	c.Write(msg)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Upstream == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop with a forward in flight")
	}
	if errors.Is(ctx.Err(), context.Canceled) && s.Stats().UpstreamFailures != 0 {
		t.Errorf("a forward cut short by shutdown counted as an upstream failure: %+v", s.Stats())
	}
}

func FuzzResolve(f *testing.F) {
	for _, name := range []string{"reviews.default.svc.cluster.local.", "example.com.", "reviews."} {
		for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeTXT} {
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
			b.StartQuestions()
			b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
			b.StartAdditionals()
			var oh dnsmessage.ResourceHeader
			oh.SetEDNS0(1232, dnsmessage.RCodeSuccess, false)
			b.OPTResource(oh, dnsmessage.OPTResource{})
			msg, _ := b.Finish()
			f.Add(msg, true)
		}
	}
	f.Add([]byte{0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false)
	s := New(Config{})
	s.SetTable(NewTable(shopListeners(), shopRoutes()))
	f.Fuzz(func(t *testing.T, msg []byte, udp bool) {
		resp, q, forward := s.resolve(msg, udp)
		if forward {
			if resp != nil {
				t.Fatal("both an answer and a forward")
			}
			// What would go upstream on failure must pack too.
			resp = reply(&q, dnsmessage.RCodeServerFailure, false, nil, q.udpLimit())
		}
		if resp == nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("answer to %x does not parse: %v", msg, err)
		}
		if id, _, _, _ := header(msg); m.ID != id || !m.Response {
			t.Fatalf("answer header %+v to query id %d", m.Header, id)
		}
		if udp && len(resp) > udpMaxSize {
			t.Fatalf("UDP answer of %d bytes", len(resp))
		}
	})
}
