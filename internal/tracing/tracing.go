// Package tracing is the sidecar's OpenTelemetry tracing: a server span
// per inbound request, a client span per outbound call and per
// identity-provider call, W3C context passed on, and trace ids on log
// lines. It is configured by the standard OTEL_* variables only, and is off
// unless they ask for it: then nothing of it runs on the request path.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Settings are what the OTEL_* variables ask for. The OTLP exporters read
// the rest themselves from the environment: endpoint, headers, timeout,
// compression, certificates (OTEL_EXPORTER_OTLP_*), and the batch
// processor its OTEL_BSP_* limits.
type Settings struct {
	// Enabled: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint set, and
	// OTEL_SDK_DISABLED not true.
	Enabled bool
	// Protocol is "grpc" or "http/protobuf", the OTLP default.
	Protocol   string
	Sampler    sdktrace.Sampler
	Propagator propagation.TextMapPropagator
	// SamplerName is OTEL_TRACES_SAMPLER as given, for `check`.
	SamplerName string
}

// VarError is a bad OTEL_* variable.
type VarError struct {
	Var string
	Err error
}

func (e *VarError) Error() string { return e.Var + ": " + e.Err.Error() }

// Parse reads the OTEL_* variables of environ. Each bad one is a
// *VarError: a typo must stop the start, not turn tracing off unnoticed.
func Parse(environ map[string]string) (Settings, []error) {
	var (
		s    Settings
		errs []error
	)
	bad := func(v, format string, args ...any) {
		errs = append(errs, &VarError{Var: v, Err: fmt.Errorf(format, args...)})
	}
	get := func(k string) string { return strings.TrimSpace(environ[k]) }

	disabled := false
	if v := get("OTEL_SDK_DISABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("OTEL_SDK_DISABLED", "want true or false, got %q", v)
		}
		disabled = b
	}
	endpoint := get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || get("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	switch v := get("OTEL_TRACES_EXPORTER"); v {
	case "":
		s.Enabled = endpoint
	case "otlp":
		s.Enabled = true
	case "none":
	default:
		bad("OTEL_TRACES_EXPORTER", "want otlp or none, got %q (the sidecar exports traces by OTLP only)", v)
	}
	s.Enabled = s.Enabled && !disabled

	s.Protocol = "http/protobuf"
	for _, k := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} { // the second wins
		switch v := get(k); v {
		case "":
		case "grpc", "http/protobuf":
			s.Protocol = v
		default:
			bad(k, "want grpc or http/protobuf, got %q", v)
		}
	}

	var err error
	s.SamplerName = get("OTEL_TRACES_SAMPLER")
	if s.Sampler, err = sampler(s.SamplerName, get("OTEL_TRACES_SAMPLER_ARG")); err != nil {
		var ve *VarError
		if errors.As(err, &ve) {
			errs = append(errs, ve)
		}
	}

	names := []string{"tracecontext", "baggage"}
	if v := get("OTEL_PROPAGATORS"); v != "" {
		names = strings.Split(v, ",")
		for i := range names {
			names[i] = strings.TrimSpace(names[i])
		}
	}
	if s.Propagator, err = autoprop.TextMapPropagator(names...); err != nil {
		bad("OTEL_PROPAGATORS", "%v", err)
	}
	return s, errs
}

// sampler is OTEL_TRACES_SAMPLER and its argument as the OpenTelemetry
// specification defines them; the default is parentbased_always_on.
func sampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 {
			return nil, &VarError{Var: "OTEL_TRACES_SAMPLER_ARG", Err: fmt.Errorf("want a ratio from 0 to 1, got %q", arg)}
		}
		return sdktrace.TraceIDRatioBased(v), nil
	}
	switch strings.ToLower(name) {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(r), nil
	}
	return nil, &VarError{Var: "OTEL_TRACES_SAMPLER", Err: fmt.Errorf("%q is not one of always_on, always_off, traceidratio, "+
		"parentbased_always_on, parentbased_always_off, parentbased_traceidratio", name)}
}

// Tracing is tracing switched on: its provider, tracer and propagator.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// New starts the exporter and the provider for s; version names the
// service's version. The service's name is OTEL_SERVICE_NAME, or
// "authsidecar".
func New(ctx context.Context, s Settings, version string) (*Tracing, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if s.Protocol == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: the OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("authsidecar"), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing: the resource: %w", err)
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithSampler(s.Sampler))
	return newTracing(provider, s.Propagator, version), nil
}

func newTracing(provider *sdktrace.TracerProvider, p propagation.TextMapPropagator, version string) *Tracing {
	return &Tracing{
		provider:   provider,
		tracer:     provider.Tracer("github.com/authsidecar/authsidecar", trace.WithInstrumentationVersion(version)),
		propagator: p,
	}
}

// Shutdown exports the spans still buffered, within ctx.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

// Attribute keys of the sidecar's own, beside the semantic conventions'.
const (
	ResultKey         = attribute.Key("authsidecar.result")
	ReasonKey         = attribute.Key("authsidecar.reason")
	ClientIDKey       = attribute.Key("authsidecar.client_id")
	RouteKey          = attribute.Key("authsidecar.route")
	UpstreamStatusKey = attribute.Key("authsidecar.upstream_status")
	OperationKey      = attribute.Key("authsidecar.identity_provider.operation")
)

// Start starts the span of a proxied request, of kind server (inbound) or
// client (outbound), as a child of the caller's trace context in r's
// headers, and puts the new span's context into r's headers for the next
// hop. name is "inbound" or "outbound".
func (t *Tracing) Start(r *http.Request, kind trace.SpanKind, name string) (*http.Request, trace.Span) {
	ctx := t.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, name+" "+spanMethod(r.Method), trace.WithSpanKind(kind), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.ServerAddressKey.String(hostOnly(r.Host)),
		semconv.NetworkProtocolVersionKey.String(protocolVersion(r)),
		semconv.ClientAddressKey.String(hostOnly(r.RemoteAddr)),
	))
	t.propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return r.WithContext(ctx), span
}

// End ends a span started by Start with the answer's status and attrs,
// and r's path as it was sent on (inbound: normalized). 5xx marks the span
// failed; a refusal (4xx) is the sidecar doing its job, not an error.
func End(span trace.Span, r *http.Request, status int, attrs ...attribute.KeyValue) {
	span.SetAttributes(semconv.URLPathKey.String(r.URL.EscapedPath()), semconv.HTTPResponseStatusCodeKey.Int(status))
	span.SetAttributes(attrs...)
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// spanMethod is the method for a span name: one of the known methods, or
// "HTTP", so that made-up methods cannot blow up span-name cardinality.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "HTTP"
}

func protocolVersion(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "2"
	}
	return "1.1"
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// Operation names an identity-provider call for its span.
type Operation string

// The identity-provider calls the sidecar makes.
const (
	OpToken         Operation = "token"
	OpJWKS          Operation = "jwks"
	OpDiscovery     Operation = "discovery"
	OpIntrospection Operation = "introspection"
)

type operationKey struct{}

// WithOperation marks ctx's requests as identity-provider calls of op.
func WithOperation(ctx context.Context, op Operation) context.Context {
	return context.WithValue(ctx, operationKey{}, op)
}

// Transport returns base (nil: http.DefaultTransport) with a client span
// around each request to the identity provider, named by the operation
// WithOperation gave its context, and the span's context passed on.
func (t *Tracing) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base, t: t}
}

type transport struct {
	base http.RoundTripper
	t    *Tracing
}

func (tr *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	op, _ := r.Context().Value(operationKey{}).(Operation)
	if op == "" {
		op = "call"
	}
	ctx, span := tr.t.tracer.Start(r.Context(), "identity provider "+string(op), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			OperationKey.String(string(op)),
			semconv.HTTPRequestMethodKey.String(r.Method),
			semconv.ServerAddressKey.String(r.URL.Hostname()),
			semconv.URLPathKey.String(r.URL.Path),
		))
	r = r.Clone(ctx) // a RoundTripper must not change the caller's request
	tr.t.propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := tr.base.RoundTrip(r)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "no answer")
		span.End()
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCodeKey.Int(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	// The span ends with the headers: the body is small, and read by
	// whoever asked, perhaps never to the end.
	span.End()
	return resp, nil
}
