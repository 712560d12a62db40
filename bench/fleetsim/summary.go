package fleetsim

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is what a scenario's run shows, in requests per simulated
// second (all kinds together unless named).
type Summary struct {
	Scenario string
	// Steady is the mean rate over the steady window: one token lifetime
	// after the rollout, to the event (the end, for the steady scenario).
	SteadyFrom, SteadyTo int
	Steady               float64
	SteadyByKind         [numKinds]float64
	// ExpectedToken is N·R/(0.8·T), ExpectedJWKS N per refresh interval.
	ExpectedToken, ExpectedJWKS float64
	// From, To is the window the scenario is judged on: the steady window
	// for the steady scenario, from the event (the provider's return, for
	// the outage) to the end for the others.
	From, To int
	Mean     float64
	Peak     int
	PeakAt   int
	// PeakByKind is each kind's own peak in the window.
	PeakByKind [numKinds]int
	// RolloutPeak is the peak of the first From seconds (the rollout, the
	// outage itself), shown apart.
	BeforePeak, BeforePeakAt int
	// JWKSPerInterval is the most JWKS requests in any window of one
	// refresh interval, from SteadyFrom on.
	JWKSPerInterval int
	// NoToken is the most routes without a valid token at once, from the
	// event on (from the start, for the steady scenario).
	NoToken int64
	// AllValidAfter is how long after the event (its end for the outage;
	// the start for the steady scenario) every route held a valid token
	// again; 0 when none lost it, -1 when some had none at the end.
	AllValidAfter time.Duration
	Failed        int
	Refused       int64
	Wall          time.Duration
	HeapMiB       float64
}

// Ratio is Peak over Steady.
func (s *Summary) Ratio() float64 { return float64(s.Peak) / s.Steady }

// Summarize reduces r to its Summary.
func Summarize(r *Result) *Summary {
	o := r.Options
	n := len(r.Sent[0])
	s := &Summary{Scenario: r.Scenario, Refused: r.Refused, Wall: r.Wall, HeapMiB: r.HeapMiB}
	s.ExpectedToken = float64(o.Pods*o.Routes) / (0.8 * o.TokenLifetime.Seconds())
	s.ExpectedJWKS = float64(o.Pods) / o.JWKSRefresh.Seconds()
	s.SteadyFrom = min(int((o.Rollout+o.TokenLifetime)/time.Second), n-1)
	s.SteadyTo = n - 1 // the last second is where overflow lands
	if r.Scenario != "steady" {
		s.SteadyTo = r.EventAt
	}
	total := make([]int, n)
	for sec := range n {
		for k := range numKinds {
			total[sec] += int(r.Sent[k][sec])
			s.Failed += int(r.Failed[k][sec])
		}
	}
	s.Steady = mean(total, s.SteadyFrom, s.SteadyTo)
	for k := range numKinds {
		s.SteadyByKind[k] = mean32(r.Sent[k], s.SteadyFrom, s.SteadyTo)
	}
	s.From, s.To = s.SteadyFrom, n-1
	if r.Scenario != "steady" {
		s.From = r.EventEnd
	}
	s.Mean = mean(total, s.From, s.To)
	s.PeakAt = argmax(total, s.From, s.To)
	s.Peak = total[s.PeakAt]
	for k := range numKinds {
		s.PeakByKind[k] = int(r.Sent[k][argmax32(r.Sent[k], s.From, s.To)])
	}
	s.BeforePeakAt = argmax(total, 0, s.From)
	s.BeforePeak = total[s.BeforePeakAt]
	s.JWKSPerInterval = maxWindow(r.Sent[KindJWKS], s.SteadyFrom, s.To, int(o.JWKSRefresh/time.Second))
	ref := r.EventEnd
	for sec := ref; sec < n; sec++ {
		s.NoToken = max(s.NoToken, r.NoToken[sec])
	}
	switch {
	case r.AllValidAt < 0:
		s.AllValidAfter = -1
	case s.NoToken > 0 || r.Scenario == "steady":
		s.AllValidAfter = time.Duration((r.AllValidAt - float64(ref)) * float64(time.Second))
	}
	return s
}

func mean(v []int, from, to int) float64 {
	if to <= from {
		return 0
	}
	sum := 0
	for _, x := range v[from:to] {
		sum += x
	}
	return float64(sum) / float64(to-from)
}

func mean32(v []int32, from, to int) float64 {
	w := make([]int, 0, to-from)
	for _, x := range v[from:to] {
		w = append(w, int(x))
	}
	return mean(w, 0, len(w))
}

func argmax(v []int, from, to int) int {
	best := from
	for i := from; i < to; i++ {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

func argmax32(v []int32, from, to int) int {
	best := from
	for i := from; i < to; i++ {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// maxWindow is the largest sum of width consecutive values in [from, to).
func maxWindow(v []int32, from, to, width int) int {
	best, sum := 0, 0
	for i := from; i < to; i++ {
		sum += int(v[i])
		if i-width >= from {
			sum -= int(v[i-width])
		}
		best = max(best, sum)
	}
	return best
}

// clock formats a simulated second as h:mm:ss.
func clockAt(sec int) string {
	return fmt.Sprintf("%d:%02d:%02d", sec/3600, sec/60%60, sec%60)
}

// WriteTable prints one row per summary.
func WriteTable(w io.Writer, sums []*Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join([]string{"scenario", "steady req/s", "window", "mean req/s", "peak req/s", "at",
		"peak÷steady", "token peak", "JWKS peak", "disc. peak", "JWKS / interval", "routes w/o token", "all valid after", "before: peak", "wall", ""}, "\t"))
	for _, s := range sums {
		valid := "0 (none lost one)"
		switch {
		case s.AllValidAfter < 0:
			valid = "never"
		case s.AllValidAfter > 0:
			valid = s.AllValidAfter.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintln(tw, strings.Join([]string{s.Scenario, fmt.Sprintf("%.1f", s.Steady),
			clockAt(s.From) + "–" + clockAt(s.To), fmt.Sprintf("%.1f", s.Mean), fmt.Sprint(s.Peak), clockAt(s.PeakAt),
			fmt.Sprintf("%.2f×", s.Ratio()), fmt.Sprint(s.PeakByKind[KindToken]), fmt.Sprint(s.PeakByKind[KindJWKS]),
			fmt.Sprint(s.PeakByKind[KindDiscovery]), fmt.Sprint(s.JWKSPerInterval), fmt.Sprint(s.NoToken), valid,
			fmt.Sprintf("%d at %s", s.BeforePeak, clockAt(s.BeforePeakAt)), s.Wall.Round(100 * time.Millisecond).String(), ""}, "\t"))
	}
	return tw.Flush()
}
