package xdsclient

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
	"github.com/trellismesh/trellis/internal/xds"
)

// Our hand encoding must be what the generated types read, including the
// node metadata the control plane scopes config by.
func TestRequestEncoding(t *testing.T) {
	node := &Node{IP: "127.0.0.8", Pod: "sleep-1", Namespace: "demo", Cluster: "c1", Labels: map[string]string{"app": "sleep", "version": "v1"},
		ServiceAccount: "sleep", WorkloadName: "sleep", InterceptionMode: "NONE"}
	req := &deltaRequest{
		Node:                    node,
		TypeURL:                 "type.googleapis.com/envoy.config.cluster.v3.Cluster",
		Subscribe:               []string{"*", ""},
		Unsubscribe:             []string{"old"},
		InitialResourceVersions: map[string]string{"a": "1", "b": ""},
		ResponseNonce:           "n-1",
		ErrorDetail:             &rpcStatus{Code: codeInvalidArgument, Message: "resources[0] \"a\": bad"},
	}
	var got discoverygrpc.DeltaDiscoveryRequest
	if err := proto.Unmarshal(req.marshal(), &got); err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE": "demo", "SERVICE_ACCOUNT": "sleep", "WORKLOAD_NAME": "sleep", "INTERCEPTION_MODE": "NONE", "INSTANCE_IPS": "127.0.0.8",
		"LABELS": map[string]any{"app": "sleep", "version": "v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &discoverygrpc.DeltaDiscoveryRequest{
		Node:                     &corev3.Node{Id: "sidecar~127.0.0.8~sleep-1.demo~demo.svc.cluster.local", Cluster: "c1", Metadata: md, UserAgentName: grpcwire.UserAgent},
		TypeUrl:                  req.TypeURL,
		ResourceNamesSubscribe:   []string{"*", ""},
		ResourceNamesUnsubscribe: []string{"old"},
		InitialResourceVersions:  map[string]string{"a": "1", "b": ""},
		ResponseNonce:            "n-1",
		ErrorDetail:              &status.Status{Code: 3, Message: "resources[0] \"a\": bad"},
	}
	if d := cmp.Diff(want, &got, protocmp.Transform()); d != "" {
		t.Fatalf("decoded request (-want +got):\n%s", d)
	}
	p, err := xds.ParseNode(got.GetNode())
	if err != nil {
		t.Fatal(err)
	}
	if p.Namespace != "demo" || p.Pod != "sleep-1" || p.IP != "127.0.0.8" || p.InterceptionMode != "NONE" || p.Labels["version"] != "v1" || p.ServiceAccount != "sleep" {
		t.Fatalf("control plane reads the node as %+v", p)
	}
}

func TestResponseDecoding(t *testing.T) {
	cla, err := anypb.New(&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||reviews.default.svc.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	msg := &discoverygrpc.DeltaDiscoveryResponse{
		SystemVersionInfo: "7.3",
		TypeUrl:           cla.TypeUrl,
		Resources: []*discoverygrpc.Resource{
			{Name: "outbound|9080||reviews.default.svc.cluster.local", Version: "v1", Resource: cla, Aliases: []string{"x"}},
			{Name: "empty"},
		},
		RemovedResources: []string{"gone", ""},
		Nonce:            "1-2",
		ControlPlane:     &corev3.ControlPlane{Identifier: "trellis"}, // unknown to us: skipped
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &deltaResponse{
		SystemVersionInfo: "7.3",
		TypeURL:           cla.TypeUrl,
		Resources: []wireResource{
			{Name: "outbound|9080||reviews.default.svc.cluster.local", Version: "v1", TypeURL: cla.TypeUrl, Value: cla.Value, HasValue: true},
			{Name: "empty"},
		},
		RemovedResources: []string{"gone", ""},
		Nonce:            "1-2",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("decoded response (-want +got):\n%s", d)
	}

	for _, bad := range [][]byte{
		{0x12, 0x05, 0x1a},             // resources: length past the end
		{0x22, 0x80},                   // type_url: truncated length
		{0x12, 0x02, 0x12, 0x05},       // resource.resource: truncated
		{0x12, 0x03, 0x12, 0x01, 0x08}, // Any with a truncated varint
		{0x0f},                         // field 1, invalid wire type 7
	} {
		if _, err := unmarshalResponse(bad); err == nil {
			t.Errorf("% x: decoded without error", bad)
		}
	}
}

func TestReadMessageLimits(t *testing.T) {
	frame := func(flag byte, n uint32, body string) io.Reader {
		b := []byte{flag, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], n)
		return bytes.NewReader(append(b, body...))
	}
	if m, err := readMessage(frame(0, 3, "abc"), 3); err != nil || string(m) != "abc" {
		t.Fatalf("got %q, %v", m, err)
	}
	if _, err := readMessage(frame(0, 4, "abcd"), 3); err == nil || !strings.Contains(err.Error(), "MaxRecvMsgSize") {
		t.Fatalf("oversized message: %v", err)
	}
	if _, err := readMessage(frame(1, 3, "abc"), 3); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Fatalf("compressed message: %v", err)
	}
	if _, err := readMessage(frame(0, 3, "ab"), 3); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short message: %v", err)
	}
	if _, err := readMessage(bytes.NewReader(nil), 3); err != io.EOF {
		t.Fatalf("clean end: %v", err)
	}
}

func TestParseServer(t *testing.T) {
	for in, want := range map[string]target{
		"127.0.0.1:15010":      {Network: "tcp", Address: "127.0.0.1:15010", Authority: "127.0.0.1:15010"},
		"unix:///run/xds.sock": {Network: "unix", Address: "/run/xds.sock", Authority: "localhost"},
		"unix:/run/xds.sock":   {Network: "unix", Address: "/run/xds.sock", Authority: "localhost"},
	} {
		got, err := parseServer(in)
		if err != nil || got != want {
			t.Errorf("parseServer(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "localhost", "unix://relative/x.sock", "unix:"} {
		if _, err := parseServer(bad); err == nil {
			t.Errorf("parseServer(%q) accepted", bad)
		}
	}
}

// The sidecar must stay lean: this package may not link grpc,
// go-control-plane or protobuf's generated well-known types.
