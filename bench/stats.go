package bench

import (
	"math"
	"slices"
)

// Summary is the median, minimum and maximum of a set of repeated measurements.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns the median, minimum and maximum of xs. The median of an
// even count is the mean of the two middle values. An empty xs gives the zero
// Summary.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{Median: med, Min: s[0], Max: s[n-1]}
}

// Percentile returns the p-th percentile (0 <= p <= 100) of xs by the
// nearest-rank method, the way ping-style tools report latency: the smallest
// value such that at least p percent of the samples are less than or equal
// to it. An empty xs gives 0. xs is sorted in place.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	rank := int(math.Ceil(p / 100 * float64(len(xs))))
	rank = min(max(rank, 1), len(xs))
	return xs[rank-1]
}

// ratio returns a/b, or 0 when b is not positive (no reference to compare with).
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}
