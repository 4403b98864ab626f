package sandboxcli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/sandboxcli"
	"github.com/airut/airut/internal/testkit"
)

// BenchmarkStartOverhead measures `airut-sandbox run -- true` against a bare
// `podman run --rm IMAGE true` of the same image, interleaved in one run so
// both see the same machine, and reports both and their ratio. The open
// network is used on both sides (network_sandbox: false) so the ratio is
// the CLI's own overhead; BenchmarkStartSandboxedNetwork adds the proxy.
func BenchmarkStartOverhead(b *testing.B) {
	benchStart(b, "network_sandbox: false\n", nil)
}

// BenchmarkStartSandboxedNetwork is the same with the network sandbox on
// (per-task network, proxy container and its readiness wait included),
// against a bare `podman run --rm --network none IMAGE true`. Run it with
// -benchtime=20x or more for its p50 and p95.
func BenchmarkStartSandboxedNetwork(b *testing.B) {
	benchStart(b, "", []string{"--network", "none"})
}

func benchStart(b *testing.B, sandboxYAML string, bareArgs []string) {
	engine := testkit.RequireEngine(b)
	base := testkit.BaseImage(b, engine)
	bins, err := testkit.BuildBinaries()
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("AIRUT_PROXY_BINARY", filepath.Join(bins, "airut-proxy"))
	bin := filepath.Join(b.TempDir(), "airut-sandbox")
	build := exec.Command("go", "build", "-o", bin, "./cmd/airut-sandbox")
	build.Dir = testkit.ModuleRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v %s", err, out)
	}
	files := map[string]string{
		".airut/container/Dockerfile":   "FROM " + base + "\n",
		".airut/network-allowlist.yaml": "domains: [example.com]\n",
	}
	if sandboxYAML != "" {
		files[".airut/sandbox.yaml"] = sandboxYAML
	}
	dir := ciClone(b, files)
	state := b.TempDir()
	runs := filepath.Join(state, "airut-sandbox", "runs")
	cli := func() {
		cmd := exec.Command(bin, "run", "--", "true")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("airut-sandbox: %v %s", err, out)
		}
	}
	// The run's last removals are done by a process of its own after it
	// returned (the hand-off); the next timed command waits for them, so
	// that neither side shares the machine with them.
	var tHandOff []time.Duration
	handedOff := func() {
		s := time.Now()
		for deadline := s.Add(time.Minute); ; time.Sleep(2 * time.Millisecond) {
			if entries, err := os.ReadDir(runs); err == nil && len(entries) == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("the handed-off teardown did not finish within a minute")
			}
		}
		tHandOff = append(tHandOff, time.Since(s))
	}
	cli() // builds the image once
	handedOff()
	tHandOff = nil
	// The image the CLI built: the same cache hands out the same tag (a
	// listing of every image costs more, and fails on a damaged store).
	rt, err := sandbox.NewRuntime(engine, nil)
	if err != nil {
		b.Fatal(err)
	}
	image, release, err := sandbox.NewImageCache(rt, sandboxcli.Prefix).Ensure(context.Background(),
		fstest.MapFS{"Dockerfile": {Data: []byte(files[".airut/container/Dockerfile"])}})
	if err != nil {
		b.Fatal(err)
	}
	release()
	bare := func() {
		args := append(append([]string{"run", "--rm"}, bareArgs...), image, "true")
		if out, err := exec.Command(engine, args...).CombinedOutput(); err != nil {
			b.Fatalf("bare podman: %v %s", err, out)
		}
	}
	var tCLI, tBare []time.Duration
	timed := func(f func()) time.Duration {
		s := time.Now()
		f()
		return time.Since(s)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order: neither side always follows the other's
		// teardown.
		if i%2 == 0 {
			tBare = append(tBare, timed(bare))
			tCLI = append(tCLI, timed(cli))
			b.StopTimer()
			handedOff()
			b.StartTimer()
		} else {
			tCLI = append(tCLI, timed(cli))
			b.StopTimer()
			handedOff()
			b.StartTimer()
			tBare = append(tBare, timed(bare))
		}
	}
	b.StopTimer()
	sum := func(ds []time.Duration) (t time.Duration) {
		for _, d := range ds {
			t += d
		}
		return t
	}
	n := float64(b.N)
	b.ReportMetric(float64(sum(tBare).Milliseconds())/n, "bare-ms/op")
	b.ReportMetric(float64(sum(tCLI).Milliseconds())/n, "airut-ms/op")
	b.ReportMetric(float64(sum(tCLI))/float64(sum(tBare)), "ratio")
	if len(tHandOff) > 0 {
		// After the run returned: the off-path part of its teardown.
		b.ReportMetric(float64(sum(tHandOff).Milliseconds())/n, "handoff-ms/op")
	}
	testkit.ReportPaired(b, "airut", tCLI, tBare)
}
