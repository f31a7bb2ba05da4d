package sniff

import (
	"crypto/tls"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzParseClientHello(f *testing.F) {
	hello := clientHello(f, &tls.Config{ServerName: "reviews.default.svc", NextProtos: []string{"h2", "http/1.1"}})
	f.Add(hello[9:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		sni, alpn, ok := parseClientHello(body)
		if !ok && (sni != "" || alpn != nil) {
			t.Fatalf("malformed hello yielded %q %q", sni, alpn)
		}
		if len(alpn) > maxALPN || len(sni) > 253 {
			t.Fatalf("unbounded result: %d protocols, SNI of %d bytes", len(alpn), len(sni))
		}
	})
}

// FuzzClassify checks the classifier never panics, never asks for more
// bytes than it was given without a reason, and that any decision made on
// a prefix stands for the whole input. Each input is classified at every
// prefix, so minimising a new input is slow; run with -fuzzminimizetime 1s
// or the exec counter seems to stall for the default minute.
func FuzzClassify(f *testing.F) {
	hello := clientHello(f, &tls.Config{ServerName: "a.b", NextProtos: []string{"h2"}})
	for _, s := range [][]byte{hello, resplit(hello, 100), []byte(h2Preface), []byte("GET / HTTP/1.1\r\n"), []byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01"), {0}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		full, fullDone, want := classify(in)
		if !fullDone && len(in) > 0 && want != 0 && want <= len(in) {
			t.Fatalf("undecided but wants %d bytes of the %d it has", want, len(in))
		}
		if !fullDone {
			return
		}
		for i := 1; i < len(in); i++ {
			if res, done, _ := classify(in[:i]); done {
				if diff := cmp.Diff(full, res); diff != "" {
					t.Fatalf("prefix %d decided differently (-whole +prefix):\n%s", i, diff)
				}
				break
			}
		}
	})
}
