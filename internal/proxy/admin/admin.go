package admin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	// Imported for its handlers, which are mounted on the admin mux below.
	// Its init also registers them on http.DefaultServeMux; nothing in the
	// proxy serves that mux, so they are not exposed there.
	"net/http/pprof"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Source is what the proxy exposes to the admin and health servers. Its
// methods are called from HTTP handlers, concurrently with each other and
// with the proxy's own work.
type Source interface {
	// Ready reports whether config was received for every resource type
	// and the listeners are up; reason says what is missing when not.
	Ready() (ok bool, reason string)
	// ConfigDump returns the applied config with its versions. It must
	// marshal to a JSON object keyed by resource type (e.g. "listeners",
	// "clusters"), because ?resource= selects one of those keys; putting
	// each type's version inside its value keeps it in a filtered dump.
	ConfigDump() any
	// Clusters returns every upstream cluster with its endpoints.
	Clusters() []Cluster
	// WriteStats writes all stats in format "text" (Envoy-like
	// "name: value" lines) or "prometheus" (text exposition format).
	WriteStats(w io.Writer, format string) error
	// Drain starts a graceful drain and returns once it has started; ctx
	// bounds starting it, not the drain itself.
	Drain(ctx context.Context) error
	// Quit starts draining and exiting and returns without waiting: the
	// admin server is among what it stops, and it cannot stop while the
	// /quitquitquit handler that called Quit is still running.
	Quit()
}

// Cluster is one upstream cluster as /clusters shows it.
type Cluster struct {
	Name      string     `json:"name"`
	Endpoints []Endpoint `json:"endpoints"`
	// Counters are cluster-wide (e.g. upstream_rq_total); a map so the
	// proxy can add counters without changing this package.
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// Endpoint is one host of a Cluster.
type Endpoint struct {
	Address        string `json:"address"` // host:port
	Healthy        bool   `json:"healthy"`
	Degraded       bool   `json:"degraded,omitempty"` // EDS DEGRADED: taken only for what the healthy hosts cannot take
	Weight         uint32 `json:"weight"`
	ActiveRequests int64  `json:"active_requests"`
}

// Content types. Prometheus scrapers negotiate on the version parameter.
const (
	contentText       = "text/plain; charset=utf-8"
	contentJSON       = "application/json"
	contentPrometheus = "text/plain; version=0.0.4; charset=utf-8"
)

// endpoints is the index page; kept next to the routes in NewAdmin.
var endpoints = []struct{ pattern, help string }{
	{"GET /ready", "200 LIVE once config is received and listeners are up, else 503 and why"},
	{"GET /config_dump", "applied config and versions as JSON; ?resource=<type> for one type"},
	{"GET /clusters", "endpoints, health, weight, active requests; ?format=json"},
	{"GET /certs", "the workload certificate: SPIFFE ID, serial, validity, chain (never the key)"},
	{"GET /stats", "stats as name: value lines; ?format=prometheus"},
	{"GET /stats/prometheus", "stats in Prometheus text format"},
	{"GET /debug/pprof/", "Go runtime profiles"},
	{"POST /drain", "start a graceful drain (the pod itself or the admin socket only)"},
	{"POST /quitquitquit", "drain and exit (the pod itself or the admin socket only)"},
}

// NewAdmin returns the admin handler. Serve it with Serve: the check that
// guards /drain and /quitquitquit learns from Serve's ConnContext whether a
// request came over a Unix socket, and without it such requests are
// refused.
func NewAdmin(src Source, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &admin{src: src, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.index)
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("GET /config_dump", a.configDump)
	mux.HandleFunc("GET /clusters", a.clusters)
	mux.HandleFunc("GET /certs", a.certs)
	mux.HandleFunc("GET /stats", a.stats)
	mux.HandleFunc("GET /stats/prometheus", a.statsPrometheus)

	// Explicit routes rather than pprof's own registration, which only
	// targets http.DefaultServeMux. Index serves the named profiles.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

	// A browser on the same host can reach loopback; cross-origin
	// protection stops a web page from posting a drain through it.
	csrf := http.NewCrossOriginProtection()
	mux.Handle("POST /drain", csrf.Handler(a.localOnly(http.HandlerFunc(a.drain))))
	mux.Handle("POST /quitquitquit", csrf.Handler(a.localOnly(http.HandlerFunc(a.quit))))
	return noStore(mux)
}

// NewHealth returns the handler for the health port, which the kubelet
// and local-mode supervisors probe; it exposes readiness and nothing else,
// because that port is reachable from outside the pod.
func NewHealth(src Source) http.Handler {
	return noStore(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz/ready" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		writeReady(w, src)
	}))
}

// noStore keeps intermediaries and browsers from caching live state.
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

type admin struct {
	src Source
	log *slog.Logger
}

func (a *admin) index(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	b.WriteString("trellis proxy admin\n\n")
	for _, e := range endpoints {
		fmt.Fprintf(&b, "  %-24s %s\n", e.pattern, e.help)
	}
	w.Header().Set("Content-Type", contentText)
	io.WriteString(w, b.String())
}

func (a *admin) ready(w http.ResponseWriter, _ *http.Request) {
	writeReady(w, a.src)
}

// writeReady answers like Envoy's /ready: the state in the body, so a
// probe failure in logs says why without another request.
func writeReady(w http.ResponseWriter, src Source) {
	ok, reason := src.Ready()
	w.Header().Set("Content-Type", contentText)
	if ok {
		io.WriteString(w, "LIVE\n")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, cmp.Or(reason, "not ready")+"\n")
}

func (a *admin) configDump(w http.ResponseWriter, r *http.Request) {
	// Marshalled before anything is written so that a failure can still
	// be reported as a 500 rather than a truncated 200.
	raw, err := json.Marshal(a.src.ConfigDump())
	if err != nil {
		a.log.Error("admin: marshal config dump", "err", err)
		http.Error(w, "marshal config dump: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if resource := r.URL.Query().Get("resource"); resource != "" {
		var byType map[string]json.RawMessage
		if err := json.Unmarshal(raw, &byType); err != nil {
			http.Error(w, "config dump is not keyed by resource type", http.StatusInternalServerError)
			return
		}
		v, ok := byType[resource]
		if !ok {
			types := make([]string, 0, len(byType))
			for k := range byType {
				types = append(types, k)
			}
			sort.Strings(types)
			http.Error(w, fmt.Sprintf("unknown resource %q; have %s", resource, strings.Join(types, ", ")), http.StatusNotFound)
			return
		}
		raw = v
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		http.Error(w, "indent config dump: "+err.Error(), http.StatusInternalServerError)
		return
	}
	out.WriteByte('\n')
	w.Header().Set("Content-Type", contentJSON)
	w.Write(out.Bytes())
}

func (a *admin) clusters(w http.ResponseWriter, r *http.Request) {
	cs := slices.Clone(a.src.Clusters())
	// Sorted so that two dumps diff cleanly.
	slices.SortFunc(cs, func(x, y Cluster) int { return strings.Compare(x.Name, y.Name) })
	switch format := r.URL.Query().Get("format"); format {
	case "json":
		for i := range cs {
			// An empty list rather than null keeps jq filters simple.
			if cs[i].Endpoints == nil {
				cs[i].Endpoints = []Endpoint{}
			}
		}
		if cs == nil {
			cs = []Cluster{}
		}
		out, err := json.MarshalIndent(struct {
			Clusters []Cluster `json:"clusters"`
		}{cs}, "", "  ")
		if err != nil {
			http.Error(w, "marshal clusters: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentJSON)
		w.Write(append(out, '\n'))
	case "", "text":
		w.Header().Set("Content-Type", contentText)
		io.WriteString(w, clustersText(cs))
	default:
		http.Error(w, fmt.Sprintf("unknown format %q; use text or json", format), http.StatusBadRequest)
	}
}

// healthFlags is Envoy's health_flags value for the host: "healthy", or
// the flags that keep it from being so, here the ones EDS sets.
func (e Endpoint) healthFlags() string {
	switch {
	case e.Healthy:
		return "healthy"
	case e.Degraded:
		return "/degraded_eds_health"
	}
	return "/failed_eds_health"
}

// clustersText renders Envoy's /clusters layout, which existing tooling
// and muscle memory grep: cluster::name::value for cluster-wide values and
// cluster::host:port::field::value per endpoint.
func clustersText(cs []Cluster) string {
	var b strings.Builder
	for _, c := range cs {
		keys := make([]string, 0, len(c.Counters))
		for k := range c.Counters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s::%s::%d\n", c.Name, k, c.Counters[k])
		}
		for _, e := range c.Endpoints {
			fmt.Fprintf(&b, "%s::%s::health_flags::%s\n", c.Name, e.Address, e.healthFlags())
			fmt.Fprintf(&b, "%s::%s::weight::%d\n", c.Name, e.Address, e.Weight)
			fmt.Fprintf(&b, "%s::%s::rq_active::%d\n", c.Name, e.Address, e.ActiveRequests)
		}
	}
	return b.String()
}

func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	switch format := r.URL.Query().Get("format"); format {
	case "", "text":
		a.writeStats(w, "text", contentText)
	case "prometheus":
		a.writeStats(w, "prometheus", contentPrometheus)
	default:
		http.Error(w, fmt.Sprintf("unknown format %q; use text or prometheus", format), http.StatusBadRequest)
	}
}

func (a *admin) statsPrometheus(w http.ResponseWriter, _ *http.Request) {
	a.writeStats(w, "prometheus", contentPrometheus)
}

func (a *admin) writeStats(w http.ResponseWriter, format, contentType string) {
	// Buffered so that an error halfway is a 500, not a 200 a scraper
	// would ingest as a complete but shorter set of series.
	var buf bytes.Buffer
	if err := a.src.WriteStats(&buf, format); err != nil {
		a.log.Error("admin: write stats", "format", format, "err", err)
		http.Error(w, "write stats: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

func (a *admin) drain(w http.ResponseWriter, r *http.Request) {
	a.log.Info("admin: drain requested", "remote", r.RemoteAddr)
	if err := a.src.Drain(r.Context()); err != nil {
		a.log.Error("admin: drain", "err", err)
		http.Error(w, "drain: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentText)
	io.WriteString(w, "OK\n")
}

func (a *admin) quit(w http.ResponseWriter, r *http.Request) {
	a.log.Info("admin: quit requested", "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", contentText)
	io.WriteString(w, "OK\n")
	// The caller learns the quit was accepted even if the exit that
	// follows closes the connection before the handler returns.
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	a.src.Quit()
}

// localOnly lets a request through only from the admin socket or a
// loopback address: a drain or quit from the network would let any peer
// take the proxy out of service.
func (a *admin) localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isLocal(r) {
			h.ServeHTTP(w, r)
			return
		}
		a.log.Warn("admin: refused state-changing request", "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, r.URL.Path+" is only allowed from the pod itself or over the admin Unix socket", http.StatusForbidden)
	})
}

// isLocal reports whether a request may change the proxy's state: over the
// admin Unix socket, or over loopback from the very address the admin
// listens on. In explicit mode every pod's IP is a loopback address
// (127.10.0.0/16), so "any loopback" would let one pod drain another;
// requiring the caller's address to be the listener's own limits TCP
// callers to the pod itself (in transparent mode, 127.0.0.1 inside the
// pod's namespace). The CLI reaches every proxy over the Unix socket.
func isLocal(r *http.Request) bool {
	if overUnix(r.Context()) {
		return true
	}
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !remote.Addr().Unmap().IsLoopback() {
		return false
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	lp, err := netip.ParseAddrPort(local.String())
	return err == nil && lp.Addr().Unmap() == remote.Addr().Unmap()
}
