package metrics

import (
	"cmp"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Unknown is Istio's value for a label it cannot fill.
const Unknown = "unknown"

// Workload is what Istio's labels say about one side of a request:
// source_workload, source_app, ... or their destination_ twins.
type Workload struct {
	Name, Namespace, App, Version                string
	CanonicalService, CanonicalRevision, Cluster string
}

// Peer is a workload with the principal it proved (its SPIFFE ID with
// the spiffe:// scheme, as Istio's source_principal has it, or
// "unknown"). Peers are interned by a Peers cache, so series keys
// compare them by pointer; the label text of both roles is formatted
// once, when the peer is made.
type Peer struct {
	Workload
	Principal string
	// src and dst are the peer's labels in the source_ and destination_
	// roles, ready to be written into a series' label set.
	src, dst string
}

// UnknownPeer is a side nothing is known of: a caller from outside the
// mesh, or an endpoint without workload metadata.
var UnknownPeer = newPeer(Workload{}, "")

func newPeer(w Workload, principal string) *Peer {
	u := func(s string) string { return cmp.Or(s, Unknown) }
	w = Workload{u(w.Name), u(w.Namespace), u(w.App), u(w.Version), u(w.CanonicalService), u(w.CanonicalRevision), u(w.Cluster)}
	p := &Peer{Workload: w, Principal: u(principal)}
	p.src = p.labels("source_")
	p.dst = p.labels("destination_")
	return p
}

func (p *Peer) labels(role string) string {
	var b strings.Builder
	for _, kv := range [...][2]string{
		{"workload", p.Name}, {"workload_namespace", p.Namespace}, {"principal", p.Principal},
		{"app", p.App}, {"version", p.Version}, {"cluster", p.Cluster},
		{"canonical_service", p.CanonicalService}, {"canonical_revision", p.CanonicalRevision},
	} {
		writeLabel(&b, role+kv[0], kv[1])
	}
	return b.String()
}

// ParseEndpointPeer reads the workload an endpoint's telemetry metadata
// names ("name;namespace;app;version;canonical service;canonical
// revision;cluster", translate's peerMetadata). A malformed or empty
// string yields an empty Workload, whose labels read "unknown".
func ParseEndpointPeer(s string) Workload {
	f := strings.Split(s, ";")
	if len(f) != 7 {
		return Workload{}
	}
	return Workload{Name: f[0], Namespace: f[1], App: f[2], Version: f[3], CanonicalService: f[4], CanonicalRevision: f[5], Cluster: f[6]}
}

// MaxPeers bounds a Peers cache: the mesh's workloads times their
// principals are far fewer. Past it, a new peer is UnknownPeer, so that
// whatever floods the cache cannot also flood the series.
const MaxPeers = 4096

// Peers interns peers by their endpoint metadata (or header value) and
// principal.
type Peers struct {
	m   sync.Map // peerKey → *Peer
	ids sync.Map // identityKey → *Peer
	n   atomic.Int64
}

type peerKey struct {
	meta, principal string
	header          bool // meta is an x-envoy-peer-metadata value
}

// Endpoint is the peer an endpoint's telemetry metadata describes, with
// that principal ("" for unknown).
func (c *Peers) Endpoint(meta, principal string) *Peer {
	k := peerKey{meta: meta, principal: principal}
	if v, ok := c.m.Load(k); ok {
		return v.(*Peer)
	}
	return c.store(k, func() (Workload, bool) { return ParseEndpointPeer(meta), true })
}

// Header is the peer an x-envoy-peer-metadata value describes, with that
// principal; a value that does not decode is UnknownPeer's workload.
func (c *Peers) Header(value, principal string) *Peer {
	k := peerKey{meta: value, principal: principal, header: true}
	if v, ok := c.m.Load(k); ok {
		return v.(*Peer)
	}
	return c.store(k, func() (Workload, bool) {
		w, err := DecodeHeader(value)
		return w, err == nil
	})
}

// Own is the peer for a proxy's own workload.
func (c *Peers) Own(w Workload, principal string) *Peer { return newPeer(w, principal) }

func (c *Peers) store(k peerKey, parse func() (Workload, bool)) *Peer {
	w, ok := parse()
	if !ok {
		w = Workload{}
	}
	if c.n.Load() >= MaxPeers {
		return UnknownPeer
	}
	p := newPeer(w, k.principal)
	if v, loaded := c.m.LoadOrStore(k, p); loaded {
		return v.(*Peer)
	}
	c.n.Add(1)
	return p
}

// The headers Istio's sidecars exchange their workload metadata in.
const (
	HeaderMetadata   = "X-Envoy-Peer-Metadata"
	HeaderMetadataID = "X-Envoy-Peer-Metadata-Id"
)

// EncodeHeader is a workload's x-envoy-peer-metadata value as Istio's
// sidecars send it: a base64 google.protobuf.Struct of the node metadata
// keys (NAMESPACE, WORKLOAD_NAME, CLUSTER_ID, LABELS with app, version
// and the canonical service labels). name is the pod's name (NAME).
func EncodeHeader(w Workload, name string) string {
	labels := map[string]any{}
	add := func(k, v string) {
		if v != "" && v != Unknown {
			labels[k] = v
		}
	}
	add("app", w.App)
	add("version", w.Version)
	add("service.istio.io/canonical-name", w.CanonicalService)
	add("service.istio.io/canonical-revision", w.CanonicalRevision)
	fields := map[string]any{"LABELS": labels}
	for k, v := range map[string]string{"NAME": name, "NAMESPACE": w.Namespace, "WORKLOAD_NAME": w.Name, "CLUSTER_ID": w.Cluster} {
		if v != "" && v != Unknown {
			fields[k] = v
		}
	}
	st, err := structpb.NewStruct(fields)
	if err != nil {
		return "" // unreachable: only strings and maps of strings
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

// DecodeHeader reads an x-envoy-peer-metadata value (EncodeHeader's, or
// an Istio sidecar's: the keys read are the same).
func DecodeHeader(v string) (Workload, error) {
	if len(v) > 8<<10 {
		return Workload{}, errors.New("peer metadata over 8 KiB")
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return Workload{}, err
	}
	var st structpb.Struct
	if err := proto.Unmarshal(b, &st); err != nil {
		return Workload{}, err
	}
	str := func(s *structpb.Struct, k string) string { return s.GetFields()[k].GetStringValue() }
	labels := st.GetFields()["LABELS"].GetStructValue()
	w := Workload{
		Name:      str(&st, "WORKLOAD_NAME"),
		Namespace: str(&st, "NAMESPACE"),
		Cluster:   str(&st, "CLUSTER_ID"),
		App:       cmp.Or(str(labels, "app"), str(labels, "app.kubernetes.io/name")),
		Version:   cmp.Or(str(labels, "version"), str(labels, "app.kubernetes.io/version")),
	}
	w.CanonicalService = cmp.Or(str(labels, "service.istio.io/canonical-name"), w.App, w.Name)
	w.CanonicalRevision = cmp.Or(str(labels, "service.istio.io/canonical-revision"), w.Version, "latest")
	return w, nil
}

type identityKey struct{ meta, trustDomain, ns, sa string }

// EndpointIdentity is Endpoint with the principal an endpoint's
// namespace and service account make (spiffe://TD/ns/NS/sa/SA), built
// only the first time.
func (c *Peers) EndpointIdentity(meta, trustDomain, ns, sa string) *Peer {
	k := identityKey{meta, trustDomain, ns, sa}
	if v, ok := c.ids.Load(k); ok {
		return v.(*Peer)
	}
	p := c.Endpoint(meta, "spiffe://"+trustDomain+"/ns/"+ns+"/sa/"+sa)
	if c.n.Load() < MaxPeers {
		c.ids.Store(k, p)
	}
	return p
}

// ClusterID is the cluster every workload is in, as Istio's labels name
// it (source_cluster, destination_cluster): Istio's default for a single
// cluster.
const ClusterID = "Kubernetes"

// WorkloadOf is the workload a pod with those labels is, as istiod
// derives Istio's labels: app from app (or app.kubernetes.io/name),
// version from version (or app.kubernetes.io/version), the canonical
// service from service.istio.io/canonical-name, else
// app.kubernetes.io/name, else app, else the workload's name, and the
// canonical revision from service.istio.io/canonical-revision, else
// app.kubernetes.io/version, else version, else "latest".
func WorkloadOf(name, namespace string, labels map[string]string) Workload {
	return Workload{
		Name: name, Namespace: namespace,
		App:               cmp.Or(labels["app"], labels["app.kubernetes.io/name"]),
		Version:           cmp.Or(labels["version"], labels["app.kubernetes.io/version"]),
		CanonicalService:  cmp.Or(labels["service.istio.io/canonical-name"], labels["app.kubernetes.io/name"], labels["app"], name),
		CanonicalRevision: cmp.Or(labels["service.istio.io/canonical-revision"], labels["app.kubernetes.io/version"], labels["version"], "latest"),
		Cluster:           ClusterID,
	}
}

// EndpointMetadata is the string ParseEndpointPeer reads: what the
// control plane puts on each endpoint for the sidecars that call it.
func (w Workload) EndpointMetadata() string {
	return strings.Join([]string{w.Name, w.Namespace, w.App, w.Version, w.CanonicalService, w.CanonicalRevision, w.Cluster}, ";")
}
