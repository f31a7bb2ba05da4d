package xdsresource

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Error is a decoding or validation failure at a path inside the resource,
// in Envoy's proto field names (virtual_hosts[0].routes[2].match.safe_regex),
// so a NACK tells the operator exactly which setting was refused.
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// errorf makes an error at the current level; callers prefix the path on
// the way out, so paths cost nothing unless decoding fails.
func errorf(format string, args ...any) error {
	return &Error{Err: fmt.Errorf(format, args...)}
}

// within prefixes err's path with seg ("address", "[3]", `["trellis"]`).
func within(err error, seg string) error {
	var e *Error
	if !errors.As(err, &e) {
		return &Error{Path: seg, Err: err}
	}
	switch {
	case e.Path == "":
		e.Path = seg
	case e.Path[0] == '[':
		e.Path = seg + e.Path
	default:
		e.Path = seg + "." + e.Path
	}
	return e
}

func withinIndex(err error, seg string, i int) error {
	return within(within(err, "["+strconv.Itoa(i)+"]"), seg)
}

var (
	errNotSupported = errors.New("not supported by trellis-proxy")
	errRequired     = errors.New("required")
)

// msg walks the fields of one encoded message. Field values are views
// into the input, so decoding copies only the strings it keeps.
//
//	m := msg{b: b, varints: 1<<16}
//	for m.next() {
//		switch m.num { case 1: x.Name = m.str("name") ... }
//	}
//	return m.err
//
// Every field the proxy reads is either a varint (listed in varints, by
// field number) or length-delimited. next skips a field whose wire type
// does not fit: the protobuf runtime keeps such a field as unknown rather
// than failing, and a value read earlier stands, so the proxy sees what an
// Envoy would. The first failure (malformed input, or one recorded with
// fail) stops the walk and keeps the name of the field it was in.
type msg struct {
	b       []byte
	varints uint64 // bit n set: field n is a varint
	num     protowire.Number
	typ     protowire.Type
	u       uint64 // varint values
	val     []byte // length-delimited values
	err     error
}

func (m *msg) next() bool {
	for m.err == nil && len(m.b) > 0 {
		num, typ, n := protowire.ConsumeTag(m.b)
		if n < 0 {
			m.err = errorf("malformed protobuf: %v", protowire.ParseError(n))
			return false
		}
		m.b = m.b[n:]
		m.num, m.typ, m.val, m.u = num, typ, nil, 0
		switch typ {
		case protowire.VarintType:
			m.u, n = protowire.ConsumeVarint(m.b)
		case protowire.BytesType:
			m.val, n = protowire.ConsumeBytes(m.b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, m.b)
		}
		if n < 0 {
			m.err = errorf("malformed protobuf: field %d: %v", num, protowire.ParseError(n))
			return false
		}
		m.b = m.b[n:]
		want := protowire.BytesType
		if num < 64 && m.varints&(1<<num) != 0 {
			want = protowire.VarintType
		}
		if typ == want {
			return true
		}
	}
	return false
}

// fail records err as the reason the walk stops, under the field name seg.
func (m *msg) fail(err error, seg string) {
	if err != nil && m.err == nil {
		m.err = within(err, seg)
	}
}

// failIndex is fail for element i of a repeated field.
func (m *msg) failIndex(err error, seg string, i int) {
	if err != nil && m.err == nil {
		m.err = withinIndex(err, seg, i)
	}
}

// next has already matched the wire type to varints; the accessors check
// it again so that a field missing from a varints mask reads as absent
// instead of as garbage.

// bytes returns a length-delimited value (bytes or message).
func (m *msg) bytes() ([]byte, bool) {
	if m.typ != protowire.BytesType {
		return nil, false
	}
	return m.val, true
}

// str reads a string field, which protobuf requires to be UTF-8.
func (m *msg) str(seg string) string {
	b, _ := m.bytes()
	if !utf8.Valid(b) {
		m.fail(errorf("malformed protobuf: invalid UTF-8"), seg)
		return ""
	}
	return string(b)
}

func (m *msg) varint() uint64 {
	if m.typ != protowire.VarintType {
		return 0
	}
	return m.u
}

func (m *msg) bool() bool { return m.varint() != 0 }

// uint32 reads a uint32 field; like protobuf, it keeps the low 32 bits.
func (m *msg) uint32() uint32 { return uint32(m.varint()) }

// enum reads an enum field; proto3 enums are int32 on the wire.
func (m *msg) enum() int32 { return int32(m.varint()) }

// wrapped reads a google.protobuf.{Bool,UInt32,UInt64}Value: its field 1.
func (m *msg) wrapped(seg string) uint64 {
	b, ok := m.bytes()
	if !ok {
		return 0
	}
	w := msg{b: b, varints: 1 << 1}
	var v uint64
	for w.next() {
		if w.num == 1 {
			v = w.varint()
		}
	}
	m.fail(w.err, seg)
	return v
}

func (m *msg) wrappedBool(seg string) bool     { return m.wrapped(seg) != 0 }
func (m *msg) wrappedUint32(seg string) uint32 { return uint32(m.wrapped(seg)) }

// duration reads a google.protobuf.Duration.
func (m *msg) duration(seg string) time.Duration {
	b, ok := m.bytes()
	if !ok {
		return 0
	}
	d, err := decodeDuration(b)
	m.fail(err, seg)
	return d
}

// maxSeconds keeps seconds*1e9 inside time.Duration.
const maxSeconds = math.MaxInt64/int64(time.Second) - 1

func decodeDuration(b []byte) (time.Duration, error) {
	var secs int64
	var nanos int32
	m := msg{b: b, varints: 1<<1 | 1<<2}
	for m.next() {
		switch m.num {
		case 1:
			secs = int64(m.varint())
		case 2:
			nanos = int32(m.varint())
		}
	}
	if m.err != nil {
		return 0, m.err
	}
	switch {
	case secs < 0 || nanos < 0:
		return 0, errorf("must not be negative")
	case nanos > 999_999_999:
		return 0, errorf("nanos %d out of range", nanos)
	case secs > maxSeconds:
		return 0, errorf("%ds is too long", secs)
	}
	return time.Duration(secs)*time.Second + time.Duration(nanos), nil
}

// anyValue splits a google.protobuf.Any into its type name (the part of
// the URL after the last '/', as anypb resolves it) and value.
func anyValue(b []byte) (typeName string, value []byte, err error) {
	m := msg{b: b}
	var url []byte
	for m.next() {
		switch m.num {
		case 1:
			url, _ = m.bytes()
		case 2:
			value, _ = m.bytes()
		}
	}
	if m.err != nil {
		return "", nil, m.err
	}
	if len(url) == 0 {
		return "", nil, within(errorf("required"), "type_url")
	}
	if i := strings.LastIndexByte(string(url), '/'); i >= 0 {
		url = url[i+1:]
	}
	return string(url), value, nil
}

// socketAddress reads a core.v3.Address, which must be a socket address
// with a port number: the proxy dials and binds nothing else.
func socketAddress(b []byte) (addr string, port uint32, err error) {
	m := msg{b: b}
	found := false
	for m.next() {
		switch m.num {
		case 1:
			sb, ok := m.bytes()
			if !ok {
				break
			}
			found = true
			addr, port, err = decodeSocketAddress(sb)
			m.fail(err, "socket_address")
		case 2:
			m.fail(errNotSupported, "pipe")
		case 3:
			m.fail(errNotSupported, "envoy_internal_address")
		}
	}
	if m.err != nil {
		return "", 0, m.err
	}
	if !found {
		return "", 0, within(errRequired, "socket_address")
	}
	return addr, port, nil
}

func decodeSocketAddress(b []byte) (addr string, port uint32, err error) {
	m := msg{b: b, varints: 1<<1 | 1<<3}
	for m.next() {
		switch m.num {
		case 1:
			if p := m.enum(); p != 0 {
				m.fail(errorf("only TCP is supported, got protocol %d", p), "protocol")
			}
		case 2:
			addr = m.str("address")
		case 3:
			v := m.varint()
			if v > math.MaxUint16 {
				m.fail(errorf("port %d out of range", v), "port_value")
			}
			port = uint32(v)
		case 4:
			m.fail(errNotSupported, "named_port")
		}
	}
	if m.err != nil {
		return "", 0, m.err
	}
	if addr == "" {
		return "", 0, within(errRequired, "address")
	}
	return addr, port, nil
}

// trellisMetadata calls set for every string field of a core.v3.Metadata's
// filter_metadata["trellis"] struct: the only metadata Trellis reads. The
// value is a view into the input, so callers can reuse an equal string.
func trellisMetadata(b []byte, set func(key, value []byte)) error {
	m := msg{b: b}
	for m.next() {
		if m.num != 1 {
			continue
		}
		entry, ok := m.bytes()
		if !ok {
			break
		}
		key, st, err := mapEntry(entry)
		if err != nil {
			m.fail(err, "filter_metadata")
			break
		}
		if string(key) != metadataNamespace {
			continue
		}
		m.fail(structStrings(st, set), `filter_metadata["trellis"]`)
	}
	return m.err
}

const metadataNamespace = "trellis"

// mapEntry splits a map entry message into its key (1) and value (2).
func mapEntry(b []byte) (key, value []byte, err error) {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			key, _ = m.bytes()
		case 2:
			value, _ = m.bytes()
		}
	}
	return key, value, m.err
}

// structStrings reads the string fields of a google.protobuf.Struct;
// values of other kinds are skipped, since Trellis sets only strings.
func structStrings(b []byte, set func(key, value []byte)) error {
	m := msg{b: b}
	for m.next() {
		if m.num != 1 {
			continue
		}
		entry, ok := m.bytes()
		if !ok {
			break
		}
		key, value, err := mapEntry(entry)
		if err != nil {
			m.fail(err, "fields")
			break
		}
		v := msg{b: value}
		for v.next() {
			if v.num == 3 { // string_value
				if s, ok := v.bytes(); ok {
					set(key, s)
				}
			}
		}
		if v.err != nil {
			m.fail(v.err, "fields["+strconv.Quote(string(key))+"]")
		}
	}
	return m.err
}

// count returns how many times field num occurs at the top level of b, so
// repeated fields can be allocated once at their final size.
func count(b []byte, num protowire.Number) int {
	n := 0
	for len(b) > 0 {
		f, _, l := protowire.ConsumeField(b)
		if l < 0 {
			return n
		}
		if f == num {
			n++
		}
		b = b[l:]
	}
	return n
}
