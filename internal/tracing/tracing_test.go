package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestTracingIsOffUnlessAskedFor(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, false},
	} {
		s, errs := Parse(tc.env)
		if len(errs) != 0 || s.Enabled != tc.want {
			t.Errorf("%v: enabled %v %v, want %v", tc.env, s.Enabled, errs, tc.want)
		}
	}
	s, _ := Parse(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"})
	if s.Protocol != "http/protobuf" {
		t.Errorf("protocol %q, want the traces-specific variable to win", s.Protocol)
	}
}

// TestATypoInAnOTELVariableIsNamed: a bad value stops the start naming its
// variable, instead of tracing being off, or sampled, unnoticed.
func TestATypoInAnOTELVariableIsNamed(t *testing.T) {
	for v, value := range map[string]string{
		"OTEL_TRACES_EXPORTER":               "otlpp",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/json",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grcp",
		"OTEL_TRACES_SAMPLER":                "always-on",
		"OTEL_PROPAGATORS":                   "tracecontext,b4",
		"OTEL_SDK_DISABLED":                  "yes please",
	} {
		_, errs := Parse(map[string]string{v: value})
		var ve *VarError
		if len(errs) != 1 || !errors.As(errs[0], &ve) || ve.Var != v {
			t.Errorf("%s=%s: %v, want one error naming it", v, value, errs)
		}
	}
	_, errs := Parse(map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"})
	var ve *VarError
	if len(errs) != 1 || !errors.As(errs[0], &ve) || ve.Var != "OTEL_TRACES_SAMPLER_ARG" {
		t.Errorf("a ratio of 1.5: %v, want an error naming OTEL_TRACES_SAMPLER_ARG", errs)
	}
}

func TestSamplers(t *testing.T) {
	for name, want := range map[string]string{
		"":                         "ParentBased{root:AlwaysOnSampler,",
		"always_off":               "AlwaysOffSampler",
		"traceidratio":             "TraceIDRatioBased{1}",
		"parentbased_traceidratio": "ParentBased{root:TraceIDRatioBased{0.25},",
	} {
		s, err := sampler(name, map[string]string{"parentbased_traceidratio": "0.25"}[name])
		if err != nil || len(s.Description()) < len(want) || s.Description()[:len(want)] != want {
			t.Errorf("%q: %v %v, want %s…", name, s, err, want)
		}
	}
}

func recording(t *testing.T) (*Tracing, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	return newTracing(provider, propagation.TraceContext{}, "test"), rec
}

func TestAProxiedRequestIsAChildOfItsCallerAndParentOfTheNextHop(t *testing.T) {
	tr, rec := recording(t)
	r := httptest.NewRequest("PURGE", "http://app/a%2Fb", nil)
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	r, span := tr.Start(r, trace.SpanKindServer, "inbound")
	End(span, r, http.StatusServiceUnavailable, ResultKey.String("unavailable"))
	got := rec.Ended()
	if len(got) != 1 {
		t.Fatalf("%d spans", len(got))
	}
	s := got[0]
	if s.Name() != "inbound HTTP" || s.Parent().SpanID().String() != "00f067aa0ba902b7" ||
		s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Status().Code.String() != "Error" {
		t.Errorf("span %q parent %s trace %s status %v", s.Name(), s.Parent().SpanID(), s.SpanContext().TraceID(), s.Status())
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + s.SpanContext().SpanID().String() + "-01"; r.Header.Get("Traceparent") != want {
		t.Errorf("the next hop gets traceparent %q, want %q", r.Header.Get("Traceparent"), want)
	}
	attrs := map[string]string{}
	for _, kv := range s.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["url.path"] != "/a%2Fb" || attrs["http.request.method"] != "PURGE" || attrs["http.response.status_code"] != "503" ||
		attrs["authsidecar.result"] != "unavailable" {
		t.Errorf("attributes %v", attrs)
	}
}

func TestIdentityProviderCallsAreSpansNamedByTheirOperation(t *testing.T) {
	tr, rec := recording(t)
	var gotParent string
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotParent = r.Header.Get("Traceparent")
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(idp.Close)
	client := &http.Client{Transport: tr.Transport(nil)}
	req, _ := http.NewRequestWithContext(WithOperation(context.Background(), OpJWKS), "GET", idp.URL+"/jwks", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.Header.Get("Traceparent") != "" {
		t.Error("the caller's request was changed")
	}
	s := rec.Ended()[0]
	if s.Name() != "identity provider jwks" || s.SpanKind() != trace.SpanKindClient || s.Status().Code.String() != "Error" || s.Parent().IsValid() {
		t.Errorf("span %q kind %v status %v parent %v", s.Name(), s.SpanKind(), s.Status(), s.Parent())
	}
	if want := "-" + s.SpanContext().SpanID().String() + "-"; !bytes.Contains([]byte(gotParent), []byte(want)) {
		t.Errorf("the identity provider got traceparent %q, want the span's", gotParent)
	}
}

func TestLogLinesInATracedRequestCarryItsIDs(t *testing.T) {
	tr, _ := recording(t)
	var buf bytes.Buffer
	log := Logger(slog.New(slog.NewJSONHandler(&buf, nil))).With("route", "payments")
	r, span := tr.Start(httptest.NewRequest("GET", "/", nil), trace.SpanKindClient, "outbound")
	log.InfoContext(r.Context(), "inside")
	log.Info("outside")
	span.End()
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	var in, out map[string]any
	_ = json.Unmarshal(lines[0], &in)
	_ = json.Unmarshal(lines[1], &out)
	if in["trace_id"] != span.SpanContext().TraceID().String() || in["span_id"] != span.SpanContext().SpanID().String() || in["route"] != "payments" {
		t.Errorf("inside the request: %s", lines[0])
	}
	if _, ok := out["trace_id"]; ok {
		t.Errorf("outside any request: %s", lines[1])
	}
}
