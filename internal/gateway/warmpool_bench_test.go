package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/testkit"
)

// BenchmarkWarmAgentStartVsBare is the measure, paired and
// interleaved in one run: from the append of a message to the IMAP inbox
// until Claude Code (fakeclaude) has written its first stream-json line in
// a network-sandboxed task (with a warm spare ready, as for tasks that do
// not arrive back to back), against a bare `podman run --rm --network none`
// of the same image running the same command until its first line. It
// reports p50 and p95 of both and their ratios; run it with -benchtime=20x
// or more.
func BenchmarkWarmAgentStartVsBare(b *testing.B) {
	h := newHarness(b)
	h.start(harnessOpts{maxConcurrent: 1})
	mails := 0
	gatewayOne := func(i int) time.Duration {
		return messageToAgentStart(b, h, fmt.Sprintf("warm bench %d", i), &mails)
	}
	// Both sides start on a quiet engine: the pool full, no spare being
	// made, the previous task's sandbox torn down.
	waitWarm := func() {
		pollFast(b, "a full, quiet pool", func() bool {
			st, ok := h.gw.WarmPool()
			return ok && st.Ready == st.Size && st.Starting == 0 && st.Claimed == 0
		})
	}
	waitWarm()
	gatewayOne(-1) // builds the task image
	image := taskImage(b, h)
	bareOne := func() time.Duration {
		cmd := exec.Command(h.engine, "run", "--rm", "-i", "--network", "none", "--pull=never", image,
			"fakeclaude", "-p", "--output-format", "stream-json", "--verbose")
		cmd.Stdin = strings.NewReader("@@reply ok")
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		if !sc.Scan() {
			b.Fatalf("bare run printed nothing: %v", cmd.Wait())
		}
		d := time.Since(start)
		for sc.Scan() {
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("bare run: %v", err)
		}
		return d
	}
	bareOne()
	var gw, bare []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order so neither side always runs right after
		// the other's teardown.
		if i%2 == 0 {
			waitWarm()
			bare = append(bare, bareOne())
		}
		waitWarm()
		gw = append(gw, gatewayOne(i))
		if i%2 == 1 {
			waitWarm()
			bare = append(bare, bareOne())
		}
	}
	b.StopTimer()
	testkit.ReportPaired(b, "gateway", gw, bare)
	logStartPath(b, h.logs.String())
	if st, _ := h.gw.WarmPool(); st.Cold > 0 {
		b.Errorf("pool stats %+v: some tasks started cold", st)
	}
}

// taskImage is the overlay image the gateway built for the harness repo:
// the same cache (prefix and instance) hands out the same tag.
func taskImage(b testing.TB, h *harness) string {
	b.Helper()
	rt, err := sandbox.NewRuntime(h.engine, nil)
	if err != nil {
		b.Fatal(err)
	}
	cache := sandbox.NewImageCache(rt, h.prefix)
	cache.Instance = sandbox.InstanceID(h.state)
	builds := cache.Builds()
	image, release, err := cache.Ensure(context.Background(), fstest.MapFS{"Dockerfile": {Data: []byte(testkit.DefaultDockerfile(h.base))}})
	if err != nil {
		b.Fatal(err)
	}
	release()
	if cache.Builds() != builds {
		b.Logf("the task image was rebuilt for the bare side: %s", image)
	}
	return image
}

// logStartPath logs the median of every phase of the tasks' start paths
// (the "task start path" lines, warmpool.go): where the milliseconds go.
func logStartPath(b *testing.B, logs string) {
	b.Helper()
	phases := map[string][]time.Duration{}
	var order []string
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `msg="task start path"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok || !strings.HasSuffix(k, "_ms") {
				continue
			}
			ms, err := strconv.Atoi(v)
			if err != nil {
				continue
			}
			if _, seen := phases[k]; !seen {
				order = append(order, k)
			}
			phases[k] = append(phases[k], time.Duration(ms)*time.Millisecond)
		}
	}
	var parts []string
	for _, k := range order {
		s := slices.Clone(phases[k])
		slices.Sort(s)
		parts = append(parts, fmt.Sprintf("%s=%d", k, s[len(s)/2].Milliseconds()))
	}
	b.Logf("task start path, median of %d tasks (ms): %s", len(phases["total_ms"]), strings.Join(parts, " "))
}
