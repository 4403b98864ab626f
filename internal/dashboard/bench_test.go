package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/dashboard"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/testkit"
)

// BenchmarkTranscriptTTFB: time to the first byte, and to the last, of the
// page of a finished task with 50,000 events, read from disk as after a
// restart. Allocations per page show it is streamed, not loaded whole.
func BenchmarkTranscriptTTFB(b *testing.B) {
	state := b.TempDir()
	const conv, task = "abcd1234", "t50k"
	dir := filepath.Join(state, "app", "conversations", conv)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, `{"type":"system","subtype":"init","model":"opus","tools":["Bash"],"session_id":"s"}`)
	for i := 0; i < 50000-2; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(w, `{"type":"assistant","message":{"id":"m%d","content":[{"type":"text","text":"Step %d: looking at **the code**"}]}}`+"\n", i, i)
		case 1:
			fmt.Fprintf(w, `{"type":"assistant","message":{"id":"m%d","content":[{"type":"tool_use","id":"tu%d","name":"Bash","input":{"command":"grep -rn foo ./pkg/%d"}}]}}`+"\n", i, i, i)
		default:
			fmt.Fprintf(w, `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"tu%d","content":"pkg/a.go:1: foo\npkg/b.go:2: foo\n"}]}}`+"\n", i-1)
		}
	}
	fmt.Fprintln(w, `{"type":"result","subtype":"success","result":"done","num_turns":16666,"total_cost_usd":12.5}`)
	w.Flush()
	size, _ := f.Seek(0, io.SeekCurrent)
	f.Close()
	rec := map[string]any{"id": conv, "repo": "app", "channel": "web", "created": time.Now(), "updated": time.Now(),
		"tasks": []map[string]any{{"id": task, "started": time.Now(), "finished": time.Now(), "outcome": "success", "events_from": 0, "events_to": size}}}
	data, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(dir, "conversation.json"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	srv := newIdleServer(b, state)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	b.ReportAllocs()
	b.ResetTimer()
	var ttfb, total time.Duration
	var bytes int64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		resp, err := http.Get(ts.URL + "/tasks/" + task)
		if err != nil {
			b.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, one); err != nil {
			b.Fatal(err)
		}
		ttfb += time.Since(start)
		n, _ := io.Copy(io.Discard, resp.Body)
		total += time.Since(start)
		bytes = n + 1
		resp.Body.Close()
	}
	b.ReportMetric(float64(ttfb.Microseconds())/float64(b.N)/1000, "ttfb-ms")
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "page-ms")
	b.ReportMetric(float64(bytes)/(1<<20), "page-MB")
}

// newIdleServer is a dashboard on a gateway with no repository, reading
// the state directory state.
func newIdleServer(tb testing.TB, state string) *dashboard.Server {
	return newIdleServerWith(tb, state, "config_version: 5\n")
}

// newIdleServerWith is newIdleServer on the config yaml; its gateway is
// never started.
func newIdleServerWith(tb testing.TB, state, yaml string) *dashboard.Server {
	tb.Helper()
	testkit.RequireEngine(tb)
	reg := redact.NewRegistry()
	cfg, err := config.Parse("airut.yaml", []byte(yaml), config.MapEnv(nil), reg)
	if err != nil {
		tb.Fatal(err)
	}
	gw, err := gateway.New(cfg, gateway.Options{StateDir: state, Registry: reg, Prefix: "airut-dbb"})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := dashboard.New(dashboard.Options{Gateway: gw, Config: func() *config.Config { return cfg }, StateDir: state, Registry: reg})
	if err != nil {
		tb.Fatal(err)
	}
	return srv
}

// BenchmarkSSEClients50: 50 browsers following one running task's
// transcript. CPU per client is the process CPU of a run with 50 clients
// minus that of the same run with none, over 50 (it includes the test's
// own reading of the streams); memory per client is the heap in use with
// the 50 streams open minus before, over 50.
func BenchmarkSSEClients50(b *testing.B) {
	const clients = 50
	// Image builds on a loaded host take minutes; a benchmark may wait.
	waitTimeout = 20 * time.Minute
	e := newEnv(b, envOpts{maxStreams: 64})
	var script strings.Builder
	script.WriteString("@@sleep 2\n")
	for i := 0; i < 150; i++ {
		fmt.Fprintf(&script, "@@run echo line-%d\n", i)
	}
	script.WriteString("@@reply done\n")
	_, warm := e.startTask("@@reply warm")
	e.waitDoneWithin(warm, 20*time.Minute)
	runOnce := func(n int) (cpu time.Duration, heap int64, events int) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap0 := int64(ms.HeapInuse)
		cpu0 := processCPU()
		_, task := e.startTask(script.String())
		var wg sync.WaitGroup
		var mu sync.Mutex
		opened := make(chan struct{}, n)
		for c := 0; c < n; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", e.base+"/tasks/"+task, nil)
				req.Header.Set("Accept", "text/event-stream")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Error(err)
					opened <- struct{}{}
					return
				}
				defer resp.Body.Close()
				opened <- struct{}{}
				got := readSSE(resp.Body, func(ev sseEvent) bool { return ev.Name == "end" })
				mu.Lock()
				events += len(got)
				mu.Unlock()
			}()
		}
		for c := 0; c < n; c++ {
			<-opened
		}
		e.waitFor("the task to run", func() bool { ti, _ := e.gw.Task(task); return ti.State == gateway.StateRunning })
		runtime.ReadMemStats(&ms)
		heap = int64(ms.HeapInuse) - heap0
		e.waitDone(task)
		wg.Wait()
		return processCPU() - cpu0, heap, events
	}
	b.ResetTimer()
	var perClientCPU time.Duration
	var perClientHeap int64
	for i := 0; i < b.N; i++ {
		base, _, _ := runOnce(0)
		with, heap, events := runOnce(clients)
		if events < clients*150 {
			b.Fatalf("clients got %d events, want at least %d", events, clients*150)
		}
		perClientCPU += (with - base) / clients
		perClientHeap += heap / clients
	}
	b.ReportMetric(float64(perClientCPU.Microseconds())/float64(b.N)/1000, "cpu-ms/client")
	b.ReportMetric(float64(perClientHeap)/float64(b.N)/1024, "heap-KB/client")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleRSS: the resident memory of a real `airut run` (gateway and
// dashboard, no repository) after it served the overview a few times.
func BenchmarkIdleRSS(b *testing.B) {
	testkit.RequireEngine(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "airut")
	build := exec.Command("go", "build", "-o", bin, "./cmd/airut")
	build.Dir = testkit.ModuleRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfgPath := filepath.Join(dir, "airut.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("config_version: 5\ndashboard:\n  port: %d\n", port)), 0o600); err != nil {
		b.Fatal(err)
	}
	var rss float64
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, "run", "--config", cfgPath, "--prefix", "airut-dbrss")
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(dir, "state"))
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		deadline := time.Now().Add(waitTimeout)
		for {
			resp, err := http.Get(base + "/api/health")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("the dashboard did not come up: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for j := 0; j < 20; j++ {
			resp, err := http.Get(base + "/")
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		time.Sleep(time.Second)
		rss += vmRSS(b, cmd.Process.Pid)
		cancel()
		_ = cmd.Wait()
	}
	b.ReportMetric(rss/float64(b.N), "rss-MB")
}

func vmRSS(tb testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}
