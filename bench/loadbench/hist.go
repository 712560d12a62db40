package loadbench

import (
	"math/bits"
	"time"
)

// Histogram records latencies in a fixed amount of memory with a bounded
// relative error, in the manner of an HDR histogram: values below 2^subBits
// nanoseconds are kept exactly; above that every power of two is split into
// 2^subBits equal buckets, so a reported value is within 1/2^(subBits+1)
// (0.4%) of a recorded one. Values past maxValue are clamped. The zero
// value is not usable: call NewHistogram. A Histogram is not safe for
// concurrent use; give each worker its own and Merge them.
type Histogram struct {
	counts []uint64
	n      uint64
	sum    int64
	min    int64
	max    int64
}

const (
	subBits    = 7
	subCount   = 1 << subBits
	maxShift   = 34 // 2^(34+8) ns ≈ 73 minutes: far past any request timeout
	numBuckets = subCount + (maxShift+1)*subCount
	// maxValue is the largest value the histogram tells apart.
	maxValue = int64(1)<<(maxShift+subBits+1) - 1
)

// NewHistogram returns an empty histogram (about 36 KiB).
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, numBuckets), min: -1}
}

// bucketOf returns the bucket index of v, a non-negative value <= maxValue.
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	return subCount + shift*subCount + int(v>>shift) - subCount
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (low, width int64) {
	if i < subCount {
		return int64(i), 1
	}
	shift := (i - subCount) / subCount
	sub := int64((i-subCount)%subCount + subCount)
	return sub << shift, int64(1) << shift
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v > maxValue {
		v = maxValue
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	if h.min < 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if h.min < 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest value recorded, exactly (0 when empty).
func (h *Histogram) Min() time.Duration { return time.Duration(max(h.min, 0)) }

// Max returns the largest value recorded, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the values recorded.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / int64(h.n))
}

// Percentile returns the nearest-rank q-quantile (q in [0,1]): the
// smallest recorded value such that at least q of all values are at or
// below it, to within the histogram's precision. It is 0 when empty.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.9999999)
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, width := bucketRange(i)
			v := low + (width-1)/2
			// The exact extremes are known: never report past them.
			v = min(max(v, h.min), h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
