package metrics_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/authsidecar/authsidecar/metrics"
)

// exercised returns a registry as a running sidecar has it, every family
// with at least one series so that each appears in the exposition.
func exercised(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := metrics.NewRegistry()
	m := metrics.New(reg, "test")
	m.InitInbound()
	m.InboundDuration.WithLabelValues("allowed").Observe(0.001)
	m.TokenCacheRequests.WithLabelValues("hit").Inc()
	m.OutboundRequests.WithLabelValues("payments", "200").Inc()
	m.OutboundDuration.WithLabelValues("payments").Observe(0.002)
	m.TokenFetches.WithLabelValues("payments", "success").Inc()
	m.TokenFetchDuration.WithLabelValues("payments").Observe(0.05)
	m.TokenExpiry.WithLabelValues("payments").Set(1.9e9)
	m.JWKSRefreshes.WithLabelValues("https://idp", "success").Inc()
	m.IntrospectionRequests.WithLabelValues("active").Inc()
	return reg
}

func TestPromlintFindsNothing(t *testing.T) {
	srv := httptest.NewServer(metrics.NewAdminHandler(exercised(t), metrics.NewReadiness()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	problems, err := promlint.New(resp.Body).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestSpecFamiliesAreExposed(t *testing.T) {
	want := []string{
		"authsidecar_inbound_requests_total", "authsidecar_inbound_request_duration_seconds",
		"authsidecar_inbound_token_rejections_total", "authsidecar_outbound_requests_total",
		"authsidecar_outbound_request_duration_seconds", "authsidecar_token_fetches_total",
		"authsidecar_token_fetch_duration_seconds", "authsidecar_token_expiry_timestamp_seconds",
		"authsidecar_jwks_refreshes_total", "authsidecar_introspection_requests_total", "authsidecar_build_info",
		"go_goroutines", "process_resident_memory_bytes",
	}
	if n, err := testutil.GatherAndCount(exercised(t), want...); err != nil || n == 0 {
		t.Fatalf("GatherAndCount = %d, %v", n, err)
	}
	got := familyNames(t, exercised(t))
	for _, name := range want {
		if !got[name] {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// TestDashboardQueriesOnlyExposedMetrics keeps the Grafana dashboard in the
// chart true to the binary: every metric a panel queries must exist.
func TestDashboardQueriesOnlyExposedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../charts/authsidecar/dashboards/authsidecar.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	exposed := familyNames(t, exercised(t))
	name := regexp.MustCompile(`\b(authsidecar_[a-z_]+|go_[a-z_]+|process_[a-z_]+)`)
	var exprs []string
	collectExprs(dash, &exprs)
	if len(exprs) == 0 {
		t.Fatal("no expr in the dashboard")
	}
	for _, expr := range exprs {
		for _, m := range name.FindAllString(expr, -1) {
			family := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base := strings.TrimSuffix(m, suffix); base != m && exposed[base] {
					family = base
				}
			}
			if !exposed[family] {
				t.Errorf("the dashboard queries %s, which /metrics does not expose (in %q)", m, expr)
			}
		}
	}
}

func collectExprs(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expr" {
				*out = append(*out, s)
			} else {
				collectExprs(x, out)
			}
		}
	case []any:
		for _, x := range v {
			collectExprs(x, out)
		}
	}
}

func familyNames(t *testing.T, reg *prometheus.Registry) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

func TestReadinessFlipsOnShutdown(t *testing.T) {
	r := metrics.NewReadiness()
	srv := httptest.NewServer(metrics.NewAdminHandler(prometheus.NewRegistry(), r))
	defer srv.Close()
	get := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 || body != "{\"status\":\"ready\"}\n" {
		t.Fatalf("no checks: %d %s, want 200 ready", code, body)
	}
	r.Add("issuer https://idp", func() error { return errors.New("keys not loaded") })
	if code, body := get(); code != 503 || !strings.Contains(body, `"issuer https://idp":"keys not loaded"`) {
		t.Errorf("failing check: %d %s, want 503 naming the issuer", code, body)
	}
	r.Add("issuer https://idp", func() error { return nil })
	r.SetStopping()
	if code, body := get(); code != 503 || !strings.Contains(body, `"not_ready":["shutdown"]`) {
		t.Errorf("stopping: %d %s, want 503 shutdown", code, body)
	}
}
