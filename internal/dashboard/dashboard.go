// Package dashboard is the web dashboard `trellis up` serves: the live
// service graph, per-service request rate, success rate and latency, each
// proxy's config versions and sync state, the policies in force per
// workload, and recent requests from the access logs.
//
// It needs no Prometheus: every couple of seconds it scrapes each
// sidecar's admin endpoint (/stats/prometheus, /config_dump, /ready) over
// the sidecar's admin Unix socket, keeps a few minutes of scrapes, and
// computes rates and quantiles from the counters' and histogram buckets'
// deltas, as rate() and histogram_quantile() would. The page is plain
// HTML, CSS and JS embedded in the binary, so it works offline.
package dashboard

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

//go:embed assets
var assets embed.FS

// Pod is one pod as the mesh knows it.
type Pod struct {
	Name, Namespace string
	// Workload is the pod's Deployment: what Istio's metrics call
	// source_workload / destination_workload.
	Workload string
	Labels   map[string]string
	// AdminSocket is the sidecar's admin Unix socket; "" without one.
	AdminSocket string
	// Connected, Synced, NACKs and LastNACK are the control plane's view.
	Connected, Synced bool
	NACKs             int
	LastNACK          string
	// ProxyLog is the file holding the sidecar's output (its access log
	// lines among it); "" when there is none.
	ProxyLog string
	// Policies are the config in force for the pod ("PeerAuthentication
	// istio-system/default (STRICT)").
	Policies []string
	// Created is when the pod started; zero when unknown. Its sidecar's
	// counters were zero then, so requests before the first scrape
	// still count.
	Created time.Time
}

// Source tells the dashboard what the mesh holds. It is called from the
// scrape loop and from HTTP handlers, concurrently.
type Source interface {
	Pods() []Pod
}

// Options configure Start.
type Options struct {
	// Addr to listen on; "127.0.0.1:0" (an ephemeral port) when empty.
	Addr   string
	Source Source
	// Interval between scrapes (2 s) and History kept (5 min).
	Interval, History time.Duration
	// Window is what rates and quantiles are computed over (1 min).
	Window time.Duration
	Log    *slog.Logger
	// Dial reaches a sidecar's admin socket (net.Dialer over "unix" when
	// nil); tests swap it.
	Dial func(ctx context.Context, socket string) (net.Conn, error)
}

// Server is a running dashboard.
type Server struct {
	opts   Options
	log    *slog.Logger
	lis    net.Listener
	http   *http.Server
	client *http.Client
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu      sync.Mutex
	scrapes map[string][]Scrape // by pod (NS/NAME), oldest first
	proxies map[string]ProxyInfo
}

// Start listens on opts.Addr and starts scraping; Close stops both.
func Start(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("dashboard: no Source")
	}
	opts.Addr = cmp.Or(opts.Addr, "127.0.0.1:0")
	opts.Interval = cmp.Or(opts.Interval, 2*time.Second)
	opts.History = cmp.Or(opts.History, 5*time.Minute)
	opts.Window = cmp.Or(opts.Window, time.Minute)
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dial := opts.Dial
	if dial == nil {
		dial = func(ctx context.Context, socket string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}
	}
	lis, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("cannot serve the dashboard on %s (%w): pick a free address with --dashboard-addr", opts.Addr, err)
	}
	s := &Server{
		opts: opts, log: log, lis: lis,
		scrapes: map[string][]Scrape{}, proxies: map[string]ProxyInfo{},
	}
	s.client = &http.Client{
		Timeout: 1500 * time.Millisecond,
		Transport: &http.Transport{
			// The URL's host is the admin socket's path (see adminURL).
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dial(ctx, socketOf(ctx))
			},
			// Every socket shares the URL host, so a pooled connection
			// could reach the wrong sidecar; Unix sockets are cheap.
			DisableKeepAlives: true,
		},
	}
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		if err := s.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("dashboard stopped serving", "err", err)
		}
	}()
	go func() {
		defer s.done.Done()
		s.loop(ctx)
	}()
	return s, nil
}

// URL is where the dashboard is, e.g. http://127.0.0.1:41234/.
func (s *Server) URL() string { return "http://" + s.lis.Addr().String() + "/" }

// Close stops the scrape loop and the HTTP server and waits for both.
func (s *Server) Close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	s.done.Wait()
	s.client.CloseIdleConnections()
	return err
}

func (s *Server) loop(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		s.ScrapeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type socketKey struct{}

func socketOf(ctx context.Context) string {
	v, _ := ctx.Value(socketKey{}).(string)
	return v
}

// ProxyInfo is one sidecar's config and sync state.
type ProxyInfo struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	// Versions are the config_dump's versions by resource type.
	Versions  map[string]string `json:"versions"`
	Ready     bool              `json:"ready"`
	ReadyText string            `json:"readyText"`
	Connected bool              `json:"connected"`
	Synced    bool              `json:"synced"`
	NACKs     int               `json:"nacks"`
	LastNACK  string            `json:"lastNACK,omitempty"`
	// Error says why the last scrape failed; "" when it worked.
	Error     string    `json:"error,omitempty"`
	ScrapedAt time.Time `json:"scrapedAt"`
}

// ScrapeOnce scrapes every sidecar once, in parallel.
func (s *Server) ScrapeOnce(ctx context.Context) {
	pods := s.opts.Source.Pods()
	var wg sync.WaitGroup
	for _, p := range pods {
		if p.AdminSocket == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.scrapePod(ctx, p)
		}()
	}
	wg.Wait()
	// Forget pods that are gone.
	live := map[string]bool{}
	for _, p := range pods {
		live[p.Namespace+"/"+p.Name] = true
	}
	s.mu.Lock()
	for k := range s.scrapes {
		if !live[k] {
			delete(s.scrapes, k)
		}
	}
	for k := range s.proxies {
		if !live[k] {
			delete(s.proxies, k)
		}
	}
	s.mu.Unlock()
}

func (s *Server) get(ctx context.Context, socket, path string) ([]byte, int, error) {
	ctx = context.WithValue(ctx, socketKey{}, socket)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin"+path, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return b, resp.StatusCode, err
}

func (s *Server) scrapePod(ctx context.Context, p Pod) {
	key := p.Namespace + "/" + p.Name
	now := time.Now()
	info := ProxyInfo{
		Pod: p.Name, Namespace: p.Namespace, Workload: p.Workload,
		Connected: p.Connected, Synced: p.Synced, NACKs: p.NACKs, LastNACK: p.LastNACK,
		ScrapedAt: now, Versions: map[string]string{},
	}
	var errs []string
	if b, code, err := s.get(ctx, p.AdminSocket, "/ready"); err != nil {
		errs = append(errs, "ready: "+err.Error())
	} else {
		info.Ready, info.ReadyText = code == http.StatusOK, strings.TrimSpace(string(b))
	}
	if b, code, err := s.get(ctx, p.AdminSocket, "/config_dump"); err == nil && code == http.StatusOK {
		var dump map[string]struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal(b, &dump); err == nil {
			for t, d := range dump {
				info.Versions[t] = d.Version
			}
		}
	} else if err != nil {
		errs = append(errs, "config_dump: "+err.Error())
	}
	var scrape *Scrape
	if b, code, err := s.get(ctx, p.AdminSocket, "/stats/prometheus"); err != nil {
		errs = append(errs, "stats: "+err.Error())
	} else if code != http.StatusOK {
		errs = append(errs, fmt.Sprintf("stats: status %d", code))
	} else {
		samples, err := ParseProm(strings.NewReader(string(b)))
		if err != nil {
			errs = append(errs, "stats: "+err.Error())
		}
		sc := Aggregate(now, samples)
		scrape = &sc
	}
	info.Error = strings.Join(errs, "; ")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proxies[key] = info
	if scrape != nil {
		ring := s.scrapes[key]
		if len(ring) == 0 && !p.Created.IsZero() && p.Created.Before(now) {
			// The dashboard runs for the mesh's whole life, so every
			// sidecar it meets started after it, counting from zero:
			// requests sent before its first scrape (a burst right
			// after "mesh ready") belong in the window too.
			ring = append(ring, Scrape{At: p.Created, Edges: map[EdgeKey]*counters{}})
		}
		ring = append(ring, *scrape)
		cut := 0
		for cut < len(ring) && now.Sub(ring[cut].At) > s.opts.History {
			cut++
		}
		s.scrapes[key] = slices.Clone(ring[cut:])
	}
}

// window is every proxy's edges over the last d, summed by edge.
func (s *Server) window(d time.Duration) (map[EdgeKey]delta, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[EdgeKey]delta{}
	var span float64
	now := time.Now()
	for _, ring := range s.scrapes {
		i := len(ring)
		for i > 0 && now.Sub(ring[i-1].At) <= d {
			i--
		}
		// One scrape before the window gives its first delta.
		if i > 0 {
			i--
		}
		w, secs := Window(ring[i:])
		span = max(span, secs)
		for k, v := range w {
			x := out[k]
			x.add(v)
			out[k] = x
		}
	}
	return out, span
}

// Handler serves the page and the JSON APIs.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/graph", s.apiGraph)
	mux.HandleFunc("GET /api/services", s.apiServices)
	mux.HandleFunc("GET /api/proxies", s.apiProxies)
	mux.HandleFunc("GET /api/policies", s.apiPolicies)
	mux.HandleFunc("GET /api/requests", s.apiRequests)
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(v)
}

// Node is a workload in the graph.
type Node struct {
	ID        string `json:"id"` // NS/WORKLOAD
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	Pods      int    `json:"pods"`
	// Inbound is the traffic the workload received.
	Inbound Stats `json:"inbound"`
}

// Edge is traffic between two workloads.
type Edge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
	Stats
}

// Graph is /api/graph.
type Graph struct {
	Nodes         []Node  `json:"nodes"`
	Edges         []Edge  `json:"edges"`
	WindowSeconds float64 `json:"windowSeconds"`
}

func nodeID(ns, wl string) string {
	if wl == "" || wl == "unknown" {
		return "unknown"
	}
	return ns + "/" + wl
}

// preferred keeps, for each edge, one reporter's view, as Kiali does:
// the source's (it also counts requests that never reached the
// destination: faults, timeouts, no healthy upstream), else the
// destination's when the caller has no sidecar. Summing both would count
// each request twice. Only the destination knows the connection was
// mutual TLS, so its mTLS flag is carried over.
func preferred(all map[EdgeKey]delta) map[EdgeKey]delta {
	type pair struct{ src, dst, svc, proto string }
	pairOf := func(k EdgeKey) pair {
		return pair{nodeID(k.SourceNS, k.Source), nodeID(k.DestNS, k.Dest), k.DestServiceNS + "/" + k.DestService, k.Protocol}
	}
	hasSource, mtls := map[pair]bool{}, map[pair]bool{}
	for k, v := range all {
		switch k.Reporter {
		case "source":
			hasSource[pairOf(k)] = true
		case "destination":
			mtls[pairOf(k)] = mtls[pairOf(k)] || v.mtls
		}
	}
	all = resolveDestinations(all)
	out := map[EdgeKey]delta{}
	for k, v := range all {
		p := pairOf(k)
		if k.Reporter == "source" || !hasSource[p] {
			v.mtls = v.mtls || mtls[p]
			out[k] = v
		}
	}
	return out
}

// resolveDestinations gives a request its service's workload when its
// reporter could not name one: a request the source's sidecar failed
// before picking an endpoint (a fault abort, no healthy upstream) has
// destination_workload "unknown", as in Istio, but a known service. When
// one workload serves that service, the request is that workload's, so
// the failure shows on the edge it belongs to.
func resolveDestinations(all map[EdgeKey]delta) map[EdgeKey]delta {
	type svc struct{ ns, name string }
	workloads := map[svc]map[EdgeKey]bool{}
	for k := range all {
		if k.Dest == "" || k.Dest == "unknown" || k.DestService == "" || k.DestService == "unknown" {
			continue
		}
		s := svc{k.DestServiceNS, k.DestService}
		if workloads[s] == nil {
			workloads[s] = map[EdgeKey]bool{}
		}
		workloads[s][EdgeKey{DestNS: k.DestNS, Dest: k.Dest}] = true
	}
	out := make(map[EdgeKey]delta, len(all))
	for k, v := range all {
		if k.Dest == "" || k.Dest == "unknown" {
			if ws := workloads[svc{k.DestServiceNS, k.DestService}]; len(ws) == 1 {
				for w := range ws {
					k.DestNS, k.Dest = w.DestNS, w.Dest
				}
			}
		}
		x := out[k]
		x.add(v)
		out[k] = x
	}
	return out
}

// BuildGraph is the graph of the pods and the traffic in the window.
func BuildGraph(pods []Pod, edges map[EdgeKey]delta, secs float64) Graph {
	g := Graph{WindowSeconds: secs, Nodes: []Node{}, Edges: []Edge{}}
	nodes := map[string]*Node{}
	node := func(ns, wl string) *Node {
		id := nodeID(ns, wl)
		n := nodes[id]
		if n == nil {
			n = &Node{ID: id, Namespace: ns, Workload: wl}
			if id == "unknown" {
				n.Namespace, n.Workload = "", "unknown"
			}
			nodes[id] = n
		}
		return n
	}
	for _, p := range pods {
		node(p.Namespace, cmp.Or(p.Workload, p.Name)).Pods++
	}
	type ek struct{ src, dst, proto string }
	byEdge := map[ek]delta{}
	inbound := map[string]delta{}
	for k, v := range preferred(edges) {
		src, dst := node(k.SourceNS, k.Source), node(k.DestNS, k.Dest)
		e := ek{src.ID, dst.ID, k.Protocol}
		d := byEdge[e]
		d.add(v)
		byEdge[e] = d
		in := inbound[dst.ID]
		in.add(v)
		inbound[dst.ID] = in
	}
	for id, d := range inbound {
		nodes[id].Inbound = d.stats(secs)
	}
	for e, d := range byEdge {
		g.Edges = append(g.Edges, Edge{Source: e.src, Target: e.dst, Protocol: e.proto, Stats: d.stats(secs)})
	}
	for _, n := range nodes {
		g.Nodes = append(g.Nodes, *n)
	}
	sort.Slice(g.Nodes, func(i, j int) bool { return g.Nodes[i].ID < g.Nodes[j].ID })
	sort.Slice(g.Edges, func(i, j int) bool {
		a, b := g.Edges[i], g.Edges[j]
		return a.Source+" "+a.Target+" "+a.Protocol < b.Source+" "+b.Target+" "+b.Protocol
	})
	return g
}

func (s *Server) apiGraph(w http.ResponseWriter, _ *http.Request) {
	edges, secs := s.window(s.opts.Window)
	writeJSON(w, BuildGraph(s.opts.Source.Pods(), edges, secs))
}

// Service is one destination service's figures, /api/services.
type Service struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Workloads []string `json:"workloads"`
	Stats
}

// BuildServices sums the window's traffic by destination service.
func BuildServices(edges map[EdgeKey]delta, secs float64) []Service {
	type sk struct{ ns, name string }
	by := map[sk]delta{}
	wls := map[sk]map[string]bool{}
	for k, v := range preferred(edges) {
		if k.DestService == "" || k.DestService == "unknown" {
			continue
		}
		key := sk{k.DestServiceNS, k.DestService}
		d := by[key]
		d.add(v)
		by[key] = d
		if wls[key] == nil {
			wls[key] = map[string]bool{}
		}
		if k.Dest != "" && k.Dest != "unknown" {
			wls[key][k.Dest] = true
		}
	}
	out := []Service{}
	for k, d := range by {
		sv := Service{Name: k.name, Namespace: k.ns, Stats: d.stats(secs), Workloads: []string{}}
		for wl := range wls[k] {
			sv.Workloads = append(sv.Workloads, wl)
		}
		sort.Strings(sv.Workloads)
		out = append(out, sv)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

func (s *Server) apiServices(w http.ResponseWriter, _ *http.Request) {
	edges, secs := s.window(s.opts.Window)
	writeJSON(w, map[string]any{"services": BuildServices(edges, secs), "windowSeconds": secs})
}

func (s *Server) apiProxies(w http.ResponseWriter, _ *http.Request) {
	pods := s.opts.Source.Pods()
	s.mu.Lock()
	out := []ProxyInfo{}
	for _, p := range pods {
		if p.AdminSocket == "" {
			continue
		}
		info, ok := s.proxies[p.Namespace+"/"+p.Name]
		if !ok {
			info = ProxyInfo{Pod: p.Name, Namespace: p.Namespace, Workload: p.Workload, Versions: map[string]string{}, Error: "not scraped yet"}
		}
		// The control plane's view is fresher than the last scrape.
		info.Connected, info.Synced, info.NACKs, info.LastNACK = p.Connected, p.Synced, p.NACKs, p.LastNACK
		out = append(out, info)
	}
	s.mu.Unlock()
	writeJSON(w, map[string]any{"proxies": out})
}

// WorkloadPolicies are the policies in force for one workload.
type WorkloadPolicies struct {
	Namespace string   `json:"namespace"`
	Workload  string   `json:"workload"`
	Policies  []string `json:"policies"`
}

func (s *Server) apiPolicies(w http.ResponseWriter, _ *http.Request) {
	seen := map[string]bool{}
	out := []WorkloadPolicies{}
	for _, p := range s.opts.Source.Pods() {
		wl := cmp.Or(p.Workload, p.Name)
		if seen[p.Namespace+"/"+wl] {
			continue
		}
		seen[p.Namespace+"/"+wl] = true
		out = append(out, WorkloadPolicies{Namespace: p.Namespace, Workload: wl, Policies: append([]string{}, p.Policies...)})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Workload < out[j].Namespace+"/"+out[j].Workload
	})
	writeJSON(w, map[string]any{"workloads": out})
}

func (s *Server) apiRequests(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"requests": RecentRequests(s.opts.Source.Pods(), 100)})
}
