package sniff

// h2Preface is what an HTTP/2 client with prior knowledge sends first
// (RFC 9113 §3.4). Its "PRI" line is deliberately not an HTTP/1 method, so
// an HTTP/1 server rejects it rather than misparsing it.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// methods are matched with their trailing space so that a binary protocol
// which happens to start with "GET" is not taken for HTTP. Methods are
// case-sensitive (RFC 9110 §9.1), which keeps memcached's lowercase text
// commands ("get k") out. WebDAV and other extension methods are left out
// on purpose: every extra token is another way to misread a text protocol,
// and a WebDAV port can be declared http.
var methods = [...]string{
	"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ",
}

// match reports whether b starts with s (full) or is a proper prefix of it
// (partial: more bytes might still make it match).
func match(b []byte, s string) (full, partial bool) {
	n := min(len(b), len(s))
	if string(b[:n]) != s[:n] {
		return false, false
	}
	return n == len(s), n < len(s)
}

// classify looks at the bytes peeked so far. decided says res is final;
// otherwise want is how many bytes in total would let it decide (a hint for
// growing the buffer; 0 when any more bytes will do).
func classify(b []byte) (res Result, decided bool, want int) {
	if len(b) == 0 {
		return Result{}, false, 0
	}
	if b[0] == recordTypeHandshake {
		return classifyTLS(b)
	}
	return classifyHTTP(b)
}

func classifyHTTP(b []byte) (Result, bool, int) {
	candidate := false
	if full, partial := match(b, h2Preface); full {
		return Result{Protocol: HTTP2}, true, 0
	} else if partial {
		candidate = true
	}
	for _, m := range methods {
		full, partial := match(b, m)
		if full {
			return Result{Protocol: HTTP1, Method: m[:len(m)-1]}, true, 0
		}
		candidate = candidate || partial
	}
	if candidate {
		return Result{}, false, 0
	}
	return Result{Protocol: TCP}, true, 0
}

// undecided is the verdict when the client stops sending (timeout or EOF)
// before classify could decide: a started ClientHello is still TLS (only
// SNI and ALPN are lost); an unfinished method or preface is opaque TCP.
func undecided(b []byte) Result {
	if len(b) >= 6 && b[0] == recordTypeHandshake && b[1] == 3 && b[5] == handshakeTypeClientHello {
		return Result{Protocol: TLS}
	}
	return Result{Protocol: TCP}
}
