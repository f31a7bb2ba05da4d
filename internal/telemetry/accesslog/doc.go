// Package accesslog is the sidecar's access logger: what Envoy's file access
// log writes when Istio turns access logging on (MeshConfig accessLogFile or
// a Telemetry resource's accessLogging), one line per HTTP request or TCP
// connection, in Istio's default TEXT format, a TEXT format of Envoy command
// operators, or JSON lines with Istio's default JSON keys.
//
// The proxy fills an [Entry] with what it already holds as strings and
// numbers and calls [Logger.Log]; formatting happens there, on the request's
// goroutine, into a pooled buffer, and the line is appended to the file's
// in-memory buffer. One goroutine per file writes that buffer out every
// second (Envoy's file flush interval), sooner when 64 KiB are pending, and
// on Close. The buffer is bounded: when the disk or the pipe behind stdout
// stops taking bytes, lines are dropped and counted ([Stats]) rather than
// holding requests up, as Envoy does.
//
// Loggers for one path (two listeners logging to /dev/stdout) share one
// file and one buffer, so lines never interleave: every write ends at a line
// boundary, and writes to a pipe or terminal are cut into pieces of at most
// PIPE_BUF bytes at line boundaries, so that the proxy's own log/slog lines
// sharing the pipe cannot split a line either.
//
// JSON is written by a hand-rolled encoder into a pooled buffer, not by
// log/slog's JSONHandler: BenchmarkJSON against BenchmarkJSONSlog (same
// Entry, same keys and values, on the shared 2-core CI machine) measured
// 0.7 µs and no allocations per line against slog's 4.7 µs, 2 allocations
// and 920 bytes. slog would also need a ReplaceAttr callback per attribute
// to drop its time, level and msg keys, and boxes every null; it stays the
// proxy's own diagnostic log. The keys and value types are Envoy's: codes,
// bytes and durations are numbers, everything else a string, and a value
// the request did not have is null (in TEXT, "-"); response_flags is "-"
// when there are none, and downstream_peer_principal and trace_id are ""
// when absent, as the telemetry contract fixes them.
package accesslog
