package xds

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unique"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/translate"
)

// Trellis serves incremental (delta) ADS itself rather than through
// go-control-plane's snapshot cache. That cache keeps, per stream, a map of
// every resource name to its version and, per push, walks it for every
// client; with a thousand sidecars of a thousand-service mesh it costs
// about a megabyte and a millisecond per client. Here a client's state is
// the pair of layers (shared per scope, local per proxy) it was last
// brought to, and diff(from, to) is computed and packed once per scope, so
// a push costs one small diff plus a send per client.

// maxResponseBytes bounds one response's packed resources, so that a very
// large state goes out in several responses rather than one message over
// what clients accept (Trellis's proxy takes up to 64 MiB). It is well
// above a 1,000-service mesh's ~3 MB because a client applies each
// response as it comes: a split initial state is briefly partial.
var maxResponseBytes = 16 << 20

// layerDiff is what a client in sync with one layer needs to reach another.
type layerDiff struct {
	resources []*discoverygrpc.Resource // sorted by name
	removed   []string
	// enc holds the resources encoded as a delta response's resources
	// field, back to back: resources[j] is enc[ends[j-1]:ends[j]] (from 0
	// for j = 0). Every stream sends these bytes, never its own copy (see
	// codec.go).
	enc  []byte
	ends []int
}

// newDiff encodes the resources of a diff.
func newDiff(res []*discoverygrpc.Resource, removed []string) *layerDiff {
	d := &layerDiff{resources: res, removed: removed, ends: make([]int, len(res))}
	size := 0
	for _, r := range res {
		size += proto.Size(r) + 8 // tag and length
	}
	d.enc = make([]byte, 0, size)
	for j, r := range res {
		d.enc = appendResource(d.enc, r)
		d.ends[j] = len(d.enc)
	}
	return d
}

// span returns resources [from, to) encoded.
func (d *layerDiff) span(from, to int) []byte {
	start := 0
	if from > 0 {
		start = d.ends[from-1]
	}
	return d.enc[start:d.ends[to-1]:d.ends[to-1]]
}

// size is resource j's encoded size.
func (d *layerDiff) size(j int) int { return len(d.span(j, j+1)) }

// find returns the index of the named resource, or -1.
func (d *layerDiff) find(name string) int {
	j, ok := slices.BinarySearchFunc(d.resources, name, func(r *discoverygrpc.Resource, n string) int {
		return strings.Compare(r.GetName(), n)
	})
	if !ok {
		return -1
	}
	return j
}

// piece is a run of consecutive resources of one diff that a stream sends.
type piece struct {
	d        *layerDiff
	from, to int
}

// selection is what one stream sends, as runs of shared diffs: a
// wildcard client's initial state is one piece per layer.
type selection []piece

// add appends resource j of d, extending the last piece when it is
// adjacent.
func (s *selection) add(d *layerDiff, j int) {
	if n := len(*s); n > 0 && (*s)[n-1].d == d && (*s)[n-1].to == j {
		(*s)[n-1].to++
		return
	}
	*s = append(*s, piece{d: d, from: j, to: j + 1})
}

// diffFrom returns what changes from `from` (nil: nothing known) to l.
// Diffs are cached by the from layer's version, not its pointer: a pointer
// key would keep every earlier layer (and, through its cache, the one
// before it) alive for as long as the newest layer lives.
func (l *layer) diffFrom(from *layer) *layerDiff {
	key := "\x00none" // no layer: nothing known; no real version looks like this
	if from != nil {
		key = from.version
	}
	if d, ok := l.diffs.Load(key); ok {
		return d.(*layerDiff)
	}
	var res []*discoverygrpc.Resource
	var removed []string
	for n, v := range l.versions {
		if from == nil || from.versions[n] != v {
			res = append(res, l.wire[n])
		}
	}
	if from != nil {
		for n := range from.versions {
			if _, ok := l.versions[n]; !ok {
				removed = append(removed, n)
			}
		}
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
	sort.Strings(removed)
	actual, _ := l.diffs.LoadOrStore(key, newDiff(res, removed))
	return actual.(*layerDiff)
}

// deltaType is one stream's state for one resource type.
type deltaType struct {
	started  bool
	wildcard bool
	subs     nameSet // explicitly subscribed names
	// sentShared/sentLocal are the layers the client was last brought to.
	sentShared, sentLocal *layer
}

func (t *deltaType) wants(name string) bool {
	if t.wildcard {
		return true
	}
	return t.subs.has(name)
}

// nameSet is a set of resource names, kept small because there is one per
// stream and type: Envoy subscribes to every cluster's endpoints by name,
// so each sidecar of a 1,000-service mesh holds 2,000 names. Names are
// interned, so the sidecars of a mesh share one copy of each (the
// request's own strings, ~45 bytes each, would otherwise stay alive per
// sidecar), and held in a sorted slice of 8-byte handles (a map costs
// about four times as much per name).
type nameSet struct {
	hs []unique.Handle[string] // sorted by name
}

func compareHandles(a, b unique.Handle[string]) int { return strings.Compare(a.Value(), b.Value()) }

func (s *nameSet) find(name string) (int, bool) {
	return slices.BinarySearchFunc(s.hs, name, func(h unique.Handle[string], n string) int {
		return strings.Compare(h.Value(), n)
	})
}

func (s *nameSet) has(name string) bool {
	_, ok := s.find(name)
	return ok
}

// all yields every name, in order.
func (s *nameSet) all(yield func(string) bool) {
	for _, h := range s.hs {
		if !yield(h.Value()) {
			return
		}
	}
}

// add inserts names and returns those that were new, each once, in the
// order given.
func (s *nameSet) add(names []string) (added []string) {
	var fresh []unique.Handle[string]
	for _, n := range names {
		if !s.has(n) {
			fresh = append(fresh, unique.Make(n))
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	sorted := slices.Clone(fresh)
	slices.SortFunc(sorted, compareHandles)
	sorted = slices.Compact(sorted)
	seen := map[unique.Handle[string]]bool(nil)
	if len(sorted) < len(fresh) {
		seen = make(map[unique.Handle[string]]bool, len(sorted))
	}
	for _, h := range fresh {
		if seen != nil {
			if seen[h] {
				continue
			}
			seen[h] = true
		}
		added = append(added, h.Value())
	}
	// Merge into an exactly sized slice: a set lives as long as its stream.
	merged := make([]unique.Handle[string], 0, len(s.hs)+len(sorted))
	i, j := 0, 0
	for i < len(s.hs) && j < len(sorted) {
		if s.hs[i].Value() < sorted[j].Value() {
			merged = append(merged, s.hs[i])
			i++
		} else {
			merged = append(merged, sorted[j])
			j++
		}
	}
	merged = append(merged, s.hs[i:]...)
	merged = append(merged, sorted[j:]...)
	s.hs = merged
	return added
}

// remove deletes names; absent ones are ignored.
func (s *nameSet) remove(names []string) {
	if len(names) == 0 || len(s.hs) == 0 {
		return // every ACK comes this way
	}
	drop := make(map[int]bool, len(names))
	for _, n := range names {
		if i, ok := s.find(n); ok {
			drop[i] = true
		}
	}
	if len(drop) == 0 {
		return
	}
	kept := make([]unique.Handle[string], 0, len(s.hs)-len(drop))
	for i, h := range s.hs {
		if !drop[i] {
			kept = append(kept, h)
		}
	}
	s.hs = kept
}

// deltaConn serves one DeltaAggregatedResources stream.
type deltaConn struct {
	st     *streams
	log    *slog.Logger
	stream discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	ps     *proxyState
	id     int64
	nonce  int
	types  [numTypes]deltaType
}

func (s *Server) serveDelta(stream discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ctx := stream.Context()
	reqs := make(chan *discoverygrpc.DeltaDiscoveryRequest)
	recvErr := make(chan error, 1)
	// The receiver ends when the stream does: returning from this handler
	// cancels ctx and makes Recv fail.
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()

	ds := &deltaConn{st: s.streams, log: s.log, stream: stream, id: s.streams.streamID.Add(1)}
	var notify chan struct{}
	defer func() {
		if ds.ps != nil {
			s.streams.detach(ds.ps, notify)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case req := <-reqs:
			if ds.ps == nil {
				p, err := ParseNode(req.GetNode())
				if err != nil {
					s.log.Warn("refusing xDS stream", "err", err)
					return status.Error(codes.InvalidArgument, err.Error())
				}
				ds.ps, notify = s.attach(p)
			}
			if err := ds.handle(req); err != nil {
				return err
			}
		case <-notify:
			ds.ps.mu.Lock()
			u := ds.ps.updates
			ds.ps.mu.Unlock()
			for i := range ds.types {
				if err := ds.push(i); err != nil {
					return err
				}
			}
			ds.ps.mu.Lock()
			ds.ps.handled = max(ds.ps.handled, u)
			ds.ps.mu.Unlock()
		}
	}
}

// attach registers a delta stream, brings its proxy to the current world
// and returns the stream's change notifications.
func (s *Server) attach(p *translate.Proxy) (*proxyState, chan struct{}) {
	ps := s.streams.register(p)
	ch := make(chan struct{}, 1)
	ps.mu.Lock()
	ps.watchers[ch] = struct{}{}
	ps.mu.Unlock()
	s.log.Info("proxy connected", "proxy", p.ID, "namespace", p.Namespace, "generator", string(p.Generator), "protocol", "delta")
	// Read after registering: a push that makes a newer world then either
	// lists this proxy or is the world read here (see Push).
	w, gen := s.scopes.current()
	s.refresh(ps, w, gen)
	return ps, ch
}

// detach drops a delta stream.
func (st *streams) detach(ps *proxyState, ch chan struct{}) {
	ps.mu.Lock()
	delete(ps.watchers, ch)
	ps.mu.Unlock()
	st.mu.Lock()
	st.releaseLocked(ps)
	st.mu.Unlock()
}

func (ds *deltaConn) handle(req *discoverygrpc.DeltaDiscoveryRequest) error {
	i := typeIndex(req.GetTypeUrl())
	if i < 0 {
		ds.log.Debug("ignoring subscription to a type Trellis does not serve", "type", req.GetTypeUrl())
		return nil
	}
	ps := ds.ps
	if req.GetResponseNonce() != "" {
		if req.GetErrorDetail() != nil {
			ds.st.nack(ps, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail().GetCode())
		} else {
			ps.ack(req.GetTypeUrl(), req.GetResponseNonce())
		}
	}

	t := &ds.types[i]
	first := !t.started
	t.started = true
	var added, names []string
	for _, n := range req.GetResourceNamesSubscribe() {
		if n == "*" {
			if !t.wildcard {
				t.wildcard = true
				added = append(added, "*")
			}
			continue
		}
		names = append(names, n)
	}
	added = append(added, t.subs.add(names)...)
	names = names[:0]
	for _, n := range req.GetResourceNamesUnsubscribe() {
		if n == "*" {
			t.wildcard = false
		} else {
			names = append(names, n)
		}
	}
	t.subs.remove(names)
	if first && len(req.GetResourceNamesSubscribe()) == 0 {
		t.wildcard = true // legacy wildcard: a first request naming nothing
	}
	if first {
		return ds.sendInitial(i, req.GetInitialResourceVersions())
	}
	if len(added) > 0 {
		return ds.sendAdded(i, added)
	}
	return nil
}

// sendInitial brings a type from nothing (or from what the client says it
// has, after a reconnect) to the current layers.
func (ds *deltaConn) sendInitial(i int, known map[string]string) error {
	t := &ds.types[i]
	shared, local := ds.ps.current(i)
	var sel selection
	var removed []string
	for _, l := range []*layer{shared, local} {
		d := l.diffFrom(nil)
		for j, r := range d.resources {
			if t.wants(r.Name) && known[r.Name] != r.Version {
				sel.add(d, j)
			}
		}
	}
	for n := range known {
		if shared.versions[n] == "" && local.versions[n] == "" {
			removed = append(removed, n)
		}
	}
	// Explicitly requested names that do not exist are reported removed,
	// so the client stops waiting for them.
	for n := range t.subs.all {
		if shared.versions[n] == "" && local.versions[n] == "" && known[n] == "" {
			removed = append(removed, n)
		}
	}
	t.sentShared, t.sentLocal = shared, local
	// After a control plane restart every proxy asks at once. The bytes of
	// an initial state are shared (a response in flight holds only slices
	// of them), but selecting and queueing thousands of resources per
	// stream is CPU, so only a few are prepared at a time (Istio limits
	// concurrent pushes the same way).
	select {
	case ds.st.initialSends <- struct{}{}:
	case <-ds.stream.Context().Done():
		return ds.stream.Context().Err()
	}
	defer func() { <-ds.st.initialSends }()
	// Always answer the first request, even with nothing, so the client
	// can finish initialising.
	return ds.send(i, shared, local, sel, removed, true)
}

// sendAdded answers new explicit subscriptions.
func (ds *deltaConn) sendAdded(i int, names []string) error {
	t := &ds.types[i]
	if t.sentShared == nil {
		return nil
	}
	if err := ds.push(i); err != nil { // first bring the type up to date
		return err
	}
	var sel selection
	var removed []string
	shared, local := t.sentShared.diffFrom(nil), t.sentLocal.diffFrom(nil)
	for _, n := range names {
		if n == "*" {
			for _, d := range []*layerDiff{shared, local} {
				if len(d.resources) > 0 {
					sel = append(sel, piece{d: d, from: 0, to: len(d.resources)})
				}
			}
			continue
		}
		if j := shared.find(n); j >= 0 {
			sel.add(shared, j)
		} else if j := local.find(n); j >= 0 {
			sel.add(local, j)
		} else {
			removed = append(removed, n)
		}
	}
	return ds.send(i, t.sentShared, t.sentLocal, sel, removed, false)
}

// push sends what changed in type i since the client was last brought up
// to date.
func (ds *deltaConn) push(i int) error {
	t := &ds.types[i]
	if !t.started {
		return nil
	}
	shared, local := ds.ps.current(i)
	if shared == t.sentShared && local == t.sentLocal {
		return nil
	}
	var sel selection
	var removed []string
	for _, pair := range [][2]*layer{{t.sentShared, shared}, {t.sentLocal, local}} {
		from, to := pair[0], pair[1]
		if from == to {
			continue
		}
		d := to.diffFrom(from)
		for j, r := range d.resources {
			if t.wants(r.Name) {
				sel.add(d, j)
			}
		}
		for _, n := range d.removed {
			if t.wants(n) {
				removed = append(removed, n)
			}
		}
	}
	t.sentShared, t.sentLocal = shared, local
	return ds.send(i, shared, local, sel, removed, false)
}

// send writes one or more responses (large states are split). Each
// response refers to the diffs' shared bytes (see codec.go).
func (ds *deltaConn) send(i int, shared, local *layer, sel selection, removed []string, always bool) error {
	if len(sel) == 0 && len(removed) == 0 && !always {
		return nil
	}
	version := shared.version + "." + local.version
	start := time.Now()
	for {
		var res []*discoverygrpc.Resource
		var runs [][]byte
		size := 0
		for len(sel) > 0 {
			p := &sel[0]
			j := p.from
			for j < p.to {
				n := p.d.size(j)
				if size > 0 && size+n > maxResponseBytes {
					break
				}
				size += n
				j++
			}
			if j > p.from {
				runs = append(runs, p.d.span(p.from, j))
				res = append(res, p.d.resources[p.from:j]...)
				p.from = j
			}
			if p.from < p.to {
				break // this response is full
			}
			sel = sel[1:]
		}
		ds.nonce++
		resp := &discoverygrpc.DeltaDiscoveryResponse{
			SystemVersionInfo: version,
			TypeUrl:           typeURLs[i],
			Resources:         res,
			Nonce:             strconv.FormatInt(ds.id, 36) + "-" + strconv.Itoa(ds.nonce),
		}
		if len(sel) == 0 {
			resp.RemovedResources = removed
		}
		msg, err := encode(resp, runs)
		if err != nil {
			ds.st.m.internalErrors.Inc()
			return fmt.Errorf("encoding %s for %s: %w", typeURLs[i], ds.ps.proxy.ID, err)
		}
		ds.ps.sentNonce(typeURLs[i], resp.Nonce)
		sendStart := time.Now()
		if err := ds.stream.SendMsg(msg); err != nil {
			return fmt.Errorf("sending %s to %s: %w", typeURLs[i], ds.ps.proxy.ID, err)
		}
		ds.st.m.sent(i, time.Since(start), time.Since(sendStart))
		if len(sel) == 0 {
			return nil
		}
	}
}
