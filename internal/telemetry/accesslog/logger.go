package accesslog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one access log as the proxy's config names it.
type Config struct {
	// Path is the file to append to; "/dev/stdout" and "/dev/stderr" are
	// the proxy's own standard output and error.
	Path string
	// JSON writes JSON lines with Istio's default JSON keys; Format is then
	// ignored.
	JSON bool
	// Format is an Envoy TEXT format string of command operators; "" is
	// Istio's default ([DefaultTextFormat]).
	Format string
}

const (
	// FlushInterval is Envoy's default file flush interval.
	FlushInterval = time.Second
	// flushSize wakes the writer before the interval once this much is
	// pending, as Envoy flushes at 64 KiB.
	flushSize = 64 << 10
	// bufferLimit bounds what waits for the writer; past it lines are
	// dropped. With the batch being written this caps a file's memory at
	// twice this.
	bufferLimit = 256 << 10
	// pipeBuf is PIPE_BUF on Linux: a write to a pipe of at most this many
	// bytes is not interleaved with other writers'.
	pipeBuf = 4096
)

// Stats are a file's counters; Loggers sharing a path share them.
type Stats struct {
	// Written is how many lines reached the file.
	Written uint64
	// Dropped is how many lines were lost: the buffer was full because the
	// file did not take bytes fast enough, or a write failed.
	Dropped uint64
	// WriteErrors is how many writes to the file failed.
	WriteErrors uint64
}

// Logger writes access-log lines to one file. Its methods may be called
// from any goroutine.
type Logger struct {
	text   textFormat // nil when json
	json   bool
	sink   *sink
	closed atomic.Bool
	once   sync.Once
}

// New opens the access log cfg names. Loggers for the same path share the
// file until the last of them is closed.
func New(cfg Config) (*Logger, error) {
	if cfg.Path == "" {
		return nil, errors.New("access log: no path: name a file or /dev/stdout")
	}
	l := &Logger{json: cfg.JSON}
	if !cfg.JSON {
		format := cfg.Format
		if format == "" {
			format = DefaultTextFormat
		}
		f, err := compileText(format)
		if err != nil {
			return nil, err
		}
		l.text = f
	}
	s, err := acquire(cfg.Path)
	if err != nil {
		return nil, err
	}
	l.sink = s
	return l, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Log formats e and queues the line for the file. It never blocks on the
// file: when too much is queued the line is dropped and counted. A Logger
// that is closed drops nothing and writes nothing.
func (l *Logger) Log(e *Entry) {
	if l == nil || l.closed.Load() {
		return
	}
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json {
		b = appendJSON(b, e)
	} else {
		b = l.text.appendText(b, e)
		if len(b) == 0 || b[len(b)-1] != '\n' {
			// A format without a trailing newline would run lines
			// together and break the whole-line guarantee.
			b = append(b, '\n')
		}
	}
	l.sink.add(b)
	if cap(b) <= 64<<10 {
		*bp = b
		bufPool.Put(bp)
	}
}

// Stats returns the counters of l's file.
func (l *Logger) Stats() Stats { return l.sink.stats() }

// Flush writes out what is queued now.
func (l *Logger) Flush() { l.sink.flush() }

// Close writes out what l queued and lets go of the file; the last Logger
// of a path stops its writer and closes the file (not the proxy's stdout or
// stderr).
func (l *Logger) Close() error {
	var err error
	l.once.Do(func() {
		l.closed.Store(true)
		l.sink.flush()
		err = release(l.sink)
	})
	return err
}

// registry is the open files by path, so that two listeners logging to one
// path share a buffer and never interleave half-lines.
var registry = struct {
	sync.Mutex
	sinks map[string]*sink
}{sinks: map[string]*sink{}}

func acquire(path string) (*sink, error) {
	registry.Lock()
	defer registry.Unlock()
	if s := registry.sinks[path]; s != nil {
		s.refs++
		return s, nil
	}
	w, closer, err := openPath(path)
	if err != nil {
		return nil, err
	}
	s := newSink(path, w, closer, chunkFor(w), FlushInterval, bufferLimit)
	s.refs = 1
	registry.sinks[path] = s
	return s, nil
}

func release(s *sink) error {
	registry.Lock()
	s.refs--
	last := s.refs == 0
	if last && registry.sinks[s.path] == s {
		delete(registry.sinks, s.path)
	}
	registry.Unlock()
	if !last {
		return nil
	}
	return s.stop()
}

func openPath(path string) (io.Writer, io.Closer, error) {
	switch path {
	case "/dev/stdout":
		// Reopening /dev/stdout would open a regular file anew at offset
		// 0, without O_APPEND, over what the process already wrote.
		return os.Stdout, nil, nil
	case "/dev/stderr":
		return os.Stderr, nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("access log: cannot open %s: %w (check the directory exists and the proxy may write there)", path, err)
	}
	return f, f, nil
}

// chunkFor is the largest write w may take without risk of another
// writer's bytes landing inside a line: unlimited for a regular file opened
// O_APPEND, PIPE_BUF for a pipe, terminal or anything else.
func chunkFor(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().IsRegular() {
		return 0
	}
	return pipeBuf
}

// sink is one file's buffer and writer goroutine.
type sink struct {
	path   string
	w      io.Writer
	closer io.Closer
	chunk  int
	limit  int
	refs   int // under registry's lock

	mu      sync.Mutex
	buf     []byte
	lines   uint64 // lines in buf
	spare   []byte
	nudged  bool
	stopped bool
	writeMu sync.Mutex // one batch at a time, in order

	written, dropped, writeErrors atomic.Uint64

	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func newSink(path string, w io.Writer, closer io.Closer, chunk int, interval time.Duration, limit int) *sink {
	s := &sink{
		path: path, w: w, closer: closer, chunk: chunk, limit: limit,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.run(interval)
	return s
}

func (s *sink) add(line []byte) {
	s.mu.Lock()
	// stopped: a Log racing the last Close would otherwise queue a line
	// that no writer will ever take.
	if s.stopped || len(s.buf)+len(line) > s.limit {
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.buf = append(s.buf, line...)
	s.lines++
	wake := len(s.buf) >= min(flushSize, s.limit/2) && !s.nudged
	if wake {
		s.nudged = true
	}
	s.mu.Unlock()
	if wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *sink) run(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		case <-s.wake:
		}
		s.flush()
	}
}

// flush writes what is queued. The buffer is swapped out under mu and
// written outside it, so Log keeps queueing (up to the limit) while the
// file is slow.
func (s *sink) flush() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	batch, lines := s.buf, s.lines
	s.buf, s.lines, s.nudged = s.spare[:0], 0, false
	s.mu.Unlock()
	if len(batch) > 0 {
		if err := s.write(batch); err != nil {
			if s.writeErrors.Add(1) == 1 {
				slog.Warn("access log: write failed; lines are dropped while it fails", "path", s.path, "error", err)
			}
			s.dropped.Add(lines)
		} else {
			s.written.Add(lines)
		}
	}
	if cap(batch) > 2*s.limit {
		batch = nil // a one-off burst: let it go
	}
	s.mu.Lock()
	s.spare = batch[:0]
	s.mu.Unlock()
}

// write writes b, which holds whole lines, in pieces that end at line
// boundaries when the file needs them small.
func (s *sink) write(b []byte) error {
	for len(b) > 0 {
		n := len(b)
		if s.chunk > 0 && n > s.chunk {
			if i := bytes.LastIndexByte(b[:s.chunk], '\n'); i >= 0 {
				n = i + 1
			} else if i := bytes.IndexByte(b, '\n'); i >= 0 {
				n = i + 1 // one line longer than a chunk: write it whole
			}
		}
		if _, err := s.w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (s *sink) stop() error {
	close(s.quit)
	<-s.done
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.flush()
	if s.closer != nil {
		if err := s.closer.Close(); err != nil {
			return fmt.Errorf("access log: closing %s: %w", s.path, err)
		}
	}
	return nil
}

func (s *sink) stats() Stats {
	return Stats{Written: s.written.Load(), Dropped: s.dropped.Load(), WriteErrors: s.writeErrors.Load()}
}
