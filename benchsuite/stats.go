package benchsuite

import (
	"math"
	"slices"
)

// Stats summarises a sample of durations in milliseconds.
type Stats struct {
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	Mean float64 `json:"mean_ms"`
	Min  float64 `json:"min_ms"`
	Max  float64 `json:"max_ms"`
}

// Summarize returns the nearest-rank p50 and p95, the mean, the minimum and
// the maximum of ms. An empty sample gives zero Stats.
func Summarize(ms []float64) Stats {
	if len(ms) == 0 {
		return Stats{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return Stats{
		P50:  Percentile(s, 0.50),
		P95:  Percentile(s, 0.95),
		Mean: sum / float64(len(s)),
		Min:  s[0],
		Max:  s[len(s)-1],
	}
}

// Percentile returns the nearest-rank p-th quantile (0 < p ≤ 1) of sorted:
// the smallest value with at least p·n values at or below it.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(len(sorted)-1, k))]
}
