package loadbench

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestCountSpans holds the sink's wire-format walk to the full decoding:
// spans under several resources and scopes, with the fields around them
// that the walk must skip.
func TestCountSpans(t *testing.T) {
	attr := []*commonpb.KeyValue{{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}}}
	span := func(name string) *tracepb.Span {
		return &tracepb.Span{Name: name, Kind: tracepb.Span_SPAN_KIND_SERVER, TraceId: make([]byte, 16), SpanId: make([]byte, 8),
			StartTimeUnixNano: 1, EndTimeUnixNano: 2, Attributes: attr}
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{Resource: &resourcepb.Resource{Attributes: attr}, SchemaUrl: "https://example.com/1", ScopeSpans: []*tracepb.ScopeSpans{
			{Scope: &commonpb.InstrumentationScope{Name: "a"}, Spans: []*tracepb.Span{span("1"), span("2")}},
			{Scope: &commonpb.InstrumentationScope{Name: "b"}, Spans: []*tracepb.Span{span("3")}, SchemaUrl: "x"},
		}},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span("4"), span("5"), span("6")}}, {}}},
		{},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var decoded coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, rs := range decoded.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			want += len(ss.GetSpans())
		}
	}
	if n, err := CountSpans(b); n != want || want != 6 || err != nil {
		t.Errorf("CountSpans = %d, %v; decoding counts %d, want 6", n, err, want)
	}
	if n, err := CountSpans(nil); n != 0 || err != nil {
		t.Errorf("CountSpans(empty) = %d, %v; want 0, nil", n, err)
	}
	if _, err := CountSpans(b[:len(b)-3]); err == nil {
		t.Error("CountSpans of a truncated request: no error")
	}
}

// TestSpanSinkCountsTheSDKsExports sends spans through the SDK's batcher
// and OTLP/HTTP exporter, as the sidecar does, and counts them all.
func TestSpanSinkCountsTheSDKsExports(t *testing.T) {
	sink, err := StartSpanSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(sink.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(100), sdktrace.WithMaxQueueSize(5000)))
	const n = 1234
	tr := tp.Tracer("loadbench-test")
	for range n {
		_, s := tr.Start(ctx, "inbound GET")
		s.End()
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	exports, rejected := sink.Exports()
	if got := sink.WaitSpans(ctx, n, time.Second); got != n || rejected != 0 || exports < n/100 {
		t.Errorf("the sink counted %d spans in %d exports (%d rejected), want %d spans in at least %d exports", got, exports, rejected, n, n/100)
	}
}
