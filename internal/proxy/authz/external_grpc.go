package authz

import (
	"errors"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// CheckMethod is the gRPC authorization service's method, as Envoy's
// ext_authz calls it.
const CheckMethod = "/envoy.service.auth.v3.Authorization/Check"

// CheckInput is what a gRPC authorizer is told about a request (Envoy's
// AttributeContext, the parts the sidecar knows).
type CheckInput struct {
	Method, Host, Path, Scheme, Protocol, ID string
	Header                                   http.Header
	Source, Destination                      netip.AddrPort
	SourcePrincipal, DestinationPrincipal    string // SPIFFE IDs, "" for none
	// Body is the request body sent with the check (body, or raw_body
	// when RawBody); ExtraHeaders are added to the headers the
	// authorizer sees (Envoy's x-envoy-auth-partial-body).
	Body         []byte
	RawBody      bool
	ExtraHeaders [][2]string
}

// EncodeCheckRequest encodes an envoy.service.auth.v3.CheckRequest for in:
// the proxy links no protobuf runtime, so it writes the wire form itself.
// Header names are lower case, with the pseudo-headers :method, :path,
// :authority and :scheme, as Envoy sends them.
func EncodeCheckRequest(in *CheckInput) []byte {
	peer := func(a netip.AddrPort, principal string) []byte {
		var b []byte
		if a.IsValid() {
			var sa []byte
			sa = protowire.AppendTag(sa, 2, protowire.BytesType)
			sa = protowire.AppendString(sa, a.Addr().Unmap().String())
			sa = protowire.AppendTag(sa, 3, protowire.VarintType)
			sa = protowire.AppendVarint(sa, uint64(a.Port()))
			var addr []byte
			addr = protowire.AppendTag(addr, 1, protowire.BytesType) // socket_address
			addr = protowire.AppendBytes(addr, sa)
			b = protowire.AppendTag(b, 1, protowire.BytesType) // address
			b = protowire.AppendBytes(b, addr)
		}
		if principal != "" {
			b = protowire.AppendTag(b, 4, protowire.BytesType)
			b = protowire.AppendString(b, principal)
		}
		return b
	}
	headers := map[string]string{":method": in.Method, ":path": in.Path, ":authority": in.Host, ":scheme": in.Scheme}
	for k, v := range in.Header {
		headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	for _, kv := range in.ExtraHeaders {
		headers[kv[0]] = kv[1]
	}
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var h []byte
	str := func(num protowire.Number, v string) {
		if v != "" {
			h = protowire.AppendTag(h, num, protowire.BytesType)
			h = protowire.AppendString(h, v)
		}
	}
	str(1, in.ID)
	str(2, in.Method)
	for _, k := range keys {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		e = protowire.AppendString(e, headers[k])
		h = protowire.AppendTag(h, 3, protowire.BytesType)
		h = protowire.AppendBytes(h, e)
	}
	path, query, _ := strings.Cut(in.Path, "?")
	str(4, path)
	str(5, in.Host)
	str(6, in.Scheme)
	str(7, query)
	str(10, in.Protocol)
	if len(in.Body) > 0 {
		if in.RawBody {
			h = protowire.AppendTag(h, 12, protowire.BytesType)
		} else {
			h = protowire.AppendTag(h, 11, protowire.BytesType)
		}
		h = protowire.AppendBytes(h, in.Body)
	}
	var req []byte
	req = protowire.AppendTag(req, 2, protowire.BytesType) // http
	req = protowire.AppendBytes(req, h)
	var attrs []byte
	attrs = protowire.AppendTag(attrs, 1, protowire.BytesType)
	attrs = protowire.AppendBytes(attrs, peer(in.Source, in.SourcePrincipal))
	attrs = protowire.AppendTag(attrs, 2, protowire.BytesType)
	attrs = protowire.AppendBytes(attrs, peer(in.Destination, in.DestinationPrincipal))
	attrs = protowire.AppendTag(attrs, 4, protowire.BytesType)
	attrs = protowire.AppendBytes(attrs, req)
	var out []byte
	out = protowire.AppendTag(out, 1, protowire.BytesType)
	return protowire.AppendBytes(out, attrs)
}

// CheckResult is a decoded envoy.service.auth.v3.CheckResponse.
type CheckResult struct {
	OK bool // status.code 0
	// SetHeaders are the ok_response headers to set on the request,
	// RemoveHeaders the ones to remove.
	SetHeaders    [][2]string
	RemoveHeaders []string
	// Status, Headers and Body are the denied_response's; Status 0 means
	// Envoy's default 403.
	Status  int
	Headers [][2]string
	Body    string
}

var errMalformed = errors.New("malformed CheckResponse")

type wireField struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

func fields(b []byte) ([]wireField, error) {
	var out []wireField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errMalformed
		}
		b = b[n:]
		f := wireField{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, errMalformed
		}
		b = b[n:]
		out = append(out, f)
	}
	return out, nil
}

// headerOptions reads repeated core.v3.HeaderValueOption.
func headerOption(b []byte) ([2]string, error) {
	var kv [2]string
	fs, err := fields(b)
	if err != nil {
		return kv, err
	}
	for _, f := range fs {
		if f.num != 1 || f.typ != protowire.BytesType {
			continue
		}
		hs, err := fields(f.b)
		if err != nil {
			return kv, err
		}
		for _, h := range hs {
			if h.typ == protowire.BytesType && (h.num == 1 || h.num == 2) {
				kv[h.num-1] = string(h.b)
			}
		}
	}
	return kv, nil
}

// DecodeCheckResponse decodes an envoy.service.auth.v3.CheckResponse.
func DecodeCheckResponse(b []byte) (CheckResult, error) {
	// Envoy decides by status.code alone; an absent status is OK (0).
	res := CheckResult{OK: true}
	fs, err := fields(b)
	if err != nil {
		return res, err
	}
	for _, f := range fs {
		if f.typ != protowire.BytesType {
			continue
		}
		sub, err := fields(f.b)
		if err != nil {
			return res, err
		}
		switch f.num {
		case 1: // status
			for _, s := range sub {
				if s.num == 1 && s.typ == protowire.VarintType && s.v != 0 {
					res.OK = false
				}
			}
		case 2: // denied_response
			for _, s := range sub {
				switch {
				case s.num == 1 && s.typ == protowire.BytesType:
					st, err := fields(s.b)
					if err != nil {
						return res, err
					}
					for _, c := range st {
						if c.num == 1 && c.typ == protowire.VarintType {
							res.Status = int(c.v)
						}
					}
				case s.num == 2 && s.typ == protowire.BytesType:
					kv, err := headerOption(s.b)
					if err != nil {
						return res, err
					}
					res.Headers = append(res.Headers, kv)
				case s.num == 3 && s.typ == protowire.BytesType:
					res.Body = string(s.b)
				}
			}
		case 3: // ok_response
			for _, s := range sub {
				switch {
				case s.num == 2 && s.typ == protowire.BytesType:
					kv, err := headerOption(s.b)
					if err != nil {
						return res, err
					}
					res.SetHeaders = append(res.SetHeaders, kv)
				case s.num == 5 && s.typ == protowire.BytesType:
					res.RemoveHeaders = append(res.RemoveHeaders, string(s.b))
				}
			}
		}
	}
	return res, nil
}
