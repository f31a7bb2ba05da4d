package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Port is the port every demo service serves on, as in Istio's Bookinfo.
const Port = 9080

const (
	// upstreamTimeout bounds a whole call to another service, retries
	// by the sidecar included (payment's example retries 3 × 2 s).
	upstreamTimeout = 10 * time.Second
	// shutdownTimeout bounds the drain of in-flight requests on
	// SIGTERM, well inside Kubernetes' default 30 s grace period.
	shutdownTimeout = 10 * time.Second
	// maxBody caps request and upstream response bodies.
	maxBody = 1 << 20
)

// Service describes one demo service.
type Service struct {
	Name    string
	Summary string
	// Serves is false for the sleep client, which opens no port.
	Serves bool

	handler func(d *deps) (http.Handler, error)
}

// services lists every demo service, in the order `trellis demo` shows them.
var services = []Service{
	{Name: "frontend", Summary: "HTML product page showing the reviews and their stars", Serves: true, handler: newFrontend},
	{Name: "reviews", Summary: "product reviews; v2 and v3 (env VERSION) add stars from ratings", Serves: true, handler: newReviews},
	{Name: "ratings", Summary: "star ratings per product id", Serves: true, handler: newRatings},
	{Name: "checkout-service", Summary: "POST /checkout: pays an order through payment-service", Serves: true, handler: newCheckout},
	{Name: "refund-service", Summary: "POST /refund: refunds through payment-service", Serves: true, handler: newRefund},
	{Name: "payment-service", Summary: "POST /pay and POST /refund", Serves: true, handler: newPayment},
	{Name: "sleep", Summary: "a client pod that sleeps until signalled (for trellis exec)", Serves: false},
}

// Services returns every demo service.
func Services() []Service { return append([]Service(nil), services...) }

// Lookup returns the service called name.
func Lookup(name string) (Service, bool) {
	for _, s := range services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Names returns the services' names, in display order.
func Names() []string {
	names := make([]string, len(services))
	for i, s := range services {
		names[i] = s.Name
	}
	return names
}

// Options configure Run.
type Options struct {
	// Listen is the address to serve on; empty means DefaultListen.
	Listen string
	// Getenv reads the service's configuration; nil means os.Getenv.
	Getenv func(string) string
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
	// Ready, if set, is called with the bound address once the service
	// accepts connections (tests listen on port 0).
	Ready func(net.Addr)
	// Proxy chooses the HTTP proxy for upstream calls; nil means
	// http.ProxyFromEnvironment, which honours the HTTP_PROXY that
	// explicit-mode sidecars set.
	Proxy func(*http.Request) (*url.URL, error)
}

// DefaultListen is $POD_IP:9080, with POD_IP defaulting to 127.0.0.1.
func DefaultListen(getenv func(string) string) string {
	ip := getenv("POD_IP")
	if ip == "" {
		ip = "127.0.0.1"
	}
	return net.JoinHostPort(ip, fmt.Sprint(Port))
}

// Run runs the demo service called name until ctx is done, then drains
// in-flight requests and returns nil: a signal is a clean stop.
func Run(ctx context.Context, name string, opts Options) error {
	svc, ok := Lookup(name)
	if !ok {
		return fmt.Errorf("unknown demo service %q: use one of %s", name, strings.Join(Names(), ", "))
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("service", name)

	if !svc.Serves {
		log.Info("sleeping until signalled")
		<-ctx.Done()
		log.Info("stopped")
		return nil
	}

	// Each run owns its transport so that stopping closes its idle
	// connections. Proxy is http.ProxyFromEnvironment, as in
	// http.DefaultTransport: explicit-mode sidecars set HTTP_PROXY.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if opts.Proxy != nil {
		transport.Proxy = opts.Proxy
	}
	defer transport.CloseIdleConnections()
	d := &deps{
		getenv: getenv,
		log:    log,
		client: &http.Client{Transport: transport, Timeout: upstreamTimeout},
	}
	h, err := svc.handler(d)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if name != "frontend" { // the frontend's / is its page
		h = withIndex(svc, d, h)
	}

	addr := opts.Listen
	if addr == "" {
		addr = DefaultListen(getenv)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	srv := &http.Server{
		Handler:           logRequests(log, h),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "address", ln.Addr().String())
	if opts.Ready != nil {
		opts.Ready(ln.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("%s: %w", name, err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		<-served
		return fmt.Errorf("%s: shutdown: %w", name, err)
	}
	<-served // http.ErrServerClosed
	log.Info("stopped")
	return nil
}

// deps is what a service's handlers share: configuration, logs and the
// client for upstream calls.
type deps struct {
	getenv func(string) string
	log    *slog.Logger
	client *http.Client
}

// env returns the environment variable key, or def when it is unset.
func (d *deps) env(key, def string) string {
	if v := d.getenv(key); v != "" {
		return v
	}
	return def
}

// withIndex answers GET / with what the service is, so that the first
// call a newcomer makes (`curl http://reviews:9080/`) shows which
// service, version and pod answered instead of a bare 404.
func withIndex(svc Service, d *deps, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			h.ServeHTTP(w, r)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Service string `json:"service"`
			Version string `json:"version,omitempty"`
			Pod     string `json:"pod,omitempty"`
			About   string `json:"about"`
		}{svc.Name, d.getenv("VERSION"), d.getenv("POD_NAME"), svc.Summary})
	})
}

// newMux returns a mux that already answers GET /healthz for readiness
// probes.
func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	return mux
}

// statusRecorder remembers the status a handler wrote, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// logRequests logs each request once answered; probes only at debug level.
func logRequests(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		level := slog.LevelInfo
		if r.URL.Path == "/healthz" {
			level = slog.LevelDebug
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration", time.Since(start).Round(time.Microsecond), "from", r.RemoteAddr)
	})
}

// propagated are the request headers a demo service copies onto its
// upstream calls: the ones mesh routes match on (the seed examples'
// `user`, Bookinfo's `end-user`) and the tracing headers, as Bookinfo does.
var propagated = []string{
	"User", "End-User",
	"X-Request-Id", "Traceparent", "Tracestate",
	"B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags",
	"X-Ot-Span-Context",
}

// upstreamError is a non-2xx answer from another service.
type upstreamError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *upstreamError) Error() string {
	msg := fmt.Sprintf("%s %s: upstream answered %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if body := strings.TrimSpace(e.Body); body != "" {
		if len(body) > 200 {
			body = body[:200] + "..."
		}
		msg += ": " + body
	}
	return msg
}

// call sends method url with body (JSON; nil for none) to an upstream
// service, forwarding in's routing and tracing headers, and decodes the
// JSON answer into out. It returns the answer's headers.
func (d *deps) call(in *http.Request, method, url string, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(in.Context(), method, url, rd)
	if err != nil {
		return nil, err
	}
	for _, h := range propagated {
		if v := in.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err // *url.Error names the method and URL
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.Header, fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.Header, &upstreamError{Method: method, URL: url, Status: resp.StatusCode, Body: string(data)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.Header, fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, url, err)
	}
	return resp.Header, nil
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // for people reading curl's output
	enc.Encode(v)
}

// errorBody is every demo service's error answer.
type errorBody struct {
	Error string `json:"error"`
	// UpstreamStatus is the status of the failed upstream call, if any.
	UpstreamStatus int `json:"upstreamStatus,omitempty"`
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, errorBody{Error: fmt.Sprintf(format, args...)})
}

// writeUpstreamError answers 502 for a failed upstream call, naming the
// upstream's own status when it answered.
func writeUpstreamError(w http.ResponseWriter, name string, err error) {
	body := errorBody{Error: fmt.Sprintf("%s: %v", name, err)}
	var ue *upstreamError
	if errors.As(err, &ue) {
		body.UpstreamStatus = ue.Status
	}
	writeJSON(w, http.StatusBadGateway, body)
}

// decodeJSON strictly decodes r's body, one JSON object, into v. An empty
// body is an error unless optional.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF) && optional:
			return nil
		case errors.Is(err, io.EOF):
			return errors.New("empty body")
		case errors.As(err, &te) && te.Field != "":
			return fmt.Errorf("%q is a JSON %s, want a %s", te.Field, te.Value, te.Type)
		case errors.As(err, &te):
			return fmt.Errorf("the body is a JSON %s, want an object", te.Value)
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}
