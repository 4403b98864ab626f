package testkit

import (
	"slices"
	"testing"
	"time"
)

// ReportPaired reports the p50 and p95 (milliseconds) of two series
// measured paired and interleaved in one benchmark run, name's against
// bare's, and their ratios.
func ReportPaired(b *testing.B, name string, got, bare []time.Duration) {
	b.Helper()
	q := func(ds []time.Duration, p float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		i := int(p*float64(len(s)) + 0.5)
		return float64(s[min(max(i-1, 0), len(s)-1)]) / float64(time.Millisecond)
	}
	g50, g95, b50, b95 := q(got, 0.50), q(got, 0.95), q(bare, 0.50), q(bare, 0.95)
	b.ReportMetric(g50, name+"-p50-ms")
	b.ReportMetric(g95, name+"-p95-ms")
	b.ReportMetric(b50, "bare-p50-ms")
	b.ReportMetric(b95, "bare-p95-ms")
	b.ReportMetric(g50/b50, "ratio-p50")
	b.ReportMetric(g95/b95, "ratio-p95")
	b.Logf("%d runs: %s p50 %.0f ms p95 %.0f ms; bare p50 %.0f ms p95 %.0f ms; ratio p50 %.2f p95 %.2f",
		len(got), name, g50, g95, b50, b95, g50/b50, g95/b95)
}
