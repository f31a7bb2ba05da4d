package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
)

// Exporter sends one batch to the collector: req is an encoded
// ExportTraceServiceRequest (TracesData has its wire shape), which the
// exporter must not keep after Export returns.
type Exporter interface {
	Export(ctx context.Context, req []byte) error
}

// ExportMethod is the OTLP/gRPC method the gRPC exporter calls.
const ExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// maxResponse bounds the collector's ExportTraceServiceResponse: it holds
// at most a count and an error message.
const maxResponse = 64 << 10

// GRPCExporter exports over OTLP/gRPC on a connection the caller built (and
// closes).
type GRPCExporter struct{ conn *grpcwire.Conn }

// NewGRPCExporter exports through conn.
func NewGRPCExporter(conn *grpcwire.Conn) *GRPCExporter { return &GRPCExporter{conn: conn} }

// Export calls TraceService/Export. A partial success that rejected spans
// is an error, so it is counted as a failure.
func (e *GRPCExporter) Export(ctx context.Context, req []byte) error {
	resp, err := e.conn.Unary(ctx, ExportMethod, nil, req, maxResponse)
	if err != nil {
		return fmt.Errorf("otlp/grpc export: %w (check the tracing provider's collector address and that it serves OTLP/gRPC)", err)
	}
	return partialSuccess(resp)
}

// HTTPExporter exports over OTLP/HTTP: a POST of the protobuf request.
type HTTPExporter struct {
	client *http.Client
	url    string
	host   string
}

// NewHTTPExporter posts to url (e.g. "http://collector:4318/v1/traces")
// with client; host, when set, is the Host header (the provider's
// authority when url names an address the client dials some other way).
func NewHTTPExporter(client *http.Client, url, host string) *HTTPExporter {
	if client == nil {
		client = http.DefaultClient
	}
	return &HTTPExporter{client: client, url: url, host: host}
}

// Export POSTs req as application/x-protobuf.
func (e *HTTPExporter) Export(ctx context.Context, req []byte) error {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(req))
	if err != nil {
		return fmt.Errorf("otlp/http export: %w (check the provider's path)", err)
	}
	r.Header.Set("Content-Type", "application/x-protobuf")
	if e.host != "" {
		r.Host = e.host
	}
	resp, err := e.client.Do(r)
	if err != nil {
		return fmt.Errorf("otlp/http export to %s: %w (check the collector is reachable)", e.url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otlp/http export to %s: status %d: %.200s (check the provider's path and port)", e.url, resp.StatusCode, data)
	}
	if resp.Header.Get("Content-Type") == "application/x-protobuf" {
		return partialSuccess(data)
	}
	return nil
}

// partialSuccess reads ExportTraceServiceResponse.partial_success (field 1:
// rejected_spans = 1, error_message = 2) from raw bytes.
func partialSuccess(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			ps, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil
			}
			b = b[m:]
			var rejected uint64
			var msg string
			for len(ps) > 0 {
				fn, ft, k := protowire.ConsumeTag(ps)
				if k < 0 {
					break
				}
				ps = ps[k:]
				switch {
				case fn == 1 && ft == protowire.VarintType:
					v, k := protowire.ConsumeVarint(ps)
					if k < 0 {
						return nil
					}
					rejected, ps = v, ps[k:]
				case fn == 2 && ft == protowire.BytesType:
					v, k := protowire.ConsumeBytes(ps)
					if k < 0 {
						return nil
					}
					msg, ps = string(v), ps[k:]
				default:
					k := protowire.ConsumeFieldValue(fn, ft, ps)
					if k < 0 {
						return nil
					}
					ps = ps[k:]
				}
			}
			if rejected > 0 {
				return fmt.Errorf("otlp export: collector rejected %d span(s): %s", rejected, msg)
			}
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil
		}
		b = b[m:]
	}
	return nil
}

// run is the tracer's one goroutine: it gathers queued spans into a batch
// and exports it when full or FlushInterval after its first span, and on
// Stop drains the queue and exports what is left.
func (t *Tracer) run() {
	defer close(t.done)
	batch := make([]*spanData, 0, t.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		t.export(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
	for {
		select {
		case sp := <-t.queue:
			batch = append(batch, sp)
			if len(batch) >= t.cfg.BatchSize {
				flush(context.Background())
				if armed {
					timer.Stop()
					armed = false
				}
			} else if !armed {
				timer.Reset(t.cfg.FlushInterval)
				armed = true
			}
		case <-timer.C:
			armed = false
			flush(context.Background())
		case req := <-t.stop:
			timer.Stop()
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-req.ctx.Done():
					cancel()
				case <-ctx.Done():
				}
			}()
			for {
				select {
				case sp := <-t.queue:
					batch = append(batch, sp)
					if len(batch) >= t.cfg.BatchSize {
						flush(ctx)
					}
					continue
				default:
				}
				break
			}
			flush(ctx)
			var err error
			if ctx.Err() != nil {
				err = errors.New("tracing: stop: the flush was cut short by its context; spans may be lost")
			}
			cancel()
			req.reply <- err
			return
		}
	}
}

func (t *Tracer) export(ctx context.Context, batch []*spanData) {
	n := uint64(len(batch))
	if t.exporter == nil {
		t.dropped.Add(n)
		return
	}
	req := encodeTraces(t.resource, t.scope, batch)
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ExportTimeout)
	defer cancel()
	if err := t.exporter.Export(ctx, req); err != nil {
		t.failures.Add(1)
		t.dropped.Add(n)
		slog.Warn("tracing: export failed; spans dropped", "spans", n, "err", err)
		return
	}
	t.exported.Add(n)
}

// Stop exports the spans queued so far and ends the tracer's goroutine.
// Spans ended after Stop are dropped (counted). ctx bounds the final
// flush; Stop returns once the goroutine has ended. Calling it again
// returns nil.
func (t *Tracer) Stop(ctx context.Context) error {
	var err error
	t.stopOnce.Do(func() {
		t.mu.Lock()
		t.stopped = true
		t.mu.Unlock()
		req := stopReq{ctx: ctx, reply: make(chan error, 1)}
		t.stop <- req
		err = <-req.reply
		<-t.done
	})
	return err
}
