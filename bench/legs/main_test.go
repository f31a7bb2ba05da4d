package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// base is the capture's start; tests give times as offsets from it.
var base = time.Unix(1_764_000_000, 0)

const us = time.Microsecond

// pkt is a TCP segment to write into a test capture.
type pkt struct {
	at       time.Duration
	src, dst string
	seq      uint32
	payload  string
}

// pcapFile writes pkts as a pcap file, as tcpdump would with snap length
// snap: records keep at most snap bytes of each frame, and IP lengths say
// how long the packet was.
func pcapFile(t testing.TB, order binary.AppendByteOrder, nanos bool, link uint32, snap int, pkts []pkt) []byte {
	t.Helper()
	var b bytes.Buffer
	u32 := func(v uint32) { b.Write(order.AppendUint32(nil, v)) }
	magic := uint32(0xa1b2c3d4)
	if nanos {
		magic = 0xa1b23c4d
	}
	u32(magic)
	b.Write(order.AppendUint16(nil, 2))
	b.Write(order.AppendUint16(nil, 4))
	u32(0)
	u32(0)
	u32(uint32(snap))
	u32(link)
	for _, p := range pkts {
		frame := append(linkHeader(t, link), ipTCP(t, p)...)
		incl := min(len(frame), snap)
		at := base.Add(p.at)
		frac := uint32(at.Nanosecond() / 1000)
		if nanos {
			frac = uint32(at.Nanosecond())
		}
		u32(uint32(at.Unix()))
		u32(frac)
		u32(uint32(incl))
		u32(uint32(len(frame)))
		b.Write(frame[:incl])
	}
	return b.Bytes()
}

func linkHeader(t testing.TB, link uint32) []byte {
	t.Helper()
	switch link {
	case linkEthernet:
		return append(make([]byte, 12), 0x08, 0x00)
	case linkSLL:
		return append(make([]byte, 14), 0x08, 0x00)
	case linkSLL2:
		return append([]byte{0x08, 0x00}, make([]byte, 18)...)
	case linkRaw, linkIPv4:
		return nil
	}
	t.Fatalf("no header for link type %d", link)
	return nil
}

func ipTCP(t testing.TB, p pkt) []byte {
	t.Helper()
	src, dst := netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst)
	ip := make([]byte, 20, 40+len(p.payload))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(40+len(p.payload)))
	ip[8], ip[9] = 64, 6
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], p.seq)
	tcp[12] = 5 << 4
	tcp[13] = 0x18 // PSH, ACK
	return append(append(ip, tcp...), p.payload...)
}

// Three legs as in bench/sidecar.sh's trellis scenario: client → client
// sidecar :15001 (leg 1) → server sidecar :15008 (leg 2) → app :9080 (leg 3).
const (
	client1, client2 = "127.77.48.1:40001", "127.77.48.1:40002"
	sidecar1         = "127.77.48.1:15001"
	tunnelA, tunnelB = "127.77.48.1:41001", "127.77.48.1:41002"
	sidecar2         = "127.77.48.2:15008"
	upA, upB         = "127.77.48.2:42001", "127.77.48.2:42002"
	app              = "127.77.48.2:9080"
)

const (
	post = "POST /echo HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 1024\r\n\r\n"
	ok   = "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n"
)

var body = strings.Repeat("x", 1024)

// threeLegs is requests A and B at the same time on two client
// connections, then C on A's connections again. Each is
// in1/in2/app/out2/out1 µs: A 100/150/50/120/80, B 110/160/40/90/450,
// C 10/10/80/100/100.
var threeLegs = []pkt{
	{0, client1, sidecar1, 1000, post + body},
	{5 * us, client1, sidecar1, 2000, body}, // the body's second segment
	{7 * us, sidecar1, client1, 9000, ""},   // an ACK
	{50 * us, client2, sidecar1, 5000, post + body},
	{100 * us, tunnelA, sidecar2, 100, post + body},
	{160 * us, tunnelB, sidecar2, 200, post + body},
	{250 * us, upA, app, 300, post + body},
	{300 * us, app, upA, 400, ok + body},
	{305 * us, app, upA, 500, body},
	{320 * us, upB, app, 600, post + body},
	{360 * us, app, upB, 700, ok + body},
	{420 * us, sidecar2, tunnelA, 800, ok + body},
	{450 * us, sidecar2, tunnelB, 900, ok + body},
	{500 * us, sidecar1, client1, 1100, ok + body},
	{900 * us, sidecar1, client2, 1200, ok + body},
	{1000 * us, client1, sidecar1, 3000, "GET /echo HTTP/1.1\r\n\r\n"},
	{1010 * us, tunnelA, sidecar2, 1300, "GET /echo HTTP/1.1\r\n\r\n"},
	{1020 * us, upA, app, 1400, "GET /echo HTTP/1.1\r\n\r\n"},
	{1100 * us, app, upA, 1500, ok},
	{1200 * us, sidecar2, tunnelA, 1600, ok},
	{1300 * us, sidecar1, client1, 1700, ok},
}

var threeLegArgs = []string{"15001=1", "127.77.48.2:15008=2", "9080=3"}

// view is a segment with times as offsets from base, for readable diffs.
type view struct {
	At       time.Duration
	Src, Dst string
	Seq      uint32
	Payload  string
}

func views(segs []segment) []view {
	var v []view
	for _, s := range segs {
		v = append(v, view{s.at.Sub(base), s.src.String(), s.dst.String(), s.seq, string(s.payload)})
	}
	return v
}

func TestParsePcap(t *testing.T) {
	pkts := []pkt{
		{0, client1, sidecar1, 1, post},
		{1 * us, sidecar1, client1, 2, ""}, // no data: skipped
		{1500 * time.Nanosecond, sidecar1, client1, 3, ok},
	}
	for _, tc := range []struct {
		name  string
		order binary.AppendByteOrder
		nanos bool
		link  uint32
		// resolution is what the timestamps keep.
		resolution time.Duration
	}{
		{"ethernet µs", binary.LittleEndian, false, linkEthernet, us},
		{"ethernet ns", binary.LittleEndian, true, linkEthernet, time.Nanosecond},
		{"linux cooked µs", binary.LittleEndian, false, linkSLL, us},
		{"linux cooked v2 ns", binary.LittleEndian, true, linkSLL2, time.Nanosecond},
		{"raw ip ns", binary.LittleEndian, true, linkRaw, time.Nanosecond},
		{"big-endian ethernet µs", binary.BigEndian, false, linkEthernet, us},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A snap length that keeps 10 bytes of payload after the
			// Ethernet, IP and TCP headers.
			snap := len(linkHeader(t, tc.link)) + 40 + 10
			c, err := parsePcap(pcapFile(t, tc.order, tc.nanos, tc.link, snap, pkts))
			if err != nil {
				t.Fatal(err)
			}
			want := []view{
				{0, client1, sidecar1, 1, post[:10]},
				{(1500 * time.Nanosecond).Truncate(tc.resolution), sidecar1, client1, 3, ok[:10]},
			}
			if diff := cmp.Diff(want, views(c.segments)); diff != "" {
				t.Errorf("segments (-want +got):\n%s", diff)
			}
			if c.records != 3 || c.link != tc.link || c.nanos != tc.nanos {
				t.Errorf("records, link, nanos = %d, %d, %v; want 3, %d, %v", c.records, c.link, c.nanos, tc.link, tc.nanos)
			}
		})
	}
}

func TestParsePcapErrors(t *testing.T) {
	good := pcapFile(t, binary.LittleEndian, false, linkEthernet, 160, threeLegs[:3])
	badLink := pcapFile(t, binary.LittleEndian, false, linkEthernet, 160, nil)
	binary.LittleEndian.PutUint32(badLink[20:], 105) // 802.11
	huge := bytes.Clone(good)
	binary.LittleEndian.PutUint32(huge[24+8:], 1<<20)
	for _, tc := range []struct {
		name      string
		data      []byte
		truncated bool
		// hint is part of what the message tells the user to do.
		hint string
	}{
		{"empty", nil, false, "did it have permission"},
		{"bad magic", append([]byte("GET / HTTP/1.1\r\n"), make([]byte, 16)...), false, "tcpdump -w"},
		{"pcapng", append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, make([]byte, 28)...), false, "editcap -F pcap"},
		{"link type", badLink, false, "capture on lo"},
		{"record too large", huge, false, "corrupt"},
		{"cut in a record header", good[:24+10], true, "after tcpdump has exited"},
		{"cut in a record", good[:len(good)-10], true, "after tcpdump has exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parsePcap(tc.data)
			if err == nil {
				t.Fatalf("parsePcap = %d segments, want an error", len(c.segments))
			}
			if got := errors.Is(err, errTruncated); got != tc.truncated {
				t.Errorf("errors.Is(%v, errTruncated) = %v, want %v", err, got, tc.truncated)
			}
			if !strings.Contains(err.Error(), tc.hint) {
				t.Errorf("error %q does not say %q", err, tc.hint)
			}
		})
	}
}

// exView is an exchange with times as offsets from base.
type exView struct {
	Leg       string
	Req, Resp time.Duration
}

func exViews(ex []exchange) []exView {
	var v []exView
	for _, e := range ex {
		v = append(v, exView{e.leg, e.req.Sub(base), e.resp.Sub(base)})
	}
	return v
}

func segments(t *testing.T, pkts []pkt) []segment {
	t.Helper()
	c, err := parsePcap(pcapFile(t, binary.LittleEndian, false, linkEthernet, 160, pkts))
	if err != nil {
		t.Fatal(err)
	}
	return c.segments
}

func mustLegs(t *testing.T, args ...string) legs {
	t.Helper()
	l, err := parseLegs(args)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestTimeLegs(t *testing.T) {
	ex, lost := timeLegs(segments(t, threeLegs), mustLegs(t, threeLegArgs...))
	want := []exView{
		{"3", 250 * us, 300 * us},
		{"3", 320 * us, 360 * us},
		{"2", 100 * us, 420 * us},
		{"2", 160 * us, 450 * us},
		{"1", 0, 500 * us},
		{"1", 50 * us, 900 * us},
		{"3", 1020 * us, 1100 * us},
		{"2", 1010 * us, 1200 * us},
		{"1", 1000 * us, 1300 * us},
	}
	if diff := cmp.Diff(want, exViews(ex)); diff != "" {
		t.Errorf("exchanges (-want +got):\n%s", diff)
	}
	if len(lost) != 0 {
		t.Errorf("lost = %v, want none", lost)
	}
	wantLatencies := map[string][]time.Duration{
		"1": {300 * us, 500 * us, 850 * us},
		"2": {190 * us, 290 * us, 320 * us},
		"3": {40 * us, 50 * us, 80 * us},
	}
	if diff := cmp.Diff(wantLatencies, latencies(ex)); diff != "" {
		t.Errorf("latencies (-want +got):\n%s", diff)
	}
}

func TestTimeLegsLostResponse(t *testing.T) {
	pkts := []pkt{
		// The tunnel's CONNECT is no request of the leg, so its response
		// answers nothing.
		{0, tunnelA, sidecar2, 1, "CONNECT 127.77.48.2:9080 HTTP/1.1\r\n\r\n"},
		{10 * us, sidecar2, tunnelA, 2, "HTTP/1.1 200 OK\r\n\r\n"},
		// The capture dropped the response to the request at 100 µs.
		{100 * us, tunnelA, sidecar2, 3, post},
		{1000 * us, tunnelA, sidecar2, 4, post},
		{1300 * us, sidecar2, tunnelA, 5, ok},
		// A retransmitted request started when it was first sent.
		{2000 * us, tunnelA, sidecar2, 6, post},
		{2200 * us, tunnelA, sidecar2, 6, post},
		{2500 * us, sidecar2, tunnelA, 7, ok},
		// A response's later segments answer nothing.
		{2600 * us, sidecar2, tunnelA, 8, ok},
	}
	ex, lost := timeLegs(segments(t, pkts), mustLegs(t, "15008=2"))
	want := []exView{{"2", 1000 * us, 1300 * us}, {"2", 2000 * us, 2500 * us}}
	if diff := cmp.Diff(want, exViews(ex)); diff != "" {
		t.Errorf("exchanges (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"2": 1}, lost); diff != "" {
		t.Errorf("lost (-want +got):\n%s", diff)
	}
}

func TestParseLegs(t *testing.T) {
	l := mustLegs(t, "9080=3", "127.0.0.1:8080=1", "127.0.0.2:8080=2", "15001=1")
	if diff := cmp.Diff([]string{"1", "2", "3"}, l.names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		server string
		want   string
	}{
		{"127.0.0.1:8080", "1"},
		{"127.0.0.2:8080", "2"},
		{"127.0.0.3:8080", ""},
		{"127.0.0.9:9080", "3"},
		{"127.0.0.9:15001", "1"},
	} {
		if got, _ := l.of(netip.MustParseAddrPort(tc.server)); got != tc.want {
			t.Errorf("leg of %s = %q, want %q", tc.server, got, tc.want)
		}
	}
	// An ip:port leg wins over a port leg.
	l = mustLegs(t, "8080=outer", "127.0.0.2:8080=inner")
	if got, _ := l.of(netip.MustParseAddrPort("127.0.0.2:8080")); got != "inner" {
		t.Errorf("leg of 127.0.0.2:8080 = %q, want inner", got)
	}
	for _, bad := range []string{"15001", "15001=", "70000=1", "localhost:80=1", "=1", "80=1 80=2"} {
		if _, err := parseLegs(strings.Fields(bad)); err == nil {
			t.Errorf("parseLegs(%q) succeeded, want an error", bad)
		}
	}
}

func TestDecompose(t *testing.T) {
	ex, _ := timeLegs(segments(t, threeLegs), mustLegs(t, threeLegArgs...))
	splits, outer := decompose(ex)
	want := []split{
		{100 * us, 150 * us, 50 * us, 120 * us, 80 * us},
		{110 * us, 160 * us, 40 * us, 90 * us, 450 * us},
		{10 * us, 10 * us, 80 * us, 100 * us, 100 * us},
	}
	if diff := cmp.Diff(want, splits); diff != "" {
		t.Errorf("splits (-want +got):\n%s", diff)
	}
	if outer != 3 {
		t.Errorf("outer = %d, want 3", outer)
	}
}

func TestDecomposeUnmatched(t *testing.T) {
	// Leg 2's request starts before leg 1's, and leg 3's is answered after
	// leg 2's: neither is inside the outer request.
	ex := []exchange{
		{"1", base.Add(100 * us), base.Add(900 * us)},
		{"2", base.Add(50 * us), base.Add(800 * us)},
		{"1", base.Add(1000 * us), base.Add(1900 * us)},
		{"2", base.Add(1100 * us), base.Add(1800 * us)},
		{"3", base.Add(1200 * us), base.Add(1850 * us)},
	}
	splits, outer := decompose(ex)
	if len(splits) != 0 || outer != 2 {
		t.Errorf("decompose = %v, %d; want no splits of 2", splits, outer)
	}
}

func TestSlowest(t *testing.T) {
	var splits []split
	for i := range 300 {
		splits = append(splits, split{time.Duration(i%7) * us, 0, 100 * us, 0, 0})
	}
	// The slowest 1% (3 of 300): two with 1 ms of app time, then the
	// earlier of two that take 900 µs.
	splits[10][2] = 1000 * us
	splits[250][2] = 1000 * us
	splits[20][0], splits[30][0] = 800*us, 800*us
	slow := slowest(splits)
	if diff := cmp.Diff([]split{splits[250], splits[10], splits[20]}, slow); diff != "" {
		t.Errorf("slowest (-want +got):\n%s", diff)
	}
	// (5 + 3 + 800) µs / 3, rounded down to the nanosecond.
	if got, want := mean(slow, parts[0].of), 269333*time.Nanosecond; got != want {
		t.Errorf("mean in1 = %v, want %v", got, want)
	}
	if got, want := mean(slow, split.total), (1005+1003+900)*us/3; got != want {
		t.Errorf("mean total = %v, want %v", got, want)
	}
	// Fewer than 100 still name the slowest one.
	if diff := cmp.Diff([]split{splits[4]}, slowest(splits[:5])); diff != "" {
		t.Errorf("slowest of 5 (-want +got):\n%s", diff)
	}
}

func TestRun(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cap.pcap")
	if err := os.WriteFile(file, pcapFile(t, binary.LittleEndian, false, linkEthernet, 160, threeLegs), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(append([]string{file}, threeLegArgs...), &out); err != nil {
		t.Fatal(err)
	}
	want := file + `: 21 records, 20 TCP segments with data over 0.001 s; Ethernet, µs timestamps

Per leg, first request segment to first response segment (µs); lost = requests whose response the capture lost
leg   server            requests   lost    p50    p90    p99  p99.9    max
1     15001                    3      0    500    500    500    500    850
2     127.77.48.2:15008        3      0    290    290    290    290    320
3     9080                     3      0     50     50     50     50     80

Leg 1 requests through legs 2 and 3: 3 of 3 matched (µs)
part   from → to                   p50    p90    p99  p99.9 slowest 1% mean
in1    1 request → 2 request       100    100    100    100             110
in2    2 request → 3 request       150    150    150    150             160
app    3 request → 3 response       50     50     50     50              40
out2   3 response → 2 response     100    100    100    100              90
out1   2 response → 1 response     100    100    100    100             450
total  1 request → 1 response      500    500    500    500             850
slowest 1%: the 1 with total >= 850 µs
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}

	for _, args := range [][]string{
		{file},                                  // no legs
		{file, "15001"},                         // a leg without a name
		{filepath.Join(t.TempDir(), "missing")}, // no such file
	} {
		if err := run(args, &out); err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
}

func FuzzParsePcap(f *testing.F) {
	f.Add(pcapFile(f, binary.LittleEndian, false, linkEthernet, 160, threeLegs))
	f.Add(pcapFile(f, binary.BigEndian, true, linkSLL2, 64, threeLegs[:4]))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parsePcap(data)
		if err != nil {
			return
		}
		l := legs{byPort: map[uint16]string{15001: "1", 15008: "2", 9080: "3"}}
		ex, _ := timeLegs(c.segments, l)
		decompose(ex)
	})
}
