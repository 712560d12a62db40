package loadbench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactPercentile is the nearest-rank percentile of sorted values.
func exactPercentile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func TestHistogramPercentilesWithinPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Log-normal latencies around 1 ms with a long tail, plus a few tiny
	// and huge values to reach the exact range and the clamping range.
	var values []int64
	h := NewHistogram()
	for range 200_000 {
		v := int64(math.Exp(rng.NormFloat64()*1.2) * 1e6)
		values = append(values, v)
		h.Record(time.Duration(v))
	}
	for _, v := range []int64{0, 1, 5, 127, 128, 129, 255, 256, 3 * int64(time.Second)} {
		values = append(values, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(values)
	if h.Count() != uint64(len(values)) {
		t.Fatalf("count %d, want %d", h.Count(), len(values))
	}
	for _, q := range []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		want := exactPercentile(values, q)
		got := int64(h.Percentile(q))
		if rel := math.Abs(float64(got-want)) / math.Max(float64(want), 1); rel > 1.0/subCount {
			t.Errorf("p%v = %d, want %d (relative error %.4f > %.4f)", q*100, got, want, rel, 1.0/subCount)
		}
	}
	if h.Min() != 0 || h.Max() != 3*time.Second {
		t.Errorf("min %v max %v, want 0 and 3s", h.Min(), h.Max())
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	h := NewHistogram()
	for v := range int64(100) {
		h.Record(time.Duration(v + 1))
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {0.01, 1}, {1, 100}} {
		if got := h.Percentile(tc.q); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.q*100, got, tc.want)
		}
	}
}

func TestHistogramBucketsCoverTheRange(t *testing.T) {
	// Every value maps into a bucket whose range holds it, and bucket
	// ranges follow one another without gaps or overlaps.
	next := int64(0)
	for i := range numBuckets {
		low, width := bucketRange(i)
		if low != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, low, next)
		}
		for _, v := range []int64{low, low + width - 1} {
			if b := bucketOf(v); b != i {
				t.Fatalf("value %d in bucket %d, want %d", v, b, i)
			}
		}
		next = low + width
	}
	if next-1 != maxValue {
		t.Fatalf("last bucket ends at %d, want maxValue %d", next-1, maxValue)
	}
}

func TestHistogramMergeAndEmpty(t *testing.T) {
	a, b, empty := NewHistogram(), NewHistogram(), NewHistogram()
	if empty.Percentile(0.99) != 0 || empty.Mean() != 0 || empty.Min() != 0 {
		t.Fatal("an empty histogram reports non-zero values")
	}
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	b.Record(-time.Second) // clamped to 0
	a.Merge(b)
	a.Merge(empty)
	if a.Count() != 3 || a.Min() != 0 || a.Max() != 3*time.Millisecond {
		t.Fatalf("merged: count %d min %v max %v", a.Count(), a.Min(), a.Max())
	}
	if got := a.Percentile(0.5); got < time.Millisecond-time.Millisecond/128 || got > time.Millisecond+time.Millisecond/128 {
		t.Fatalf("merged p50 %v, want about 1ms", got)
	}
	a.Record(100 * time.Hour) // clamped to maxValue
	if a.Max() != time.Duration(maxValue) {
		t.Fatalf("max %v, want clamp at %v", a.Max(), time.Duration(maxValue))
	}
}
