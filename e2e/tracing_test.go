package e2e

// OpenTelemetry tracing through two sidecars into an OTLP receiver of the
// test's own that decodes the real protobuf: sidecar A exports over
// OTLP/HTTP, sidecar B over OTLP/gRPC. The test plays app A, starting the
// trace; app B is the real upstream and shows what reaches it.

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver collects the spans exported to it, by the exporting
// service's name, over OTLP/HTTP (protobuf) and OTLP/gRPC.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	HTTPURL, GRPCURL string

	mu    sync.Mutex
	spans map[string][]*tracepb.Span
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	rcv := &otlpReceiver{spans: map[string][]*tracepb.Span{}}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("OTLP/HTTP export to %s as %q, want /v1/traces as application/x-protobuf", r.URL.Path, r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			t.Errorf("OTLP/HTTP export: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rcv.add(&req)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(web.Close)
	rcv.HTTPURL = web.URL

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	rcv.GRPCURL = "http://" + ln.Addr().String()
	return rcv
}

// Export implements the OTLP/gRPC trace service.
func (rcv *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	rcv.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (rcv *otlpReceiver) add(req *coltracepb.ExportTraceServiceRequest) {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.ScopeSpans {
			rcv.spans[service] = append(rcv.spans[service], ss.Spans...)
		}
	}
}

// find returns the spans of service named name.
func (rcv *otlpReceiver) find(service, name string) []*tracepb.Span {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range rcv.spans[service] {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// await waits for a span of service named name that match accepts.
func (rcv *otlpReceiver) await(t *testing.T, service, name string, match func(*tracepb.Span) bool) *tracepb.Span {
	t.Helper()
	var found *tracepb.Span
	eventually(t, 10*time.Second, service+" exports a span "+name, func() (bool, string) {
		for _, s := range rcv.find(service, name) {
			if match == nil || match(s) {
				found = s
				return true, ""
			}
		}
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		var names []string
		for _, s := range rcv.spans[service] {
			names = append(names, s.Name)
		}
		return false, fmt.Sprint("spans so far: ", names)
	})
	return found
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return fmt.Sprint(v.IntValue)
			}
		}
	}
	return ""
}

func TestTracingThroughTwoSidecars(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	rcv := startOTLPReceiver(t)
	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS, "payments:write", appB, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.GRPCURL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_SERVICE_NAME":           "payments-sidecar",
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
		"AUTHSIDECAR_ACCESS_LOG":      "true",
	})
	addrs := freeSidecarAddrs(t)
	a := startSidecar(t, mergeEnv(addrs.Env(), map[string]string{
		"AUTHSIDECAR_OUTBOUND_ROUTES":         "payments",
		"AUTHSIDECAR_OUTBOUND_ISSUER":         idp.Issuer,
		"AUTHSIDECAR_OUTBOUND_CLIENT_ID":      basicClient,
		"AUTHSIDECAR_OUTBOUND_CLIENT_SECRET":  basicSecret,
		"AUTHSIDECAR_ROUTE_PAYMENTS_URL":      b.Addrs.InboundURL(),
		"AUTHSIDECAR_ROUTE_PAYMENTS_RESOURCE": paymentsRS,
		"AUTHSIDECAR_ROUTE_PAYMENTS_SCOPES":   "payments:write",
		"AUTHSIDECAR_ACCESS_LOG":              "true",
		"OTEL_TRACES_EXPORTER":                "otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT":         rcv.HTTPURL,
		"OTEL_SERVICE_NAME":                   "orders-sidecar",
		"OTEL_BSP_SCHEDULE_DELAY":             "100",
	}))
	b.WaitReady(t, b.Addrs.AdminURL())
	a.WaitReady(t, addrs.AdminURL())

	// App A's call, in a trace of its own.
	const traceID, appSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := call(t, http.MethodPost, addrs.OutboundURL()+"/payments/charges?id=7", []byte("charge"), map[string]string{
		"Traceparent": "00-" + traceID + "-" + appSpan + "-01",
	})
	if r.Status != http.StatusOK {
		t.Fatalf("through A and B: %s", r)
	}

	clientSpan := rcv.await(t, "orders-sidecar", "outbound POST", func(s *tracepb.Span) bool {
		return hex.EncodeToString(s.TraceId) == traceID
	})
	if got := hex.EncodeToString(clientSpan.ParentSpanId); got != appSpan || clientSpan.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("A's span: parent %s kind %v, want app A's span %s and CLIENT", got, clientSpan.Kind, appSpan)
	}
	for k, want := range map[string]string{"authsidecar.route": "payments", "authsidecar.result": "forwarded",
		"http.request.method": "POST", "http.response.status_code": "200", "authsidecar.upstream_status": "200"} {
		if got := attr(clientSpan.Attributes, k); got != want {
			t.Errorf("A's span: %s = %q, want %q", k, got, want)
		}
	}
	serverSpan := rcv.await(t, "payments-sidecar", "inbound POST", func(s *tracepb.Span) bool {
		return hex.EncodeToString(s.TraceId) == traceID
	})
	if got, want := hex.EncodeToString(serverSpan.ParentSpanId), hex.EncodeToString(clientSpan.SpanId); got != want || serverSpan.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("B's span: parent %s kind %v, want A's span %s and SERVER", got, serverSpan.Kind, want)
	}
	for k, want := range map[string]string{"authsidecar.result": "allowed", "authsidecar.client_id": basicClient,
		"url.path": "/charges", "http.response.status_code": "200"} {
		if got := attr(serverSpan.Attributes, k); got != want {
			t.Errorf("B's span: %s = %q, want %q", k, got, want)
		}
	}
	// App B is B's span's child.
	seen := appB.Last(t)
	if want := "00-" + traceID + "-" + hex.EncodeToString(serverSpan.SpanId) + "-01"; seen.Header.Get("Traceparent") != want {
		t.Errorf("app B got traceparent %q, want %q", seen.Header.Get("Traceparent"), want)
	}

	// The identity-provider calls: A's discovery and token request, B's
	// discovery and key set.
	for _, c := range []struct{ service, op string }{
		{"orders-sidecar", "discovery"}, {"orders-sidecar", "token"},
		{"payments-sidecar", "discovery"}, {"payments-sidecar", "jwks"},
	} {
		s := rcv.await(t, c.service, "identity provider "+c.op, nil)
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT || attr(s.Attributes, "http.response.status_code") != "200" ||
			attr(s.Attributes, "authsidecar.identity_provider.operation") != c.op {
			t.Errorf("%s's %s span: kind %v, attributes %v", c.service, c.op, s.Kind, s.Attributes)
		}
	}

	// A refusal is traced too, with its reason, and is no error.
	if r := call(t, http.MethodGet, b.Addrs.InboundURL()+"/charges", nil, map[string]string{
		"Traceparent": "00-" + strings.Repeat("ab", 16) + "-" + appSpan + "-01",
	}); r.Status != http.StatusUnauthorized {
		t.Fatalf("B without a token: %s", r)
	}
	refused := rcv.await(t, "payments-sidecar", "inbound GET", func(s *tracepb.Span) bool {
		return hex.EncodeToString(s.TraceId) == strings.Repeat("ab", 16)
	})
	if attr(refused.Attributes, "authsidecar.result") != "unauthenticated" || attr(refused.Attributes, "authsidecar.reason") != "missing" ||
		refused.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("B's refusal span: attributes %v status %v, want unauthenticated, missing, not an error", refused.Attributes, refused.Status)
	}

	// The access log lines carry the trace and span ids.
	for _, c := range []struct {
		name string
		s    *Sidecar
		span *tracepb.Span
	}{{"A", a, clientSpan}, {"B", b.Sidecar, serverSpan}} {
		var line map[string]any
		for _, rec := range c.s.LogLines() {
			if rec["msg"] == "request" && rec["trace_id"] == traceID {
				line = rec
			}
		}
		if line == nil {
			t.Errorf("%s logged no access line with trace_id %s:\n%s", c.name, traceID, c.s.Output())
			continue
		}
		if line["span_id"] != hex.EncodeToString(c.span.SpanId) {
			t.Errorf("%s's access line: span_id %v, want %x", c.name, line["span_id"], c.span.SpanId)
		}
	}
}

// TestTraceContextPassesThroughWhenTracingIsOff: without OTEL_* the
// sidecar makes no spans, and the caller's traceparent reaches the app
// as it was sent.
func TestTraceContextPassesThroughWhenTracingIsOff(t *testing.T) {
	t.Parallel()
	idp := startIDP(t, chainIDPConfig())
	appB := startApp(t)
	b := startInbound(t, idp, paymentsRS, "", appB, nil)
	b.WaitReady(t, b.Addrs.AdminURL())
	tok := idp.ClientCredentialsToken(t, basicClient, basicSecret, paymentsRS, "payments:write").AccessToken
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := bearer(tok)
	h["Traceparent"], h["Tracestate"] = tp, "vendor=1"
	if r := call(t, http.MethodGet, b.Addrs.InboundURL()+"/x", nil, h); r.Status != http.StatusOK {
		t.Fatalf("%s", r)
	}
	seen := appB.Last(t)
	if seen.Header.Get("Traceparent") != tp || seen.Header.Get("Tracestate") != "vendor=1" {
		t.Errorf("app B got traceparent %q tracestate %q, want them as sent", seen.Header.Get("Traceparent"), seen.Header.Get("Tracestate"))
	}
}
