package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// Access is what the access log records of one request beyond the request
// itself. Empty fields are left out of the line.
type Access struct {
	// Direction is "inbound" or "outbound".
	Direction string
	Status    int
	// Result is the request's outcome: the inbound metrics' result label,
	// or for outbound forwarded, unavailable, refused, upstream_error.
	Result string
	// Reason says why the sidecar answered itself: the token's rejection
	// reason inbound (expired, …), else the answer's error code.
	Reason string
	// ClientID is the verified caller's (inbound); Route the route called
	// (outbound).
	ClientID, Route string
	// UpstreamStatus is what the app or upstream answered, 0 when it was
	// not asked or did not answer.
	UpstreamStatus int
	Duration       time.Duration
}

// LogAccess writes r's access-log line at info level, with ctx for the
// trace ids. The path is the one the app or upstream was sent (inbound:
// normalized), escaped as sent, never the query, which may carry
// anything; the request id is the one sent on.
func LogAccess(ctx context.Context, log *slog.Logger, r *http.Request, a Access) {
	attrs := make([]slog.Attr, 0, 11)
	attrs = append(attrs,
		slog.String("direction", a.Direction),
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.Int("status", a.Status),
		slog.String("result", a.Result),
	)
	for _, f := range [...]struct{ k, v string }{{"reason", a.Reason}, {"client_id", a.ClientID}, {"route", a.Route}} {
		if f.v != "" {
			attrs = append(attrs, slog.String(f.k, f.v))
		}
	}
	attrs = append(attrs,
		slog.Float64("duration_ms", float64(a.Duration.Microseconds())/1000),
		slog.String("request_id", r.Header.Get(RequestIDHeader)),
	)
	if a.UpstreamStatus != 0 {
		attrs = append(attrs, slog.Int("upstream_status", a.UpstreamStatus))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}
