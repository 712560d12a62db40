package chart

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// TestMonitoringFollowsTheClusterAPIs: the Prometheus Operator's objects
// are rendered only where the cluster serves monitoring.coreos.com/v1, or
// when monitoring.trustCRDsExist says so.
func TestMonitoringFollowsTheClusterAPIs(t *testing.T) {
	monitors := []struct {
		enable string
		kinds  []string
	}{
		{"monitoring.podMonitor.enabled=true", []string{"PodMonitor/demo-authsidecar"}},
		{"monitoring.serviceMonitor.enabled=true", []string{"Service/demo-authsidecar-metrics", "ServiceMonitor/demo-authsidecar"}},
		{"monitoring.prometheusRule.enabled=true", []string{"PrometheusRule/demo-authsidecar"}},
	}
	ways := []struct {
		name   string
		args   []string
		render bool
	}{
		{"without the API", nil, false},
		{"with --api-versions monitoring.coreos.com/v1", []string{"--api-versions", "monitoring.coreos.com/v1"}, true},
		{"with another monitoring API only", []string{"--api-versions", "monitoring.coreos.com/v1alpha1"}, false},
		{"forced by trustCRDsExist", []string{"--set", "monitoring.trustCRDsExist=true"}, true},
	}
	for _, m := range monitors {
		for _, w := range ways {
			t.Run(m.enable+" "+w.name, func(t *testing.T) {
				objs := render(t, chartDir, append([]string{"--set", m.enable}, w.args...)...)
				var got []string
				for _, o := range objs {
					if o.Kind != "Deployment" && o.Kind != "ServiceAccount" {
						got = append(got, o.key())
					}
				}
				var want []string
				if w.render {
					want = m.kinds
				}
				diffLists(t, "monitoring objects", sorted(got), want)
			})
		}
	}
}

// renderRule renders the PrometheusRule with extra --set values.
func renderRule(t *testing.T, set ...string) *PrometheusRule {
	t.Helper()
	return renderRuleArgs(t, valuesArgs("", set)...)
}

func renderRuleArgs(t *testing.T, extra ...string) *PrometheusRule {
	t.Helper()
	args := []string{"--api-versions", "monitoring.coreos.com/v1", "--set", "monitoring.prometheusRule.enabled=true"}
	objs := render(t, chartDir, append(args, extra...)...)
	return find[PrometheusRule](t, objs, "PrometheusRule", "demo-authsidecar")
}

func rulesOf(t *testing.T, pr *PrometheusRule) map[string]alertRule {
	t.Helper()
	if len(pr.Spec.Groups) != 1 || pr.Spec.Groups[0].Name != "authsidecar" {
		t.Fatalf("groups = %+v, want one named authsidecar", pr.Spec.Groups)
	}
	out := map[string]alertRule{}
	for _, r := range pr.Spec.Groups[0].Rules {
		if _, dup := out[r.Alert]; dup {
			t.Errorf("alert %s twice", r.Alert)
		}
		out[r.Alert] = r
	}
	return out
}

func ruleNames(rules map[string]alertRule) []string {
	var names []string
	for n := range rules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var promql = parser.NewParser(parser.Options{})

// selectors parses expr as PromQL and returns its vector selectors.
func selectors(t *testing.T, expr string) []*parser.VectorSelector {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	if err != nil {
		t.Fatalf("not PromQL: %v\n%s", err, expr)
	}
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// alertTemplateFuncs stand in for Prometheus' alert template functions, so
// that annotations can be run as the templates Prometheus runs.
var alertTemplateFuncs = template.FuncMap{
	"query": func(string) ([]any, error) { return nil, nil }, "first": func([]any) any { return nil },
	"humanize": func(float64) string { return "12.5" }, "humanizeDuration": func(float64) string { return "12s" },
	"humanizeTimestamp": func(float64) string { return "" },
}

// expandAlertTemplate runs an annotation as Prometheus does: with $labels
// and $value defined first (rules/alerting.go).
func expandAlertTemplate(text string, lbls map[string]string, value float64) (string, error) {
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	tmpl, err := template.New("").Funcs(alertTemplateFuncs).Option("missingkey=zero").Parse(defs + text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	err = tmpl.Execute(&b, struct {
		Labels, ExternalLabels map[string]string
		ExternalURL            string
		Value                  float64
	}{lbls, nil, "", value})
	return b.String(), err
}

// sampleAlertLabels are the labels an alert of the chart carries.
var sampleAlertLabels = map[string]string{
	"namespace": "shop", "pod": "payments-7d9f-x2x", "route": "ledger", "issuer": "https://idp.example.com/",
	"reason": "expired", "file": "INBOUND_RULES_FILE",
}

func TestPrometheusRule(t *testing.T) {
	known := metricFamilies(t)
	rules := rulesOf(t, renderRule(t))
	diffLists(t, "alerts", ruleNames(rules), []string{
		"AuthsidecarConfigReloadFailed", "AuthsidecarJWKSRefreshFailing", "AuthsidecarJWKSStale",
		"AuthsidecarTokenExpiring", "AuthsidecarTokenFetchFailing", "AuthsidecarTokenRejectionSpike",
	})
	// Which metric each alert reads; every one is a family SPEC lists.
	wantMetrics := map[string][]string{
		"AuthsidecarConfigReloadFailed":  {"authsidecar_config_reloads_total"},
		"AuthsidecarJWKSRefreshFailing":  {"authsidecar_jwks_refreshes_total"},
		"AuthsidecarJWKSStale":           {"authsidecar_jwks_refreshes_total"},
		"AuthsidecarTokenExpiring":       {"authsidecar_token_expiry_timestamp_seconds"},
		"AuthsidecarTokenFetchFailing":   {"authsidecar_token_fetches_total"},
		"AuthsidecarTokenRejectionSpike": {"authsidecar_inbound_token_rejections_total"},
	}
	wantSeverity := map[string]string{"AuthsidecarTokenExpiring": "critical"}
	wantFor := map[string]string{
		"AuthsidecarTokenFetchFailing": "5m", "AuthsidecarJWKSRefreshFailing": "5m",
		"AuthsidecarJWKSStale": "15m", "AuthsidecarTokenRejectionSpike": "5m",
	}
	for name, r := range rules {
		t.Run(name, func(t *testing.T) {
			used := map[string]bool{}
			for _, vs := range selectors(t, r.Expr) {
				if !known[vs.Name] {
					t.Errorf("reads %q, which is not a metric SPEC.md lists", vs.Name)
				}
				used[vs.Name] = true
				if !hasMatcher(vs.LabelMatchers, labels.MatchEqual, "namespace", "shop") {
					t.Errorf("%s is not limited to the release's namespace: %v", vs.Name, vs.LabelMatchers)
				}
			}
			var got []string
			for n := range used {
				got = append(got, n)
			}
			diffLists(t, "metrics", sorted(got), wantMetrics[name])
			severity := "warning"
			if s, ok := wantSeverity[name]; ok {
				severity = s
			}
			if !reflect.DeepEqual(r.Labels, map[string]string{"severity": severity}) {
				t.Errorf("labels = %v, want severity %s only", r.Labels, severity)
			}
			if r.For != wantFor[name] {
				t.Errorf("for = %q, want %q", r.For, wantFor[name])
			}
			for _, k := range []string{"summary", "description"} {
				text := r.Annotations[k]
				if text == "" {
					t.Errorf("no %s", k)
				}
				if _, err := expandAlertTemplate(text, sampleAlertLabels, 12); err != nil {
					t.Errorf("%s is not a valid alert template: %v", k, err)
				}
			}
			if len(r.Annotations) != 2 {
				t.Errorf("annotations = %v, want summary and description", r.Annotations)
			}
		})
	}

	// The exact expressions of the alerts whose logic is least obvious.
	wantExpr := map[string]string{
		"AuthsidecarTokenFetchFailing": `sum by (namespace, pod, route) (increase(authsidecar_token_fetches_total{namespace="shop", result="error"}[10m])) > 0
unless on (namespace, pod, route)
sum by (namespace, pod, route) (increase(authsidecar_token_fetches_total{namespace="shop", result="success"}[10m])) > 0`,
		"AuthsidecarTokenExpiring": `(min by (namespace, pod, route) (authsidecar_token_expiry_timestamp_seconds{namespace="shop"} > 0) - time())
< 30`,
		"AuthsidecarJWKSStale": `sum by (namespace, pod, issuer) (increase(authsidecar_jwks_refreshes_total{namespace="shop", result="success"}[1h])) == 0
and on (namespace, pod, issuer)
sum by (namespace, pod, issuer) (authsidecar_jwks_refreshes_total{namespace="shop", result="success"} offset 1h)`,
		"AuthsidecarTokenRejectionSpike": `sum by (namespace, reason) (rate(authsidecar_inbound_token_rejections_total{namespace="shop"}[5m])) > 1
unless
sum by (namespace, reason) (rate(authsidecar_inbound_token_rejections_total{namespace="shop"}[5m]))
<= 3 * sum by (namespace, reason) (rate(authsidecar_inbound_token_rejections_total{namespace="shop"}[1h] offset 5m))`,
	}
	for name, want := range wantExpr {
		if got := rules[name].Expr; got != want {
			t.Errorf("%s expr:\n%s\nwant:\n%s", name, got, want)
		}
	}
	// What an operator reads, for two of them.
	for name, want := range map[string]string{
		"AuthsidecarTokenExpiring": "shop/payments-7d9f-x2x: the token for route ledger expires in 12s and has not been refreshed.",
		"AuthsidecarConfigReloadFailed": "shop/payments-7d9f-x2x refused a changed INBOUND_RULES_FILE within 15m and keeps the last good version " +
			"(see the sidecar's log for why). Last successful reload: none since start.",
	} {
		got, err := expandAlertTemplate(rules[name].Annotations["description"], sampleAlertLabels, 12)
		if err != nil || got != want {
			t.Errorf("%s description = %q (%v), want %q", name, got, err, want)
		}
	}
}

func hasMatcher(ms []*labels.Matcher, typ labels.MatchType, name, value string) bool {
	for _, m := range ms {
		if m.Type == typ && m.Name == name && m.Value == value {
			return true
		}
	}
	return false
}

func TestPrometheusRuleValues(t *testing.T) {
	t.Run("thresholds, windows and extra labels are the user's", func(t *testing.T) {
		rules := rulesOf(t, renderRuleArgs(t,
			"--set", "monitoring.prometheusRule.alerts.tokenExpiring.threshold=1m30s",
			"--set", "monitoring.prometheusRule.alerts.tokenExpiring.for=1m",
			"--set-json", "monitoring.prometheusRule.alerts.rejectionSpike.minRate=0.5",
			"--set", "monitoring.prometheusRule.alerts.rejectionSpike.factor=10",
			"--set", "monitoring.prometheusRule.alerts.jwksStale.after=3h",
			"--set", "monitoring.prometheusRule.alerts.configReloadFailed.window=1h",
			"--set", "monitoring.prometheusRule.alertLabels.team=payments",
		))
		for name, want := range map[string][]string{
			"AuthsidecarTokenExpiring":       {"< 90"},
			"AuthsidecarTokenRejectionSpike": {"[5m])) > 0.5\n", "<= 10 * sum"},
			"AuthsidecarJWKSStale":           {"[3h])) == 0", "offset 3h)"},
			"AuthsidecarConfigReloadFailed":  {`result="error"}[1h])) > 0`},
		} {
			for _, w := range want {
				if !strings.Contains(rules[name].Expr, w) {
					t.Errorf("%s expr lacks %q:\n%s", name, w, rules[name].Expr)
				}
			}
			selectors(t, rules[name].Expr)
		}
		if r := rules["AuthsidecarTokenExpiring"]; r.For != "1m" || !reflect.DeepEqual(r.Labels, map[string]string{"severity": "critical", "team": "payments"}) {
			t.Errorf("AuthsidecarTokenExpiring for %q labels %v", r.For, r.Labels)
		}
	})
	t.Run("an alert can be turned off", func(t *testing.T) {
		rules := rulesOf(t, renderRule(t, "monitoring.prometheusRule.alerts.jwksStale.enabled=false", "monitoring.prometheusRule.alerts.rejectionSpike.enabled=false"))
		diffLists(t, "alerts", ruleNames(rules), []string{
			"AuthsidecarConfigReloadFailed", "AuthsidecarJWKSRefreshFailing", "AuthsidecarTokenExpiring", "AuthsidecarTokenFetchFailing",
		})
	})
	t.Run("an empty selector watches every sidecar, another one replaces the namespace", func(t *testing.T) {
		for selector, want := range map[string][]*labels.Matcher{
			"":                                 nil,
			`namespace="shop"\, pod=~"pay-.*"`: {labels.MustNewMatcher(labels.MatchEqual, "namespace", "shop"), labels.MustNewMatcher(labels.MatchRegexp, "pod", "pay-.*")},
		} {
			rules := rulesOf(t, renderRule(t, "monitoring.prometheusRule.selector="+selector))
			for _, vs := range selectors(t, rules["AuthsidecarTokenExpiring"].Expr) {
				got := vs.LabelMatchers[:len(vs.LabelMatchers)-1] // the last one is __name__
				if len(got) != len(want) {
					t.Fatalf("selector %q: matchers %v, want %v", selector, got, want)
				}
				for i := range want {
					if got[i].String() != want[i].String() {
						t.Errorf("selector %q: matcher %d = %v, want %v", selector, i, got[i], want[i])
					}
				}
			}
		}
	})
	t.Run("a PromQL duration is required for windows", func(t *testing.T) {
		_, err := helmTemplate(t, chartDir, "--set", "monitoring.prometheusRule.alerts.jwksStale.after=1 hour")
		wantErr(t, err, "- at '/monitoring/prometheusRule/alerts/jwksStale/after': '1 hour' does not match pattern")
	})
}
