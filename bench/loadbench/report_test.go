package loadbench

import (
	"slices"
	"strings"
	"testing"
)

func TestSidecarCasesArePairedWithHAProxyRoundByRound(t *testing.T) {
	r := &Report{Cases: []CaseResult{
		{Name: CaseInboundRS256, OK: 1, RoundsRPS: []float64{110, 90, 100}, RoundsP99Micros: []float64{900, 1100, 1000}},
		{Name: CaseOutbound, OK: 1, RPS: 120, P99Micros: 800}, // one round
		{Name: CaseHAProxy, OK: 1, RoundsRPS: []float64{100, 100, 100}, RoundsP99Micros: []float64{1000, 1000, 1000}},
		{Name: CaseGRPCInbound, OK: 1, RoundsRPS: []float64{50, 50, 50}, RoundsP99Micros: []float64{1, 1, 1}},
	}}
	r.pairWithHAProxy()

	in := r.Cases[0].AgainstHAProxy
	if in == nil || in.Rival != CaseHAProxy {
		t.Fatalf("inbound pairing %+v", in)
	}
	if !slices.Equal(in.RoundsRatio, []float64{1.1, 0.9, 1}) || !slices.Equal(in.RoundsP99Ratio, []float64{0.9, 1.1, 1}) {
		t.Errorf("inbound rounds %v, p99 %v", in.RoundsRatio, in.RoundsP99Ratio)
	}
	if in.RatioMedian != 1 || in.P99RatioMedian != 1 || in.P99RatioMin != 0.9 || in.P99RatioMax != 1.1 {
		t.Errorf("inbound medians %+v", in)
	}
	// A one-round case has no rounds to pair with HAProxy's three.
	if p := r.Cases[1].AgainstHAProxy; p != nil {
		t.Errorf("outbound, one round against three, paired: %+v", p)
	}
	// Neither HAProxy nor a case whose rival did not run is paired.
	if r.Cases[2].AgainstHAProxy != nil || r.Cases[3].AgainstHAProxy != nil {
		t.Errorf("paired: haproxy %+v, grpc %+v", r.Cases[2].AgainstHAProxy, r.Cases[3].AgainstHAProxy)
	}

	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := "against haproxy-jwt, round by round: rps 1.10 0.90 1.00 (median 1.00×); p99 0.90 1.10 1.00 (median 1.00×, spread 0.90–1.10)"
	if !strings.Contains(b.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, b.String())
	}
}

func TestOneRoundRunsArePairedOnTheirTotals(t *testing.T) {
	r := &Report{Cases: []CaseResult{
		{Name: CaseOutbound, OK: 1, RPS: 120, P99Micros: 800},
		{Name: CaseHAProxy, OK: 1, RPS: 100, P99Micros: 1000},
	}}
	r.pairWithHAProxy()
	p := r.Cases[0].AgainstHAProxy
	if p == nil || p.RatioMedian != 1.2 || p.P99RatioMedian != 0.8 {
		t.Fatalf("pairing %+v", p)
	}
}
