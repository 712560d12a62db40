package loadbench

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// SpanSink is an OTLP/HTTP (protobuf) trace receiver in the benchmark's
// process that counts the spans exported to it and keeps nothing. It walks
// the protobuf wire format down to the spans without decoding them, so
// that receiving some ten thousand spans a second costs the load
// generator, which shares the CPUs with the proxy under test, as little
// as possible (TestCountSpans holds the count to the full decoding of
// go.opentelemetry.io/proto/otlp).
type SpanSink struct {
	// Endpoint is the traces URL, for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
	Endpoint string

	spans, exports, rejected atomic.Int64
	srv                      *http.Server
}

// StartSpanSink serves a sink on 127.0.0.1.
func StartSpanSink() (*SpanSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &SpanSink{Endpoint: "http://" + ln.Addr().String() + "/v1/traces"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.export)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops serving.
func (s *SpanSink) Close() error { return s.srv.Close() }

// Spans returns how many spans were received so far.
func (s *SpanSink) Spans() int64 { return s.spans.Load() }

// Exports returns how many export requests were received, and how many of
// them were refused as undecodable.
func (s *SpanSink) Exports() (received, rejected int64) { return s.exports.Load(), s.rejected.Load() }

func (s *SpanSink) export(w http.ResponseWriter, r *http.Request) {
	s.exports.Add(1)
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			s.refuse(w, err)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		s.refuse(w, err)
		return
	}
	n, err := CountSpans(b)
	if err != nil {
		s.refuse(w, err)
		return
	}
	s.spans.Add(int64(n))
	// An empty ExportTraceServiceResponse: full success.
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (s *SpanSink) refuse(w http.ResponseWriter, err error) {
	s.rejected.Add(1)
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// WaitSpans waits until at least want spans were received, or until
// nothing more arrived for quiet, or ctx ends, and returns the count. Spans
// reach the sink in batches, up to the exporter's schedule delay after
// they ended; spans the sidecar dropped never do, which quiet bounds.
func (s *SpanSink) WaitSpans(ctx context.Context, want int64, quiet time.Duration) int64 {
	last, since := s.Spans(), time.Now()
	for {
		n := s.Spans()
		if n >= want || ctx.Err() != nil {
			return n
		}
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// OTLP field numbers on the way from an ExportTraceServiceRequest to its
// spans (opentelemetry-proto, collector/trace/v1 and trace/v1).
const (
	fieldResourceSpans = 1 // ExportTraceServiceRequest.resource_spans
	fieldScopeSpans    = 2 // ResourceSpans.scope_spans
	fieldSpans         = 2 // ScopeSpans.spans
)

// CountSpans returns the number of spans in b, an encoded
// ExportTraceServiceRequest.
func CountSpans(b []byte) (int, error) {
	total := 0
	err := eachField(b, fieldResourceSpans, func(rs []byte) error {
		return eachField(rs, fieldScopeSpans, func(ss []byte) error {
			return eachField(ss, fieldSpans, func([]byte) error {
				total++
				return nil
			})
		})
	})
	return total, err
}

// eachField calls f with the contents of every length-delimited field num
// of the message b, and skips all other fields.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errBadOTLP
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return errBadOTLP
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return errBadOTLP
		}
		b = b[l:]
	}
	return nil
}

var errBadOTLP = errors.New("loadbench: not an OTLP ExportTraceServiceRequest")

// otlpEnv is the traced sidecar's OTEL_* environment: every request traced
// (always_on), exported by OTLP/HTTP to endpoint, with a batch queue deep
// enough that nothing is dropped at some ten thousand requests a second.
// The batcher drops a span that finds its queue full, and the queue fills
// while an export is under way: the SDK's default queue of 2,048 spans is
// 0.17 s at 12k spans a second, which one slow export (or a descheduled
// exporter on a busy 2-core machine) outlasts. 64 Ki spans is five
// seconds; batches of 2,048 and a schedule delay of 200 ms keep the
// exports few and the sink's count current.
func otlpEnv(endpoint string) []string {
	return []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + endpoint,
		"OTEL_TRACES_SAMPLER=always_on",
		"OTEL_SERVICE_NAME=authsidecar-loadbench-traced",
		fmt.Sprintf("OTEL_BSP_MAX_QUEUE_SIZE=%d", bspQueue),
		fmt.Sprintf("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=%d", bspBatch),
		fmt.Sprintf("OTEL_BSP_SCHEDULE_DELAY=%d", bspDelay.Milliseconds()),
	}
}

const (
	bspQueue = 65536
	bspBatch = 2048
	bspDelay = 200 * time.Millisecond
)
