package hcm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/upstream"
)

const (
	// maxMirrorsInFlight bounds the copies a server has on their way at
	// once: past it a copy is not sent (counted in RqMirrorDropped), so a
	// slow mirror cannot pile up goroutines and connections.
	maxMirrorsInFlight = 64
	// maxMirrorBody is the largest request body that is mirrored: such a
	// body (of known length) is read whole before the request goes on, so
	// that the copy carries it; larger or streamed bodies are not
	// mirrored (counted in RqMirrorSkipped), since holding them for the
	// copy would hold up the request itself.
	maxMirrorBody = 64 << 10
	// defaultMirrorTimeout ends a copy whose route has no timeout (Istio's
	// default), Envoy's default route timeout.
	defaultMirrorTimeout = 15 * time.Second
	// maxMirrorDrain is how much of a copy's answer is read, so that its
	// connection can be reused, before it is closed.
	maxMirrorDrain = 64 << 10
)

// mirrorRequest sends copies of the request to the route's mirror
// clusters (a VirtualService's mirror and mirrors, an HTTPRoute's
// RequestMirror), each drawn by its share, as Envoy's shadowing does:
// fire and forget, with "-shadow" appended to the authority's host, the
// answer dropped. The copy is the request as it goes upstream (after the
// route's header rules and rewrites), so it comes after
// applyRequestPolicy; it never answers or holds up the request.
func (s *Server) mirrorRequest(x *exchange) bool {
	if len(x.route.Action.Mirrors) == 0 {
		return true
	}
	s.sendMirrors(x)
	return true
}

func (s *Server) sendMirrors(x *exchange) {
	var base *http.Request
	var body []byte
	for i := range x.route.Action.Mirrors {
		p := &x.route.Action.Mirrors[i]
		if !drawn(p.Percent) {
			continue
		}
		if base == nil {
			var ok bool
			if body, ok = s.mirrorBody(x); !ok {
				s.stats.RqMirrorSkipped.Add(1)
				return
			}
			base = mirrorCopy(x.out, shadowHost(x.out.Host))
		}
		var cl *upstream.Cluster
		if s.cfg.Cluster != nil {
			cl = s.cfg.Cluster(p.Cluster)
		}
		if cl == nil {
			s.log.Debug("mirror cluster not found", "cluster", p.Cluster, "route", x.route.Name)
			continue
		}
		req := base
		if i < len(x.route.Action.Mirrors)-1 {
			req = mirrorCopy(base, base.Host) // each copy is sent on its own
		}
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		timeout := x.route.Action.Timeout
		if timeout <= 0 {
			timeout = defaultMirrorTimeout
		}
		if !s.mirrors.start() {
			s.stats.RqMirrorDropped.Add(1)
			continue
		}
		go s.mirrors.run(cl, req, timeout)
	}
}

// mirrorBody reads the request's body whole when it is small enough to be
// mirrored, and gives the request a reader of those bytes instead; false
// when the body cannot be mirrored (streamed, too large, awaiting
// 100-continue, an upgrade, or not read in full, in which case the
// request reads the error as it would have).
func (s *Server) mirrorBody(x *exchange) ([]byte, bool) {
	out := x.out
	if isUpgradeRequest(out) || out.Trailer != nil {
		return nil, false
	}
	if out.Body == nil || out.Body == http.NoBody {
		return nil, true
	}
	if out.ContentLength <= 0 || out.ContentLength > maxMirrorBody {
		return nil, false
	}
	if _, expect := out.Header["Expect"]; expect {
		// Reading the body would tell the client to go on before the
		// upstream has.
		return nil, false
	}
	buf := make([]byte, out.ContentLength)
	x.w.bindBody(x.ctx)
	n, err := io.ReadFull(out.Body, buf)
	x.w.unbindBody(x.ctx)
	if err != nil {
		// The upstream call reads the same failure and answers it.
		out.Body = io.NopCloser(io.MultiReader(bytes.NewReader(buf[:n]), errReader{err}))
		return nil, false
	}
	out.Body = io.NopCloser(bytes.NewReader(buf))
	return buf, true
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if errors.Is(e.err, io.EOF) {
		return 0, io.ErrUnexpectedEOF
	}
	return 0, e.err
}

// mirrorCopy is r for a mirror to host: its own URL and header map, no
// body yet.
func mirrorCopy(r *http.Request, host string) *http.Request {
	u := *r.URL
	return &http.Request{
		Method:        r.Method,
		URL:           &u,
		Proto:         r.Proto,
		ProtoMajor:    r.ProtoMajor,
		ProtoMinor:    r.ProtoMinor,
		Header:        r.Header.Clone(),
		ContentLength: r.ContentLength,
		Host:          host,
	}
}

// shadowHost is Envoy's shadowAppendedHost: "-shadow" after the host,
// before the port (app:8080 → app-shadow:8080, [::1]:80 → [::1]-shadow:80).
func shadowHost(h string) string {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.HasSuffix(h, "]") || (!strings.HasPrefix(h, "[") && strings.IndexByte(h[:i], ':') >= 0) {
		return h + "-shadow"
	}
	return h[:i] + "-shadow" + h[i:]
}

// mirrors owns a server's copies in flight: at most maxMirrorsInFlight,
// each ended by its own timeout or by the server's stop, which waits for
// them.
type mirrors struct {
	mu      sync.Mutex
	n       int
	stopped bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// start takes a place for one copy; false when none is free or the
// server stopped.
func (m *mirrors) start() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped || m.n >= maxMirrorsInFlight {
		return false
	}
	if m.ctx == nil {
		m.ctx, m.cancel = context.WithCancel(context.Background())
	}
	m.n++
	m.wg.Add(1)
	return true
}

func (m *mirrors) done() {
	m.mu.Lock()
	m.n--
	m.mu.Unlock()
	m.wg.Done()
}

// run sends one copy and drops its answer.
func (m *mirrors) run(cl *upstream.Cluster, req *http.Request, timeout time.Duration) {
	defer m.done()
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	defer cancel()
	resp, _, err := cl.RoundTrip(ctx, req, &upstream.Call{})
	if err != nil {
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxMirrorDrain))
	resp.Body.Close()
}

// stop takes no more copies and ends those in flight, waiting for them
// to return, which they do as soon as their calls see their context end:
// a copy is fire and forget, nobody waits for its answer, so a server
// that stops (after its own requests, on Shutdown) does not wait for it.
func (m *mirrors) stop() {
	m.mu.Lock()
	m.stopped = true
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	m.wg.Wait()
}
