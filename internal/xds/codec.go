package xds

import (
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A delta response is almost entirely resources that every stream of a
// scope sends byte for byte the same. gRPC's proto codec would marshal
// each response into a fresh buffer, one copy per stream (a 1,000-service
// mesh's initial state is ~3 MB, held until the transport has written
// it). The codec below sends the bytes that diffs keep encoded once per
// scope (layerDiff.enc) as they are, so a response in flight costs its
// small header and a list of slices, whatever its size.

// ServerOptions are the gRPC server options the xDS server wants: a codec
// that writes pre-encoded delta responses without copying them. Without
// them delta ADS still works, marshalling every response per stream.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(codec{})}
}

// codec is gRPC's proto codec plus encodedResponse.
type codec struct{}

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encodedResponse); ok {
		out := make(mem.BufferSlice, 0, len(e.parts))
		for _, p := range e.parts {
			if len(p) > 0 {
				out = append(out, mem.SliceBuffer(p)) // shared, immutable: Free is a no-op
			}
		}
		return out, nil
	}
	return protoCodec().Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec().Unmarshal(data, v) }

func (codec) Name() string { return protoCodec().Name() }

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2("proto") }

// encodedResponse is a delta response together with its wire form in
// parts: the scalar fields, then runs of resources already encoded as the
// response's `resources` field (shared with every other stream). The
// embedded message is complete, so gRPC's own codec, when ours is not
// installed, marshals it as usual.
type encodedResponse struct {
	*discoverygrpc.DeltaDiscoveryResponse
	parts [][]byte
}

// resourcesField is DeltaDiscoveryResponse.resources' field number.
var resourcesField = (&discoverygrpc.DeltaDiscoveryResponse{}).ProtoReflect().Descriptor().Fields().ByName("resources").Number()

// appendResource appends r encoded as one element of a
// DeltaDiscoveryResponse's resources field.
func appendResource(b []byte, r *discoverygrpc.Resource) []byte {
	b = protowire.AppendTag(b, resourcesField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(proto.Size(r)))
	b, _ = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, r) // our own message: cannot fail
	return b
}

// encode pairs resp with its wire form: resp's fields other than
// resources, then the runs of encoded resources, which must be resp's
// resources in order. Field order on the wire does not matter to protobuf
// parsers; this one is the canonical order only for system_version_info
// and resources.
func encode(resp *discoverygrpc.DeltaDiscoveryResponse, runs [][]byte) (*encodedResponse, error) {
	head := &discoverygrpc.DeltaDiscoveryResponse{
		SystemVersionInfo: resp.GetSystemVersionInfo(),
	}
	tail := &discoverygrpc.DeltaDiscoveryResponse{
		TypeUrl:          resp.GetTypeUrl(),
		RemovedResources: resp.GetRemovedResources(),
		Nonce:            resp.GetNonce(),
	}
	h, err := proto.Marshal(head)
	if err != nil {
		return nil, err
	}
	t, err := proto.Marshal(tail)
	if err != nil {
		return nil, err
	}
	parts := make([][]byte, 0, len(runs)+2)
	parts = append(parts, h)
	parts = append(parts, runs...)
	parts = append(parts, t)
	return &encodedResponse{DeltaDiscoveryResponse: resp, parts: parts}, nil
}
