package sandbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/airut/airut/internal/sandbox"
)

// BenchmarkNetworkStartupCost runs `true` with network none and with the
// network sandbox, interleaved in one run, and reports the added start-up
// cost of the proxy network (network, proxy container, readiness wait,
// teardown).
func BenchmarkNetworkStartupCost(b *testing.B) {
	ne := newNetEnv(b)
	run := func(mode sandbox.NetworkMode) time.Duration {
		spec := sandbox.Spec{Image: ne.base, Command: []string{"true"}, Network: mode, Context: "bench"}
		if mode == sandbox.NetworkSandboxed {
			spec.Provider = ne.provider
		}
		s := time.Now()
		res := ne.runner.Run(context.Background(), spec)
		if res.Outcome != sandbox.OutcomeSuccess {
			b.Fatalf("%s: %s %s", mode, res.Outcome, res.Reason)
		}
		return time.Since(s)
	}
	var none, sbx time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		none += run(sandbox.NetworkNone)
		sbx += run(sandbox.NetworkSandboxed)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(none.Milliseconds())/n, "none-ms/op")
	b.ReportMetric(float64(sbx.Milliseconds())/n, "sandboxed-ms/op")
	b.ReportMetric(float64(sbx-none)/n/1e6, "added-ms/op")
	b.ReportMetric(float64(sbx)/float64(none), "ratio")
}
