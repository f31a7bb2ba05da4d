package sniff

const (
	recordTypeHandshake      = 0x16
	handshakeTypeClientHello = 1
	recordHeaderLen          = 5
	handshakeHeaderLen       = 4
	// maxPlaintextRecord is TLS's record limit (RFC 8446 §5.1); a longer
	// handshake record is not a TLS client talking.
	maxPlaintextRecord = 1 << 14
	// maxALPN bounds how many protocol names are kept: ALPN lists are a
	// handful of entries, and a ClientHello packed with thousands of
	// one-byte names should not cost thousands of strings.
	maxALPN = 32
)

// classifyTLS decides a connection whose first byte is a handshake record.
// The ClientHello may span several records (large post-quantum key shares
// make that more likely); each arrives whole before the next is examined.
func classifyTLS(b []byte) (Result, bool, int) {
	tlsOnly := Result{Protocol: TLS}
	if len(b) < recordHeaderLen+1 {
		if len(b) >= 2 && b[1] != 3 {
			return Result{Protocol: TCP}, true, 0
		}
		return Result{}, false, recordHeaderLen + 1
	}
	if b[1] != 3 || b[5] != handshakeTypeClientHello {
		return Result{Protocol: TCP}, true, 0
	}
	rl := int(b[3])<<8 | int(b[4])
	if rl < handshakeHeaderLen || rl > maxPlaintextRecord {
		return tlsOnly, true, 0
	}
	if len(b) < recordHeaderLen+handshakeHeaderLen {
		return Result{}, false, recordHeaderLen + handshakeHeaderLen
	}
	need := handshakeHeaderLen + (int(b[6])<<16 | int(b[7])<<8 | int(b[8]))
	if need > MaxPeek {
		return tlsOnly, true, 0
	}
	var msg []byte
	if rl >= need {
		if len(b) < recordHeaderLen+need {
			return Result{}, false, recordHeaderLen + need
		}
		msg = b[recordHeaderLen : recordHeaderLen+need]
	} else {
		var ok bool
		var want int
		if msg, ok, want = reassemble(b, rl, need); !ok {
			if want == 0 {
				return tlsOnly, true, 0
			}
			return Result{}, false, want
		}
	}
	sni, alpn, ok := parseClientHello(msg[handshakeHeaderLen:])
	if !ok {
		return tlsOnly, true, 0
	}
	return Result{Protocol: TLS, SNI: sni, ALPN: alpn}, true, 0
}

// reassemble gathers a handshake message of need bytes whose first rl bytes
// are in the first record. It copies, which only the rare multi-record
// ClientHello pays for. !ok with want > 0 asks for more bytes; with want 0
// the records are malformed.
func reassemble(b []byte, rl, need int) (msg []byte, ok bool, want int) {
	off := recordHeaderLen + rl
	if len(b) < off {
		return nil, false, off
	}
	have := rl
	for have < need {
		if len(b) < off+recordHeaderLen {
			return nil, false, off + recordHeaderLen + (need - have)
		}
		h := b[off : off+recordHeaderLen]
		n := int(h[3])<<8 | int(h[4])
		if h[0] != recordTypeHandshake || h[1] != 3 || n == 0 || n > maxPlaintextRecord {
			return nil, false, 0
		}
		take := min(n, need-have)
		if len(b) < off+recordHeaderLen+take {
			return nil, false, off + recordHeaderLen + take
		}
		have += take
		off += recordHeaderLen + n
	}
	msg = make([]byte, 0, need)
	for off = 0; len(msg) < need; {
		n := int(b[off+3])<<8 | int(b[off+4])
		frag := b[off+recordHeaderLen:]
		frag = frag[:min(n, need-len(msg))]
		msg = append(msg, frag...)
		off += recordHeaderLen + n
	}
	return msg, true, 0
}

// parseClientHello reads the server_name and ALPN extensions from a
// ClientHello body (RFC 8446 §4.1.2), checking every length against what
// is there. ok is false when the message is malformed; the caller then
// still knows it is TLS, just not where it is going.
func parseClientHello(body []byte) (sni string, alpn []string, ok bool) {
	r := reader(body)
	if !r.skip(2 + 32) { // legacy_version, random
		return "", nil, false
	}
	if sid, ok := r.vec8(); !ok || len(sid) > 32 {
		return "", nil, false
	}
	if cs, ok := r.vec16(); !ok || len(cs) < 2 || len(cs)%2 != 0 {
		return "", nil, false
	}
	if cm, ok := r.vec8(); !ok || len(cm) < 1 {
		return "", nil, false
	}
	if len(r) == 0 {
		return "", nil, true // pre-TLS 1.0 style: no extensions at all
	}
	exts, ok := r.vec16()
	if !ok || len(r) != 0 {
		return "", nil, false
	}
	var seenSNI, seenALPN bool
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec16()
		if !ok1 || !ok2 {
			return "", nil, false
		}
		switch typ {
		case 0: // server_name
			if seenSNI {
				return "", nil, false
			}
			seenSNI = true
			if sni, ok = parseSNI(data); !ok {
				return "", nil, false
			}
		case 16: // application_layer_protocol_negotiation
			if seenALPN {
				return "", nil, false
			}
			seenALPN = true
			if alpn, ok = parseALPN(data); !ok {
				return "", nil, false
			}
		}
	}
	return sni, alpn, true
}

func parseSNI(data reader) (string, bool) {
	list, ok := data.vec16()
	if !ok || len(data) != 0 || len(list) == 0 {
		return "", false
	}
	var name string
	for len(list) > 0 {
		typ, ok1 := list.u8()
		host, ok2 := list.vec16()
		if !ok1 || !ok2 {
			return "", false
		}
		if typ == 0 && name == "" {
			name = hostName(host)
		}
	}
	return name, true
}

// hostName normalises an SNI host_name for routing: lowercase, no trailing
// dot. Anything that cannot be a DNS name (empty, over 253 bytes, control or
// non-ASCII bytes) yields "", so a route never matches on garbage.
func hostName(b []byte) string {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > 253 {
		return ""
	}
	var lower [253]byte
	for i, c := range b {
		if c <= ' ' || c >= 0x7f {
			return ""
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return string(lower[:len(b)])
}

func parseALPN(data reader) ([]string, bool) {
	list, ok := data.vec16()
	if !ok || len(data) != 0 || len(list) == 0 {
		return nil, false
	}
	var protos []string
	for len(list) > 0 {
		p, ok := list.vec8()
		if !ok || len(p) == 0 {
			return nil, false
		}
		if len(protos) < maxALPN {
			protos = append(protos, string(p))
		}
	}
	return protos, true
}

// reader is a bounds-checked cursor: every read either succeeds entirely
// or reports false, so no input can index out of range.
type reader []byte

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) u8() (int, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := int((*r)[0])
	*r = (*r)[1:]
	return v, true
}

func (r *reader) u16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int((*r)[0])<<8 | int((*r)[1])
	*r = (*r)[2:]
	return v, true
}

func (r *reader) vec8() (reader, bool) {
	n, ok := r.u8()
	if !ok || len(*r) < n {
		return nil, false
	}
	v := (*r)[:n:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) vec16() (reader, bool) {
	n, ok := r.u16()
	if !ok || len(*r) < n {
		return nil, false
	}
	v := (*r)[:n:n]
	*r = (*r)[n:]
	return v, true
}
