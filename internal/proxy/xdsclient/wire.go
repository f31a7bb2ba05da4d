package xdsclient

import (
	"errors"
	"fmt"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
)

// The two discovery messages are encoded by hand with protowire: the
// generated go-control-plane types would link megabytes of descriptors into
// the sidecar for the handful of fields a delta client touches. Field
// numbers are those of envoy/service/discovery/v3/discovery.proto,
// envoy/config/core/v3/base.proto (Node), google/protobuf/struct.proto,
// google/protobuf/any.proto and google/rpc/status.proto.

// deltaRequest is envoy.service.discovery.v3.DeltaDiscoveryRequest.
type deltaRequest struct {
	Node                    *Node // sent on the first request of a stream only
	TypeURL                 string
	Subscribe               []string
	Unsubscribe             []string
	InitialResourceVersions map[string]string
	ResponseNonce           string
	// ErrorDetail is set on a NACK.
	ErrorDetail *rpcStatus
}

// rpcStatus is google.rpc.Status without details.
type rpcStatus struct {
	Code    int32
	Message string
}

// deltaResponse is envoy.service.discovery.v3.DeltaDiscoveryResponse.
type deltaResponse struct {
	SystemVersionInfo string
	Resources         []wireResource
	TypeURL           string
	RemovedResources  []string
	Nonce             string
}

// wireResource is envoy.service.discovery.v3.Resource with its Any
// unpacked; Value aliases the response buffer.
type wireResource struct {
	Name     string
	Version  string
	TypeURL  string // of the Any
	Value    []byte // of the Any
	HasValue bool   // the Any was present (a resource without one is invalid)
}

// google.rpc.Code values used in NACKs.
const codeInvalidArgument = 3

// marshal encodes the request.
func (r *deltaRequest) marshal() []byte {
	var b []byte
	if r.Node != nil {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Node.marshal())
	}
	b = appendString(b, 2, r.TypeURL)
	for _, n := range r.Subscribe {
		b = appendStringAlways(b, 3, n)
	}
	for _, n := range r.Unsubscribe {
		b = appendStringAlways(b, 4, n)
	}
	// Sorted so the same state always encodes to the same bytes (tests and
	// captures compare them).
	keys := make([]string, 0, len(r.InitialResourceVersions))
	for k := range r.InitialResourceVersions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var e []byte
		e = appendStringAlways(e, 1, k)
		e = appendStringAlways(e, 2, r.InitialResourceVersions[k])
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	b = appendString(b, 6, r.ResponseNonce)
	if r.ErrorDetail != nil {
		var s []byte
		if r.ErrorDetail.Code != 0 {
			s = protowire.AppendTag(s, 1, protowire.VarintType)
			s = protowire.AppendVarint(s, uint64(int64(r.ErrorDetail.Code)))
		}
		s = appendString(s, 2, r.ErrorDetail.Message)
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendBytes(b, s)
	}
	return b
}

// marshal encodes envoy.config.core.v3.Node.
func (n *Node) marshal() []byte {
	var b []byte
	b = appendString(b, 1, n.NodeID())
	b = appendString(b, 2, n.Cluster)
	md := n.metadata()
	if len(md) > 0 {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, marshalStruct(md))
	}
	b = appendString(b, 6, grpcwire.UserAgent) // user_agent_name
	return b
}

// marshalStruct encodes a google.protobuf.Struct whose values are strings
// or (for LABELS) nested structs of strings: the only shapes Istio's node
// metadata needs.
func marshalStruct(m map[string]any) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		var v []byte // google.protobuf.Value
		switch x := m[k].(type) {
		case string:
			v = appendStringAlways(v, 3, x) // string_value
		case map[string]string:
			nested := make(map[string]any, len(x))
			for nk, nv := range x {
				nested[nk] = nv
			}
			v = protowire.AppendTag(v, 5, protowire.BytesType) // struct_value
			v = protowire.AppendBytes(v, marshalStruct(nested))
		default:
			continue
		}
		var e []byte // map entry of Struct.fields (field 1)
		e = appendStringAlways(e, 1, k)
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		e = protowire.AppendBytes(e, v)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

// appendString writes a proto3 string field, omitting the default.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringAlways(b, num, s)
}

// appendStringAlways writes a string even when empty: repeated elements
// and map entries must keep empty values.
func appendStringAlways(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

var errTruncated = errors.New("truncated or malformed protobuf")

// unmarshalResponse decodes a DeltaDiscoveryResponse. Unknown fields are
// skipped, as protobuf requires; fields of the wrong wire type are errors.
// Resource values alias buf.
func unmarshalResponse(buf []byte) (*deltaResponse, error) {
	r := &deltaResponse{}
	err := walk(buf, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case 1:
			r.SystemVersionInfo = string(v)
		case 2:
			res, err := unmarshalResource(v)
			if err != nil {
				return fmt.Errorf("resources[%d]: %w", len(r.Resources), err)
			}
			r.Resources = append(r.Resources, res)
		case 4:
			r.TypeURL = string(v)
		case 5:
			r.Nonce = string(v)
		case 6:
			r.RemovedResources = append(r.RemovedResources, string(v))
		}
		return nil
	}, 1, 2, 4, 5, 6)
	if err != nil {
		return nil, fmt.Errorf("decoding DeltaDiscoveryResponse: %w", err)
	}
	return r, nil
}

func unmarshalResource(buf []byte) (wireResource, error) {
	var r wireResource
	err := walk(buf, func(num protowire.Number, _ protowire.Type, v []byte) error {
		switch num {
		case 1:
			r.Version = string(v)
		case 2:
			r.HasValue = true
			return walk(v, func(num protowire.Number, _ protowire.Type, v []byte) error {
				switch num {
				case 1:
					r.TypeURL = string(v)
				case 2:
					r.Value = v
				}
				return nil
			}, 1, 2)
		case 3:
			r.Name = string(v)
		}
		return nil
	}, 1, 2, 3)
	return r, err
}

// walk calls f with the contents of every length-delimited field listed in
// bytesFields. Other fields, and listed ones of another wire type, are
// skipped as unknown, as the protobuf runtime does.
func walk(buf []byte, f func(protowire.Number, protowire.Type, []byte) error, bytesFields ...protowire.Number) error {
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return errTruncated
		}
		buf = buf[n:]
		want := false
		for _, bf := range bytesFields {
			if typ != protowire.BytesType {
				break
			}
			if bf == num {
				want = true
				break
			}
		}
		if !want {
			n = protowire.ConsumeFieldValue(num, typ, buf)
			if n < 0 {
				return errTruncated
			}
			buf = buf[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(buf)
		if n < 0 {
			return errTruncated
		}
		buf = buf[n:]
		if err := f(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}
