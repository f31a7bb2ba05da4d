package metrics

import (
	"cmp"
	"encoding/base64"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
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
// keys (NAME, NAMESPACE, WORKLOAD_NAME, CLUSTER_ID, and LABELS with app,
// version and the canonical service labels). name is the pod's name.
// The Struct is written with protowire, as the proxy decodes xDS: the
// sidecar links no protobuf runtime.
func EncodeHeader(w Workload, name string) string {
	labels := map[string]string{}
	add := func(m map[string]string, k, v string) {
		if v != "" && v != Unknown {
			m[k] = v
		}
	}
	add(labels, "app", w.App)
	add(labels, "version", w.Version)
	add(labels, "service.istio.io/canonical-name", w.CanonicalService)
	add(labels, "service.istio.io/canonical-revision", w.CanonicalRevision)
	top := map[string]string{}
	add(top, "NAME", name)
	add(top, "NAMESPACE", w.Namespace)
	add(top, "WORKLOAD_NAME", w.Name)
	add(top, "CLUSTER_ID", w.Cluster)
	b := appendStructEntry(nil, "LABELS", valueStruct(appendStringStruct(nil, labels)))
	for _, k := range slices.Sorted(maps.Keys(top)) {
		b = appendStructEntry(b, k, valueString(top[k]))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// google.protobuf.Struct's and Value's field numbers.
const (
	structFields      = 1 // Struct.fields: map<string, Value>
	mapKey, mapValue  = 1, 2
	valueStringNumber = 3 // Value.string_value
	valueStructNumber = 5 // Value.struct_value
)

func appendStringStruct(b []byte, m map[string]string) []byte {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b = appendStructEntry(b, k, valueString(m[k]))
	}
	return b
}

func valueString(s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, valueStringNumber, protowire.BytesType), s)
}

func valueStruct(st []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, valueStructNumber, protowire.BytesType), st)
}

func appendStructEntry(b []byte, key string, value []byte) []byte {
	var e []byte
	e = protowire.AppendString(protowire.AppendTag(e, mapKey, protowire.BytesType), key)
	e = protowire.AppendBytes(protowire.AppendTag(e, mapValue, protowire.BytesType), value)
	return protowire.AppendBytes(protowire.AppendTag(b, structFields, protowire.BytesType), e)
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
	top := map[string]string{}
	labels := map[string]string{}
	err = readStruct(b, func(key string, value []byte) error {
		return readValue(value, func(s string) { top[key] = s }, func(st []byte) error {
			if key != "LABELS" {
				return nil
			}
			return readStruct(st, func(k string, lv []byte) error {
				return readValue(lv, func(s string) { labels[k] = s }, func([]byte) error { return nil })
			})
		})
	})
	if err != nil {
		return Workload{}, err
	}
	w := Workload{
		Name:      top["WORKLOAD_NAME"],
		Namespace: top["NAMESPACE"],
		Cluster:   top["CLUSTER_ID"],
		App:       cmp.Or(labels["app"], labels["app.kubernetes.io/name"]),
		Version:   cmp.Or(labels["version"], labels["app.kubernetes.io/version"]),
	}
	w.CanonicalService = cmp.Or(labels["service.istio.io/canonical-name"], w.App, w.Name)
	w.CanonicalRevision = cmp.Or(labels["service.istio.io/canonical-revision"], w.Version, "latest")
	return w, nil
}

var errMalformed = errors.New("malformed google.protobuf.Struct")

// readStruct calls f with each key and encoded Value of a Struct.
func readStruct(b []byte, f func(key string, value []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if num != structFields || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errMalformed
			}
			b = b[n:]
			continue
		}
		e, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		var key string
		var value []byte
		for len(e) > 0 {
			num, typ, n := protowire.ConsumeTag(e)
			if n < 0 {
				return errMalformed
			}
			e = e[n:]
			if typ != protowire.BytesType {
				if n = protowire.ConsumeFieldValue(num, typ, e); n < 0 {
					return errMalformed
				}
				e = e[n:]
				continue
			}
			v, n := protowire.ConsumeBytes(e)
			if n < 0 {
				return errMalformed
			}
			e = e[n:]
			switch num {
			case mapKey:
				key = string(v)
			case mapValue:
				value = v
			}
		}
		if err := f(key, value); err != nil {
			return err
		}
	}
	return nil
}

// readValue calls str for a string Value and st for a Struct one; other
// kinds are skipped.
func readValue(b []byte, str func(string), st func([]byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == valueStringNumber || num == valueStructNumber) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errMalformed
			}
			b = b[n:]
			if num == valueStringNumber {
				str(string(v))
			} else if err := st(v); err != nil {
				return err
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return errMalformed
		}
		b = b[n:]
	}
	return nil
}

// Upstream is the workload an endpoint with that telemetry metadata is,
// as the caller self labels it: when the call went over mesh mTLS (the
// endpoint runs a sidecar, meshTLS, and has a service account, and self
// has a SPIFFE ID) with the principal its certificate proves, in self's
// trust domain; otherwise with none.
func (c *Peers) Upstream(self *Peer, meta, ns, sa string, meshTLS bool) *Peer {
	if meshTLS && sa != "" {
		if td, ok := trustDomain(self.Principal); ok {
			return c.EndpointIdentity(meta, td, ns, sa)
		}
	}
	return c.Endpoint(meta, "")
}

// trustDomain is the trust domain of a SPIFFE ID
// (spiffe://TD/ns/NS/sa/SA), without parsing it as a URL.
func trustDomain(principal string) (string, bool) {
	rest, ok := strings.CutPrefix(principal, "spiffe://")
	if !ok {
		return "", false
	}
	td, _, _ := strings.Cut(rest, "/")
	return td, td != ""
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
