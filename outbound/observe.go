package outbound

import (
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/authsidecar/authsidecar/internal/tracing"
	"github.com/authsidecar/authsidecar/proxy"
)

// Results of an outbound call, as the access log and the trace give them.
const (
	resultForwarded     = "forwarded"      // the upstream answered
	resultUnavailable   = "unavailable"    // no token to be had
	resultRefused       = "refused"        // unknown route, method not forwarded
	resultUpstreamError = "upstream_error" // not reached, or too slow
	resultCancelled     = "cancelled"      // the app left first
)

// observer records every call of the app: the access-log line and the
// call's client span. The counts are the routes' (Route.serve).
type observer struct {
	log       *slog.Logger
	accessLog bool
	tracer    *tracing.Tracing // nil: tracing is off
}

// observe has serve answer req on a status writer over w, and records the
// outcome; serve returns the route it called, "" for none.
func (o *observer) observe(w http.ResponseWriter, req *http.Request, serve func(*proxy.StatusWriter, *http.Request) string) {
	start := time.Now()
	proxy.DropConnectionNamed(req.Header)
	// Before anything else, so that the access log carries the id the
	// upstream is sent.
	proxy.EnsureRequestID(req.Header)
	var span trace.Span
	if o.tracer != nil {
		req, span = o.tracer.Start(req, trace.SpanKindClient, "outbound")
	}
	sw := proxy.NewStatusWriter(w)
	defer sw.Release()
	route := serve(sw, req)
	if span == nil && !o.accessLog {
		return
	}
	result, upstreamStatus := outcomeOf(sw)
	if span != nil {
		tracing.End(span, req, sw.Status(), tracing.ResultKey.String(result), tracing.ReasonKey.String(sw.ErrorCode()),
			tracing.RouteKey.String(route), tracing.UpstreamStatusKey.Int(upstreamStatus))
	}
	if o.accessLog {
		proxy.LogAccess(req.Context(), o.log, req, proxy.Access{
			Direction: "outbound", Status: sw.Status(), Result: result, Reason: sw.ErrorCode(),
			Route: route, UpstreamStatus: upstreamStatus, Duration: time.Since(start),
		})
	}
}

// outcomeOf is the result of the call answered on sw, and the upstream's
// status when it answered.
func outcomeOf(sw *proxy.StatusWriter) (result string, upstreamStatus int) {
	switch code := sw.ErrorCode(); {
	case code == "token_unavailable":
		return resultUnavailable, 0
	case code == "upstream_unavailable" || code == "upstream_timeout":
		return resultUpstreamError, 0
	case code != "":
		return resultRefused, 0
	case sw.Status() == 499:
		return resultCancelled, 0
	}
	return resultForwarded, sw.Status()
}
