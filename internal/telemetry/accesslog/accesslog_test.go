package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

func httpEntry() *Entry {
	return &Entry{
		StartTime:               time.Date(2026, 12, 8, 4, 16, 8, 123456789, time.UTC),
		Method:                  "GET",
		Path:                    "/productpage?u=1",
		Protocol:                "HTTP/1.1",
		ResponseCode:            200,
		ResponseCodeDetails:     "via_upstream",
		BytesReceived:           0,
		BytesSent:               1234,
		Duration:                35*time.Millisecond + 900*time.Microsecond,
		UpstreamServiceTime:     "34",
		UserAgent:               "curl/8.5.0",
		RequestID:               "3f1c2a9e-7a55-4b43-9a54-1d4c6f0e2b7d",
		Authority:               "productpage:9080",
		UpstreamHost:            "10.0.0.7:9080",
		UpstreamCluster:         "outbound|9080||productpage.default.svc.cluster.local",
		UpstreamLocalAddress:    "10.0.0.5:41234",
		DownstreamLocalAddress:  "10.96.0.12:9080",
		DownstreamRemoteAddress: "10.0.0.5:50112",
		RouteName:               "default",
		DownstreamPeerPrincipal: "cluster.local/ns/default/sa/sleep",
		TraceID:                 "4bf92f3577b34da6a3ce929d0e0e4736",
		Direction:               "outbound",
	}
}

func tcpEntry() *Entry {
	return &Entry{
		StartTime:               time.Date(2026, 12, 8, 4, 16, 8, 5_000_000, time.FixedZone("CET", 3600)),
		BytesReceived:           100,
		BytesSent:               2048,
		Duration:                5 * time.Second,
		UpstreamHost:            "10.0.0.9:3306",
		UpstreamCluster:         "outbound|3306||mysql.default.svc.cluster.local",
		UpstreamLocalAddress:    "10.0.0.5:40000",
		DownstreamLocalAddress:  "10.96.0.20:3306",
		DownstreamRemoteAddress: "10.0.0.5:50200",
		Direction:               "outbound",
	}
}

func TestDefaultText(t *testing.T) {
	f, err := compileText(DefaultTextFormat)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		e    *Entry
		want string
	}{
		{"http", httpEntry(), `[2026-12-08T04:16:08.123Z] "GET /productpage?u=1 HTTP/1.1" 200 - via_upstream - "-" 0 1234 35 34 "-" "curl/8.5.0" "3f1c2a9e-7a55-4b43-9a54-1d4c6f0e2b7d" "productpage:9080" "10.0.0.7:9080" outbound|9080||productpage.default.svc.cluster.local 10.0.0.5:41234 10.96.0.12:9080 10.0.0.5:50112 - default` + "\n"},
		// TCP: no method, path, protocol or code; start time in UTC.
		{"tcp", tcpEntry(), `[2026-12-08T03:16:08.005Z] "- - -" 0 - - - "-" 100 2048 5000 - "-" "-" "-" "-" "10.0.0.9:3306" outbound|3306||mysql.default.svc.cluster.local 10.0.0.5:40000 10.96.0.20:3306 10.0.0.5:50200 - -` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(f.appendText(nil, tc.e)); got != tc.want {
				t.Errorf("text line\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	for _, tc := range []struct {
		name  string
		e     *Entry
		bytes string
		want  map[string]any
	}{
		{
			name:  "http",
			e:     httpEntry(),
			bytes: `{"start_time":"2026-12-08T04:16:08.123Z","method":"GET","path":"/productpage?u=1","protocol":"HTTP/1.1","response_code":200,"response_flags":"-","response_code_details":"via_upstream","connection_termination_details":null,"upstream_transport_failure_reason":null,"bytes_received":0,"bytes_sent":1234,"duration":35,"upstream_service_time":"34","x_forwarded_for":null,"user_agent":"curl/8.5.0","request_id":"3f1c2a9e-7a55-4b43-9a54-1d4c6f0e2b7d","authority":"productpage:9080","upstream_host":"10.0.0.7:9080","upstream_cluster":"outbound|9080||productpage.default.svc.cluster.local","upstream_local_address":"10.0.0.5:41234","downstream_local_address":"10.96.0.12:9080","downstream_remote_address":"10.0.0.5:50112","requested_server_name":null,"route_name":"default","downstream_peer_principal":"cluster.local/ns/default/sa/sleep","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","direction":"outbound"}` + "\n",
			want: map[string]any{
				"start_time": "2026-12-08T04:16:08.123Z", "method": "GET", "path": "/productpage?u=1", "protocol": "HTTP/1.1",
				"response_code": 200.0, "response_flags": "-", "response_code_details": "via_upstream",
				"connection_termination_details": nil, "upstream_transport_failure_reason": nil,
				"bytes_received": 0.0, "bytes_sent": 1234.0, "duration": 35.0, "upstream_service_time": "34",
				"x_forwarded_for": nil, "user_agent": "curl/8.5.0", "request_id": "3f1c2a9e-7a55-4b43-9a54-1d4c6f0e2b7d",
				"authority": "productpage:9080", "upstream_host": "10.0.0.7:9080",
				"upstream_cluster":       "outbound|9080||productpage.default.svc.cluster.local",
				"upstream_local_address": "10.0.0.5:41234", "downstream_local_address": "10.96.0.12:9080",
				"downstream_remote_address": "10.0.0.5:50112", "requested_server_name": nil, "route_name": "default",
				"downstream_peer_principal": "cluster.local/ns/default/sa/sleep",
				"trace_id":                  "4bf92f3577b34da6a3ce929d0e0e4736", "direction": "outbound",
			},
		},
		{
			name:  "tcp",
			e:     tcpEntry(),
			bytes: `{"start_time":"2026-12-08T03:16:08.005Z","method":null,"path":null,"protocol":null,"response_code":0,"response_flags":"-","response_code_details":null,"connection_termination_details":null,"upstream_transport_failure_reason":null,"bytes_received":100,"bytes_sent":2048,"duration":5000,"upstream_service_time":null,"x_forwarded_for":null,"user_agent":null,"request_id":null,"authority":null,"upstream_host":"10.0.0.9:3306","upstream_cluster":"outbound|3306||mysql.default.svc.cluster.local","upstream_local_address":"10.0.0.5:40000","downstream_local_address":"10.96.0.20:3306","downstream_remote_address":"10.0.0.5:50200","requested_server_name":null,"route_name":null,"downstream_peer_principal":"","trace_id":"","direction":"outbound"}` + "\n",
			want: map[string]any{
				"start_time": "2026-12-08T03:16:08.005Z", "method": nil, "path": nil, "protocol": nil,
				"response_code": 0.0, "response_flags": "-", "response_code_details": nil,
				"connection_termination_details": nil, "upstream_transport_failure_reason": nil,
				"bytes_received": 100.0, "bytes_sent": 2048.0, "duration": 5000.0, "upstream_service_time": nil,
				"x_forwarded_for": nil, "user_agent": nil, "request_id": nil, "authority": nil,
				"upstream_host": "10.0.0.9:3306", "upstream_cluster": "outbound|3306||mysql.default.svc.cluster.local",
				"upstream_local_address": "10.0.0.5:40000", "downstream_local_address": "10.96.0.20:3306",
				"downstream_remote_address": "10.0.0.5:50200", "requested_server_name": nil, "route_name": nil,
				"downstream_peer_principal": "", "trace_id": "", "direction": "outbound",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendJSON(nil, tc.e)
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, b)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("JSON (-want +got):\n%s", diff)
			}
			// Key order and number formatting too, as a reader of the
			// raw line sees them.
			if string(b) != tc.bytes {
				t.Errorf("JSON bytes\n got: %s\nwant: %s", b, tc.bytes)
			}
		})
	}
}

func TestJSONEscaping(t *testing.T) {
	e := tcpEntry()
	e.UserAgent = "a\"b\\c\nd\te\x01f\xffg\u2028h<é>"
	e.Method = "GET"
	var got map[string]any
	b := appendJSON(nil, e)
	if bytes.Count(b, []byte("\n")) != 1 {
		t.Errorf("line %q has a raw newline inside", b)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	if want := "a\"b\\c\nd\te\x01f\ufffdg\u2028h<é>"; got["user_agent"] != want {
		t.Errorf("user_agent = %q, want %q", got["user_agent"], want)
	}
}

func TestCustomText(t *testing.T) {
	f, err := compileText(`%START_TIME% %REQ(:METHOD)% %REQ(X-CUSTOM):5% "%RESP(content-type)%" %DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %REQ(X-MISSING?USER-AGENT)% %REQ(X-MISSING)% %TRACE_ID% %UPSTREAM_CLUSTER% %RESPONSE_FLAGS% 100%`)
	if err == nil {
		t.Fatalf("a lone %% at the end compiled: %v", f)
	}
	f, err = compileText(`%START_TIME% %REQ(:METHOD)% %REQ(X-CUSTOM):5% "%RESP(content-type)%" %DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %REQ(X-MISSING?USER-AGENT)% %REQ(X-MISSING)% %TRACE_ID% %UPSTREAM_CLUSTER% %RESPONSE_FLAGS%`)
	if err != nil {
		t.Fatal(err)
	}
	e := httpEntry()
	e.ResponseFlags = "UF,URX"
	e.RequestHeaders = http.Header{"X-Custom": {"abcdefgh"}}
	e.ResponseHeaders = http.Header{"Content-Type": {"text/html"}}
	e.DownstreamRemoteAddress = "[fd00::5]:50112"
	want := `2026-12-08T04:16:08.123Z GET abcde "text/html" spiffe://cluster.local/ns/default/sa/sleep fd00::5 curl/8.5.0 - 4bf92f3577b34da6a3ce929d0e0e4736 outbound|9080||productpage.default.svc.cluster.local UF,URX`
	if got := string(f.appendText(nil, e)); got != want {
		t.Errorf("custom line\n got: %q\nwant: %q", got, want)
	}
	// Headers absent (TCP): "-", no panic.
	e.RequestHeaders, e.ResponseHeaders = nil, nil
	if got := string(f.appendText(nil, e)); !strings.Contains(got, ` GET - "-" `) {
		t.Errorf("without headers: %q", got)
	}
}

func TestUnknownOperator(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"%FOO% x", "access log format: %FOO% at offset 0: unknown command operator FOO (supported: REQ(header), RESP(header), BYTES_RECEIVED,"},
		{"a %DYNAMIC_METADATA(istio.mixer:status)%\n", "offset 2: unknown command operator DYNAMIC_METADATA(...)"},
		{"%REQ()%", "REQ() needs a header name"},
		{"%DURATION:x%", `":x" after the operator is not a length limit`},
		{"%START_TIME(%s)%", "START_TIME with a custom time format is not supported"},
		{"[%START_TIME%] %DURATION", `"%DURATION" at offset 15 has no closing %`},
		{"100%%", "empty command operator"},
	} {
		_, err := New(Config{Path: filepath.Join(t.TempDir(), "log"), Format: tc.format})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("format %q: error %v, want one containing %q", tc.format, err, tc.want)
		}
	}
	registry.Lock()
	n := len(registry.sinks)
	registry.Unlock()
	if n != 0 {
		t.Errorf("a failed New left %d files open", n)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("file ends in a half line: %q", b[max(0, len(b)-80):])
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestFlushOnCloseAndInterval(t *testing.T) {
	leak.Check(t)
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := New(Config{Path: path, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(httpEntry())
	// Written by the writer goroutine within about a second.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if string(b) == string(appendJSON(nil, httpEntry())) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s the file holds %q", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	l.Log(tcpEntry())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > FlushInterval/2 {
		t.Logf("slow machine: Close took %v", time.Since(start))
	}
	want := string(appendJSON(nil, httpEntry())) + string(appendJSON(nil, tcpEntry()))
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Errorf("after Close the file holds\n%s\nwant\n%s", b, want)
	}
	if got := l.Stats(); got != (Stats{Written: 2}) {
		t.Errorf("stats %+v, want 2 written", got)
	}
	l.Log(httpEntry()) // after Close: dropped silently, no panic
}

func TestSharedPathConcurrent(t *testing.T) {
	leak.Check(t)
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := New(Config{Path: path, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Path: path, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.sink != b.sink {
		t.Fatal("two Loggers for one path opened the file twice")
	}
	const goroutines, perG = 8, 400
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := a
			if g%2 == 1 {
				l = b
			}
			e := httpEntry()
			e.UserAgent = strings.Repeat("x", 100*g) // lines of several lengths
			for range perG {
				l.Log(e)
			}
		}()
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b.Log(httpEntry()) // the other Logger still writes
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Written+st.Dropped != goroutines*perG+1 {
		t.Errorf("stats %+v: written+dropped != %d lines logged", st, goroutines*perG+1)
	}
	lines := readLines(t, path)
	if uint64(len(lines)) != st.Written {
		t.Errorf("file has %d lines, stats say %d written", len(lines), st.Written)
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || len(m) != 27 {
			t.Fatalf("line %d is not a whole entry (%v): %.200s", i, err, line)
		}
	}
	registry.Lock()
	n := len(registry.sinks)
	registry.Unlock()
	if n != 0 {
		t.Errorf("%d files still open after every Logger closed", n)
	}
}

// blockingWriter blocks every Write until release is closed, like stdout
// piped into a reader that stopped reading.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func TestDropWhenFull(t *testing.T) {
	leak.Check(t)
	w := &blockingWriter{release: make(chan struct{})}
	line := appendJSON(nil, httpEntry())
	limit := 3 * len(line)
	l := &Logger{json: true, sink: newSink("test", w, nil, 0, time.Hour, limit)}
	l.sink.refs = 1

	const n = 50
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		for range n {
			l.Log(httpEntry())
		}
	}()
	select {
	case <-logged:
	case <-time.After(10 * time.Second):
		close(w.release)
		t.Fatal("Log blocked on a writer that does not take bytes")
	}
	st := l.Stats()
	// At most one batch in the blocked write and one full buffer behind it.
	if st.Dropped < n-2*3 || st.Written != 0 {
		t.Errorf("with the writer blocked: stats %+v, want >= %d dropped, none written", st, n-6)
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st = l.Stats()
	if st.Written+st.Dropped != n || st.Written == 0 {
		t.Errorf("stats %+v after release: want written+dropped = %d", st, n)
	}
	if got := strings.Count(w.buf.String(), string(line)); uint64(got) != st.Written || w.buf.Len() != got*len(line) {
		t.Errorf("writer got %d whole lines in %d bytes, stats say %d written", got, w.buf.Len(), st.Written)
	}
}

// chunkWriter records each Write's size.
type chunkWriter struct{ sizes []int }

func (w *chunkWriter) Write(p []byte) (int, error) {
	if p[len(p)-1] != '\n' {
		return 0, io.ErrShortWrite
	}
	w.sizes = append(w.sizes, len(p))
	return len(p), nil
}

func TestPipeWritesEndAtLines(t *testing.T) {
	leak.Check(t)
	w := &chunkWriter{}
	s := newSink("test", w, nil, pipeBuf, time.Hour, bufferLimit)
	line := appendJSON(nil, httpEntry())
	for range 40 {
		s.add(line)
	}
	long := bytes.Repeat([]byte("y"), 2*pipeBuf)
	long = append(long, '\n')
	s.add(long)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range w.sizes {
		if n > pipeBuf && n != len(long) {
			t.Errorf("a write of %d bytes to a pipe (PIPE_BUF %d)", n, pipeBuf)
		}
		total += n
	}
	if total != 40*len(line)+len(long) {
		t.Errorf("wrote %d bytes, want %d", total, 40*len(line)+len(long))
	}
	if s.stats().Written != 41 {
		t.Errorf("stats %+v", s.stats())
	}
}

func TestFormatWithoutNewline(t *testing.T) {
	leak.Check(t)
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := New(Config{Path: path, Format: "%REQ(:METHOD)% %RESPONSE_CODE%"})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(httpEntry())
	l.Log(tcpEntry())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"GET 200", "- 0"}, readLines(t, path)); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestOpenError(t *testing.T) {
	_, err := New(Config{Path: filepath.Join(t.TempDir(), "missing", "access.log")})
	if err == nil || !strings.Contains(err.Error(), "check the directory exists") {
		t.Errorf("error %v", err)
	}
}

func BenchmarkJSON(b *testing.B) {
	e := httpEntry()
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendJSON(buf[:0], e)
	}
}

func BenchmarkText(b *testing.B) {
	f, err := compileText(DefaultTextFormat)
	if err != nil {
		b.Fatal(err)
	}
	e := httpEntry()
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.appendText(buf[:0], e)
	}
}

// BenchmarkJSONSlog is the same line through log/slog's JSONHandler, the
// alternative the package doc weighs the hand-rolled encoder against.
func BenchmarkJSONSlog(b *testing.B) {
	var out bytes.Buffer
	h := slog.NewJSONHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}})
	lg := slog.New(h)
	e := httpEntry()
	ctx := context.Background()
	orNull := func(k, v string) slog.Attr {
		if v == "" {
			return slog.Any(k, nil)
		}
		return slog.String(k, v)
	}
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		lg.LogAttrs(ctx, slog.LevelInfo, "",
			slog.String("start_time", e.StartTime.UTC().Format("2006-01-02T15:04:05.000Z07:00")),
			orNull("method", e.Method), orNull("path", e.Path), orNull("protocol", e.Protocol),
			slog.Int("response_code", e.ResponseCode), slog.String("response_flags", "-"),
			orNull("response_code_details", e.ResponseCodeDetails),
			orNull("connection_termination_details", e.ConnectionTerminationDetails),
			orNull("upstream_transport_failure_reason", e.UpstreamTransportFailureReason),
			slog.Uint64("bytes_received", e.BytesReceived), slog.Uint64("bytes_sent", e.BytesSent),
			slog.Int64("duration", e.Duration.Milliseconds()),
			orNull("upstream_service_time", e.UpstreamServiceTime), orNull("x_forwarded_for", e.XForwardedFor),
			orNull("user_agent", e.UserAgent), orNull("request_id", e.RequestID), orNull("authority", e.Authority),
			orNull("upstream_host", e.UpstreamHost), orNull("upstream_cluster", e.UpstreamCluster),
			orNull("upstream_local_address", e.UpstreamLocalAddress),
			orNull("downstream_local_address", e.DownstreamLocalAddress),
			orNull("downstream_remote_address", e.DownstreamRemoteAddress),
			orNull("requested_server_name", e.RequestedServerName), orNull("route_name", e.RouteName),
			slog.String("downstream_peer_principal", e.DownstreamPeerPrincipal),
			slog.String("trace_id", e.TraceID), slog.String("direction", e.Direction))
	}
}

// BenchmarkLog is the whole request-path cost: format, queue, and the
// writer goroutine draining to a discarding file.
func BenchmarkLog(b *testing.B) {
	for _, tc := range []struct {
		name string
		json bool
	}{{"json", true}, {"text", false}} {
		b.Run(tc.name, func(b *testing.B) {
			f, _ := compileText(DefaultTextFormat)
			l := &Logger{json: tc.json, text: f, sink: newSink("bench", io.Discard, nil, 0, FlushInterval, bufferLimit)}
			l.sink.refs = 1
			e := httpEntry()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.Log(e)
				}
			})
			b.StopTimer()
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestAddAfterStop: a Log that passed its Logger's closed check while the
// last Close stopped the file counts its line as dropped instead of
// leaving it in a buffer no writer takes.
func TestAddAfterStop(t *testing.T) {
	leak.Check(t)
	w := &chunkWriter{}
	s := newSink("test", w, nil, 0, time.Hour, bufferLimit)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s.add(appendJSON(nil, httpEntry()))
	s.flush()
	if got := s.stats(); got != (Stats{Dropped: 1}) || len(w.sizes) != 0 {
		t.Errorf("stats %+v, writes %v; want the line dropped", got, w.sizes)
	}
}

func TestWithoutPort(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.5:50112":  "10.0.0.5",
		"[fd00::5]:50112": "fd00::5",
		"[fd00::5]":       "[fd00::5]",
		"fd00::5":         "fd00::5",
		"10.0.0.5":        "10.0.0.5",
		"":                "",
	} {
		if got := withoutPort(in); got != want {
			t.Errorf("withoutPort(%q) = %q, want %q", in, got, want)
		}
	}
}
