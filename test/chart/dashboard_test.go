package chart

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const dashboardFile = "../../charts/authsidecar/dashboards/authsidecar.json"

// specMetricFamilies are the families SPEC.md's "Admin port" and "Rollouts,
// timeouts and reload" list. The
// repository's metrics/names.txt, when present, is the list instead.
var specMetricFamilies = []string{
	"authsidecar_inbound_requests_total",
	"authsidecar_inbound_request_duration_seconds",
	"authsidecar_inbound_token_rejections_total",
	"authsidecar_outbound_requests_total",
	"authsidecar_outbound_request_duration_seconds",
	"authsidecar_token_fetches_total",
	"authsidecar_token_fetch_duration_seconds",
	"authsidecar_token_expiry_timestamp_seconds",
	"authsidecar_jwks_refreshes_total",
	"authsidecar_introspection_requests_total",
	"authsidecar_build_info",
	// "Rollouts, timeouts and reload".
	"authsidecar_config_reloads_total",
	"authsidecar_config_last_reload_success_timestamp_seconds",
}

// metricFamilies reads ../../metrics/names.txt (one name a line, # for
// comments) if it exists, else returns specMetricFamilies.
func metricFamilies(t *testing.T) map[string]bool {
	t.Helper()
	names := specMetricFamilies
	f, err := os.Open("../../metrics/names.txt")
	switch {
	case err == nil:
		defer f.Close()
		names = nil
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line != "" && !strings.HasPrefix(line, "#") {
				names = append(names, strings.Fields(line)[0])
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		t.Logf("metric families from metrics/names.txt: %d", len(names))
	case !os.IsNotExist(err):
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	return set
}

var (
	promString     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers   = regexp.MustCompile(`\{[^{}]*\}`)
	promRange      = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdentifier = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords   = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true,
		"without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true,
	}
	// Grafana's variables, e.g. $__rate_interval or ${pod}.
	grafanaVariable = regexp.MustCompile(`\$\{?[A-Za-z0-9_]+\}?`)
)

// metricNames returns the metric names a PromQL expression reads: the
// identifiers left once strings, label matchers, ranges, grouping clauses,
// function calls, keywords and numbers are taken out.
func metricNames(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	s = grafanaVariable.ReplaceAllString(s, " ")
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdentifier.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // part of a number such as 1e3 or 0.5
		}
		if promKeywords[id] || strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") {
			continue // keyword or function call
		}
		names = append(names, id)
	}
	return names
}

// family strips the suffixes a histogram's series add to its family name.
func family(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(name, suffix); ok && strings.HasSuffix(f, "_seconds") {
			return f
		}
	}
	return name
}

func TestMetricNamesParser(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`sum by (result) (rate(authsidecar_inbound_requests_total{namespace=~"$namespace", pod=~"$pod"}[$__rate_interval]))`,
			[]string{"authsidecar_inbound_requests_total"}},
		{`histogram_quantile(0.99, sum by (le, route) (rate(authsidecar_outbound_request_duration_seconds_bucket{result="allowed"}[5m])))`,
			[]string{"authsidecar_outbound_request_duration_seconds_bucket"}},
		{`min by (route) (authsidecar_token_expiry_timestamp_seconds{pod=~"$pod"} - time())`,
			[]string{"authsidecar_token_expiry_timestamp_seconds"}},
		{`sum(rate(a_total[1m])) / ignoring(code) group_left sum(rate(b_total{x="rate(c)"}[1m])) > 1e3`,
			[]string{"a_total", "b_total"}},
		{`label_values(authsidecar_build_info{namespace=~"$namespace"}, pod)`,
			[]string{"authsidecar_build_info", "pod"}},
	}
	for _, tc := range cases {
		if got := metricNames(tc.expr); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// dashboard is the part of a Grafana dashboard these tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	return d
}

// exprs returns every PromQL expression of the dashboard, panels' and
// template variables' alike, keyed by where it is.
func (d dashboard) exprs() map[string]string {
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[p.Title+" "+tg.RefID] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		switch q := v.Query.(type) {
		case string:
			out["variable "+v.Name] = q
		case map[string]any:
			s, _ := q["query"].(string)
			out["variable "+v.Name] = s
		}
	}
	return out
}

func TestDashboardUsesOnlySpecMetrics(t *testing.T) {
	known := metricFamilies(t)
	d := readDashboard(t)
	used := map[string]bool{}
	for where, expr := range d.exprs() {
		if strings.TrimSpace(expr) == "" {
			t.Errorf("%s: empty expression", where)
			continue
		}
		names := metricNames(expr)
		if strings.HasPrefix(where, "variable ") && strings.HasPrefix(expr, "label_values(") {
			names = names[:1] // label_values(metric, label): the second name is a label
		}
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			if !known[family(n)] {
				t.Errorf("%s: %q is not a metric family SPEC.md names (in %q)", where, n, expr)
			}
			used[family(n)] = true
		}
	}
	var got []string
	for n := range used {
		got = append(got, n)
	}
	sort.Strings(got)
	// The dashboard shows every family the sidecar exports.
	want := []string{
		"authsidecar_build_info",
		"authsidecar_inbound_request_duration_seconds",
		"authsidecar_inbound_requests_total",
		"authsidecar_inbound_token_rejections_total",
		"authsidecar_introspection_requests_total",
		"authsidecar_jwks_refreshes_total",
		"authsidecar_outbound_request_duration_seconds",
		"authsidecar_outbound_requests_total",
		"authsidecar_token_expiry_timestamp_seconds",
		"authsidecar_token_fetch_duration_seconds",
		"authsidecar_token_fetches_total",
	}
	diffLists(t, "metric families the dashboard reads", got, want)
}

func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.UID != "authsidecar" || d.Title != "authsidecar" {
		t.Errorf("uid %q title %q, want authsidecar for both", d.UID, d.Title)
	}
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" {
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
					t.Errorf("panel %q datasource = %+v, want the ${datasource} variable", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	// The queries the issue asks for, verbatim.
	exprs := strings.Join(mapValues(d.exprs()), "\n")
	for _, want := range []string{
		`sum by (result) (rate(authsidecar_inbound_requests_total{namespace=~"$namespace", pod=~"$pod"}[$__rate_interval]))`,
		`sum by (reason) (rate(authsidecar_inbound_token_rejections_total{namespace=~"$namespace", pod=~"$pod"}[$__rate_interval]))`,
		`histogram_quantile(0.99, sum by (le) (rate(authsidecar_inbound_request_duration_seconds_bucket{namespace=~"$namespace", pod=~"$pod", result="allowed"}[$__rate_interval])))`,
		`histogram_quantile(0.99, sum by (le, route) (rate(authsidecar_outbound_request_duration_seconds_bucket{namespace=~"$namespace", pod=~"$pod"}[$__rate_interval])))`,
		`sum by (route, result) (increase(authsidecar_token_fetches_total{namespace=~"$namespace", pod=~"$pod"}[$__rate_interval]))`,
		`min by (route) (authsidecar_token_expiry_timestamp_seconds{namespace=~"$namespace", pod=~"$pod"} - time())`,
		`sum by (issuer, result) (increase(authsidecar_jwks_refreshes_total{namespace=~"$namespace", pod=~"$pod"}[$__rate_interval]))`,
	} {
		if !strings.Contains(exprs, want) {
			t.Errorf("no query %s", want)
		}
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}
