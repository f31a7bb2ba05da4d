// Command legs tells where the latency of HTTP/1.1 requests through a chain
// of two proxies goes, from a libpcap capture of their loopback traffic.
//
//	go run ./bench/legs CAPTURE.pcap LEG...
//
// A LEG is `ip:port=name` or `port=name`: connections to that server make
// up the leg. For each leg it prints the time from a request's first segment
// to its response's first segment. When legs 1, 2 and 3 are named
// (client → proxy 1, proxy 1 → proxy 2, proxy 2 → app), it follows each
// leg-1 request through the other two and splits it into in1, in2, app,
// out2 and out1: the time each hop adds on the way in and out. A proxy's
// client-side latency can hide in the network stack or the scheduler rather
// than its own code, and only the wire shows that.
//
// bench/sidecar.sh runs it with CAPTURE_DIR set, on captures such as
//
//	timeout 8 tcpdump -i lo -s 160 -B 131072 -n -w cap.pcap net 127.77.48.0/24
//
// It reads IPv4 TCP from pcap files (not pcapng) with microsecond or
// nanosecond timestamps, in Ethernet (`-i lo`), Linux cooked v1 or v2
// (`-i any`) or raw IP framing.
package main

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "legs:", err)
		os.Exit(1)
	}
}

const usage = `usage: legs CAPTURE.pcap LEG...
  LEG is ip:port=name or port=name (the server side of the leg's connections);
  name legs 1, 2 and 3 (outermost first) to split requests across them, e.g.
  legs cap.pcap 15001=1 15008=2 9080=3`

func run(args []string, w io.Writer) error {
	if len(args) < 2 {
		return errors.New(usage)
	}
	l, err := parseLegs(args[1:])
	if err != nil {
		return fmt.Errorf("%w\n%s", err, usage)
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	c, err := parsePcap(data)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	ex, lost := timeLegs(c.segments, l)
	report(w, args[0], c, l, ex, lost)
	return nil
}

// --- pcap -> segments ---------------------------------------------------------

// Link types (https://www.tcpdump.org/linktypes.html).
const (
	linkEthernet = 1   // tcpdump -i lo
	linkRaw      = 101 // raw IP
	linkSLL      = 113 // tcpdump -i any, libpcap before 1.10
	linkIPv4     = 228 // raw IPv4
	linkSLL2     = 276 // tcpdump -i any, libpcap 1.10 and later
)

var linkNames = map[uint32]string{
	linkEthernet: "Ethernet", linkRaw: "raw IP", linkSLL: "Linux cooked",
	linkIPv4: "raw IPv4", linkSLL2: "Linux cooked v2",
}

// A valid record is never larger than the largest snap length tcpdump
// accepts; a larger one means the file is not what its header says.
const maxRecord = 262144

var errTruncated = errors.New("the capture is cut short")

// segment is a TCP segment that carries data.
type segment struct {
	at       time.Time
	src, dst netip.AddrPort
	seq      uint32
	// payload is what the snap length kept, enough to tell a request or
	// response line from the rest.
	payload []byte
}

type capture struct {
	link     uint32
	nanos    bool
	records  int
	segments []segment
}

// parsePcap returns the data-carrying IPv4 TCP segments of a capture, in
// capture order; other packets are skipped.
func parsePcap(data []byte) (*capture, error) {
	if len(data) >= 4 && binary.BigEndian.Uint32(data) == 0x0a0d0d0a {
		return nil, errors.New("this is a pcapng file; capture with tcpdump -w (pcap) or convert it: editcap -F pcap IN OUT")
	}
	if len(data) < 24 {
		return nil, fmt.Errorf("%d bytes is shorter than a pcap file header (24): not a capture, or tcpdump wrote nothing (did it have permission to capture?)", len(data))
	}
	c := &capture{}
	var order binary.ByteOrder
	for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		switch o.Uint32(data) {
		case 0xa1b2c3d4:
			order = o
		case 0xa1b23c4d:
			order, c.nanos = o, true
		}
		if order != nil {
			break
		}
	}
	if order == nil {
		return nil, fmt.Errorf("not a pcap file (magic %08x, want a1b2c3d4 or a1b23c4d); write it with tcpdump -w", binary.LittleEndian.Uint32(data))
	}
	c.link = order.Uint32(data[20:])
	if _, ok := linkNames[c.link]; !ok {
		return nil, fmt.Errorf("link type %d is not supported; capture on lo (Ethernet) or any (Linux cooked)", c.link)
	}
	unit := time.Microsecond
	if c.nanos {
		unit = time.Nanosecond
	}
	for off := 24; off < len(data); c.records++ {
		if len(data)-off < 16 {
			return nil, truncated(c.records+1, off, len(data)-off, 16)
		}
		incl := order.Uint32(data[off+8:])
		if incl > maxRecord {
			return nil, fmt.Errorf("record %d at byte %d claims %d bytes: the file is corrupt", c.records+1, off, incl)
		}
		end := off + 16 + int(incl)
		if end > len(data) {
			return nil, truncated(c.records+1, off, len(data)-off, 16+int(incl))
		}
		at := time.Unix(int64(order.Uint32(data[off:])), int64(order.Uint32(data[off+4:]))*int64(unit))
		if s, ok := tcpSegment(ipv4(c.link, data[off+16:end])); ok {
			s.at = at
			c.segments = append(c.segments, s)
		}
		off = end
	}
	return c, nil
}

// truncated describes a record the file ends inside of.
func truncated(record, off, have, want int) error {
	return fmt.Errorf("record %d at byte %d: %w (%d of %d bytes); copy the file only after tcpdump has exited, and stop it with SIGTERM or SIGINT (timeout does), which flushes", record, off, errTruncated, have, want)
}

// ipv4 returns the IPv4 packet in a link-layer frame, or nil when the frame
// carries something else.
func ipv4(link uint32, frame []byte) []byte {
	hdr, etype := 0, -1 // header length, offset of its EtherType
	switch link {
	case linkEthernet:
		hdr, etype = 14, 12
	case linkSLL:
		hdr, etype = 16, 14
	case linkSLL2:
		hdr, etype = 20, 0
	}
	if len(frame) < hdr || etype >= 0 && binary.BigEndian.Uint16(frame[etype:]) != 0x0800 {
		return nil
	}
	return frame[hdr:]
}

// tcpSegment decodes an IPv4 packet holding a TCP segment with data.
func tcpSegment(p []byte) (segment, bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 6 {
		return segment{}, false
	}
	ihl := int(p[0]&15) * 4
	// The IP total length, not the captured length: the snap length cuts
	// payloads short.
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || len(p) < ihl+20 {
		return segment{}, false
	}
	tcp := p[ihl:]
	doff := int(tcp[12]>>4) * 4
	if total-ihl-doff <= 0 || len(tcp) < doff {
		return segment{}, false
	}
	return segment{
		src:     netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), binary.BigEndian.Uint16(tcp[0:])),
		dst:     netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[16:20])), binary.BigEndian.Uint16(tcp[2:])),
		seq:     binary.BigEndian.Uint32(tcp[4:]),
		payload: tcp[doff:],
	}, true
}

// --- per-leg timing ---------------------------------------------------------------

// legs names the servers whose connections are timed.
type legs struct {
	byAddr map[netip.AddrPort]string
	byPort map[uint16]string
	names  []string            // sorted, each once
	specs  map[string][]string // name -> the ip:port or port given for it
}

func parseLegs(args []string) (legs, error) {
	l := legs{byAddr: map[netip.AddrPort]string{}, byPort: map[uint16]string{}, specs: map[string][]string{}}
	for _, a := range args {
		k, name, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return legs{}, fmt.Errorf("leg %q: want ip:port=name or port=name", a)
		}
		dup := false
		if ap, err := netip.ParseAddrPort(k); err == nil {
			_, dup = l.byAddr[ap]
			l.byAddr[ap] = name
		} else if p, err := strconv.ParseUint(k, 10, 16); err == nil {
			_, dup = l.byPort[uint16(p)]
			l.byPort[uint16(p)] = name
		} else {
			return legs{}, fmt.Errorf("leg %q: %q is neither ip:port nor a port", a, k)
		}
		if dup {
			return legs{}, fmt.Errorf("leg %q: %s is already a leg", a, k)
		}
		if _, seen := l.specs[name]; !seen {
			l.names = append(l.names, name)
		}
		l.specs[name] = append(l.specs[name], k)
	}
	sort.Strings(l.names)
	return l, nil
}

// of returns the leg whose server is e; an ip:port leg wins over a port leg.
func (l legs) of(e netip.AddrPort) (string, bool) {
	if n, ok := l.byAddr[e]; ok {
		return n, true
	}
	n, ok := l.byPort[e.Port()]
	return n, ok
}

// exchange is one request and its response on a leg, each timed by its
// first segment.
type exchange struct {
	leg       string
	req, resp time.Time
}

type flow struct{ client, server netip.AddrPort }

var methods = [][]byte{[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("HEAD "),
	[]byte("DELETE "), []byte("PATCH "), []byte("OPTIONS ")}

func isRequest(payload []byte) bool {
	for _, m := range methods {
		if bytes.HasPrefix(payload, m) {
			return true
		}
	}
	return false
}

// timeLegs pairs each leg's requests with their responses, in order of
// response. A segment that starts with a method is a request's first;
// one that starts with "HTTP/1.1 " a response's first: a body segment that
// happens to start the same way would be miscounted, which the payloads of a
// load generator make unlikely. lost counts per leg the requests whose
// response the capture lost.
func timeLegs(segs []segment, l legs) (ex []exchange, lost map[string]int) {
	type open struct {
		leg string
		at  time.Time
		seq uint32
	}
	// Without pipelining a connection has at most one request waiting; a new
	// one means the capture (which drops packets under load) lost the
	// previous one's response.
	pending := map[flow]open{}
	lost = map[string]int{}
	for _, s := range segs {
		if leg, ok := l.of(s.dst); ok && isRequest(s.payload) {
			f := flow{s.src, s.dst}
			if p, ok := pending[f]; ok {
				if p.seq == s.seq {
					continue // a retransmission: the request started earlier
				}
				lost[p.leg]++
			}
			pending[f] = open{leg, s.at, s.seq}
		} else if leg, ok := l.of(s.src); ok && bytes.HasPrefix(s.payload, []byte("HTTP/1.1 ")) {
			f := flow{s.dst, s.src}
			p, ok := pending[f]
			if !ok {
				continue
			}
			delete(pending, f)
			ex = append(ex, exchange{leg: leg, req: p.at, resp: s.at})
		}
	}
	return ex, lost
}

// latencies returns each leg's request-to-response times, sorted.
func latencies(ex []exchange) map[string][]time.Duration {
	by := map[string][]time.Duration{}
	for _, e := range ex {
		by[e.leg] = append(by[e.leg], e.resp.Sub(e.req))
	}
	for _, v := range by {
		slices.Sort(v)
	}
	return by
}

// percentile of sorted values, rounding the rank down.
func percentile(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(q*float64(len(sorted)-1))]
}

// --- decomposition --------------------------------------------------------------

// split is where one request's end-to-end time went: in1, in2, app, out2
// and out1, as parts names them.
type split [5]time.Duration

func (s split) total() time.Duration {
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t
}

// decompose follows each leg-1 exchange through legs 2 and 3. The capture
// does not say which inner request serves which outer one, so an outer
// request takes the earliest unclaimed inner one that starts after it
// started and is answered before it is; at 1,000 requests a second over a
// few connections that is almost always right, and a wrong pick only swaps
// parts between two requests of the same moment. Splits come in order of
// leg-1 request; outer counts the leg-1 exchanges.
func decompose(ex []exchange) (splits []split, outer int) {
	var l1, l2, l3 []exchange
	for _, e := range ex {
		switch e.leg {
		case "1":
			l1 = append(l1, e)
		case "2":
			l2 = append(l2, e)
		case "3":
			l3 = append(l3, e)
		}
	}
	byReq := func(a, b exchange) int { return a.req.Compare(b.req) }
	slices.SortStableFunc(l1, byReq)
	slices.SortStableFunc(l2, byReq)
	slices.SortStableFunc(l3, byReq)
	used2, used3 := make([]bool, len(l2)), make([]bool, len(l3))
	match := func(l []exchange, used []bool, outer exchange) int {
		i := sort.Search(len(l), func(i int) bool { return !l[i].req.Before(outer.req) })
		for ; i < len(l) && l[i].req.Before(outer.resp); i++ {
			if !used[i] && !l[i].resp.After(outer.resp) {
				used[i] = true
				return i
			}
		}
		return -1
	}
	for _, r := range l1 {
		i := match(l2, used2, r)
		if i < 0 {
			continue
		}
		j := match(l3, used3, l2[i])
		if j < 0 {
			continue
		}
		a, b := l2[i], l3[j]
		splits = append(splits, split{
			a.req.Sub(r.req), b.req.Sub(a.req), b.resp.Sub(b.req), a.resp.Sub(b.resp), r.resp.Sub(a.resp),
		})
	}
	return splits, len(l1)
}

var parts = []struct {
	name, span string
	of         func(split) time.Duration
}{
	{"in1", "1 request → 2 request", func(s split) time.Duration { return s[0] }},
	{"in2", "2 request → 3 request", func(s split) time.Duration { return s[1] }},
	{"app", "3 request → 3 response", func(s split) time.Duration { return s[2] }},
	{"out2", "3 response → 2 response", func(s split) time.Duration { return s[3] }},
	{"out1", "2 response → 1 response", func(s split) time.Duration { return s[4] }},
	{"total", "1 request → 1 response", split.total},
}

// slowest returns the slowest 1% of splits by total, at least one, slowest
// first. Equal totals keep their order, so which of them make the cut does
// not depend on the sort.
func slowest(splits []split) []split {
	s := slices.Clone(splits)
	slices.SortStableFunc(s, func(a, b split) int { return cmp.Compare(b.total(), a.total()) })
	return s[:max(len(s)/100, 1)]
}

func mean(splits []split, of func(split) time.Duration) time.Duration {
	var sum time.Duration
	for _, s := range splits {
		sum += of(s)
	}
	return sum / time.Duration(len(splits))
}

// --- report ---------------------------------------------------------------------

var quantiles = []struct {
	name string
	q    float64
}{{"p50", .5}, {"p90", .9}, {"p99", .99}, {"p99.9", .999}}

// pad counts runes, not bytes as %-*s does: the arrows are one column.
func pad(s string, width int) string {
	return s + strings.Repeat(" ", max(width-utf8.RuneCountInString(s), 0))
}

func micros(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }

func report(w io.Writer, file string, c *capture, l legs, ex []exchange, lost map[string]int) {
	res := "µs"
	if c.nanos {
		res = "ns"
	}
	span := time.Duration(0)
	if n := len(c.segments); n > 0 {
		span = c.segments[n-1].at.Sub(c.segments[0].at)
	}
	fmt.Fprintf(w, "%s: %d records, %d TCP segments with data over %.3f s; %s, %s timestamps\n\n",
		file, c.records, len(c.segments), span.Seconds(), linkNames[c.link], res)

	fmt.Fprintln(w, "Per leg, first request segment to first response segment (µs); lost = requests whose response the capture lost")
	width := len("server")
	for _, n := range l.names {
		width = max(width, len(strings.Join(l.specs[n], ",")))
	}
	fmt.Fprintf(w, "%-5s %-*s %8s %6s", "leg", width, "server", "requests", "lost")
	for _, q := range quantiles {
		fmt.Fprintf(w, " %6s", q.name)
	}
	fmt.Fprintf(w, " %6s\n", "max")
	by := latencies(ex)
	for _, n := range l.names {
		v := by[n]
		fmt.Fprintf(w, "%-5s %-*s %8d %6d", n, width, strings.Join(l.specs[n], ","), len(v), lost[n])
		if len(v) > 0 {
			for _, q := range quantiles {
				fmt.Fprintf(w, " %6s", micros(percentile(v, q.q)))
			}
			fmt.Fprintf(w, " %6s", micros(v[len(v)-1]))
		}
		fmt.Fprintln(w)
	}
	if len(ex) == 0 {
		fmt.Fprintln(w, "\nno request on any leg was answered in the capture: check the legs' ports and that the capture filter covers them")
		return
	}

	for _, n := range []string{"1", "2", "3"} {
		if _, ok := l.specs[n]; !ok {
			return // no decomposition asked for
		}
	}
	splits, outer := decompose(ex)
	fmt.Fprintf(w, "\nLeg 1 requests through legs 2 and 3: %d of %d matched (µs)\n", len(splits), outer)
	if len(splits) == 0 {
		fmt.Fprintln(w, "none matched: legs 2 and 3 must be the hops behind leg 1, in that order")
		return
	}
	slow := slowest(splits)
	fmt.Fprintf(w, "%-6s %s", "part", pad("from → to", 24))
	for _, q := range quantiles {
		fmt.Fprintf(w, " %6s", q.name)
	}
	fmt.Fprintf(w, " %15s\n", "slowest 1% mean")
	for _, p := range parts {
		v := make([]time.Duration, len(splits))
		for i, s := range splits {
			v[i] = p.of(s)
		}
		slices.Sort(v)
		fmt.Fprintf(w, "%-6s %s", p.name, pad(p.span, 24))
		for _, q := range quantiles {
			fmt.Fprintf(w, " %6s", micros(percentile(v, q.q)))
		}
		fmt.Fprintf(w, " %15s\n", micros(mean(slow, p.of)))
	}
	fmt.Fprintf(w, "slowest 1%%: the %d with total >= %s µs\n", len(slow), micros(slow[len(slow)-1].total()))
}
