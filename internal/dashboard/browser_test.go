package dashboard_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/testkit"
)

// browser is one headless Debian chromium shared by the browser tests.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium not found (make test-deps installs it): %v", err)
		}
		t.Skip("chromium not installed")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		cancelB()
		cancelA()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancelB(); cancelA() })
	return &browser{t: t, ctx: bctx}
}

// tab opens a new tab for one test; it closes with the test.
func (b *browser) tab(t *testing.T) context.Context {
	ctx, cancel := chromedp.NewContext(b.ctx)
	ctx, cancelT := context.WithTimeout(ctx, waitTimeout)
	t.Cleanup(func() { cancelT(); cancel() })
	return ctx
}

// artifacts is where screenshots go: $AIRUT_ARTIFACTS, else ./artifacts
// at the module root (git-ignored; CI keeps it).
func artifacts(t *testing.T) string {
	dir := os.Getenv("AIRUT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testkit.ModuleRoot(), "artifacts")
	}
	dir = filepath.Join(dir, "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(artifacts(t), name+".png"), png, 0o644); err != nil {
		t.Error(err)
	}
}

// run runs actions, failing the test with the page's text on error.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\npage:\n%s", what, err, text)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript condition in the page.
func waitJS(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout))
}

// waitTrue polls cond from Go, riding out a navigation in progress
// (which makes a page-side poll fail).
func waitTrue(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("timed out waiting for %s (%v)\npage:\n%s", what, err, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mark sets a flag that a reload would lose: an update seen with the flag
// still set came without a reload.
func mark() chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](`window.__airutNoReload = true`)(ctx, tg)
		return chromedp.Void{}, err
	}
}

const notReloaded = `window.__airutNoReload === true`

// TestBrowser drives the dashboard in headless Chromium against the real
// gateway.
func TestBrowser(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t, envOpts{})
	// Warm up: the first task builds the images, which takes minutes on
	// a loaded host.
	_, warm := e.startTask("@@reply warm")
	if ti := e.waitDoneWithin(warm, 20*time.Minute); ti.Outcome != "success" {
		t.Fatalf("warm-up task: %s %s\n%s", ti.Outcome, ti.Reason, e.dump())
	}

	t.Run("overview updates live", func(t *testing.T) {
		ctx := b.tab(t)
		run(t, ctx, "open overview", chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS("#live")),
			mark(),
			// The SSE connection is open before the task starts.
			waitJS(`document.querySelector('#live').getAttribute('sse-connect') !== null`))
		time.Sleep(500 * time.Millisecond)
		_, task := e.startTask("@@run echo overview\n@@sleep 3\n@@reply overview done")
		sel := `document.querySelector('tr[data-task="` + task + `"]')`
		run(t, ctx, "task shows as running", waitJS(sel+` && `+sel+`.textContent.includes('running') && `+notReloaded))
		screenshot(t, ctx, "overview-running")
		e.waitDone(task)
		run(t, ctx, "task shows as done", waitJS(sel+` && `+sel+`.textContent.includes('success') && `+notReloaded))
		screenshot(t, ctx, "overview")
	})

	t.Run("task page streams its transcript", func(t *testing.T) {
		_, task := e.startTask("@@run echo step-one\n@@sleep 3\n@@run echo step-two\n@@sleep 2\n@@todo [x] look|[>] fix|write tests\n@@reply all steps done")
		e.waitFor("the task to run", func() bool { ti, _ := e.gw.Task(task); return ti.State == gateway.StateRunning })
		ctx := b.tab(t)
		run(t, ctx, "open task page", chromedp.Navigate(e.base+"/tasks/"+task), chromedp.WaitVisible(chromedp.CSS("#transcript")),
			mark())
		tr := `document.querySelector('#transcript').textContent`
		if eval[bool](t, ctx, tr+`.includes('step-two')`) {
			t.Log("the transcript had step-two already when the page opened (slow host); still checking the end")
		}
		run(t, ctx, "step-two arrives live", waitJS(tr+`.includes('step-two') && `+notReloaded))
		run(t, ctx, "the result arrives live", waitJS(tr+`.includes('Result: success') && `+notReloaded))
		run(t, ctx, "the head shows done", waitJS(`document.querySelector('#task-head').textContent.includes('success') && `+notReloaded))
		screenshot(t, ctx, "task")
	})

	t.Run("network page shows BLOCKED in red live", func(t *testing.T) {
		conv, task := e.startTask("@@sleep 4\n@@run tkhttp https://blocked.example.test/exfil || true\n@@sleep 1\n@@reply tried")
		ctx := b.tab(t)
		e.waitFor("the conversation on disk", func() bool { _, err := e.gw.Conversation(conv); return err == nil })
		run(t, ctx, "open network page", chromedp.Navigate(e.base+"/conversations/"+conv+"/network"),
			chromedp.WaitVisible(chromedp.CSS("#netlog")), mark())
		run(t, ctx, "BLOCKED line arrives", waitJS(`document.querySelector('#netlog .net-BLOCKED') !== null && `+notReloaded))
		color := eval[string](t, ctx, `getComputedStyle(document.querySelector('#netlog .net-BLOCKED')).color`)
		if color != "rgb(198, 40, 40)" {
			t.Errorf("BLOCKED line colour %s, want red rgb(198, 40, 40)", color)
		}
		text := eval[string](t, ctx, `document.querySelector('#netlog .net-BLOCKED').textContent`)
		if !strings.Contains(text, "blocked.example.test/exfil") {
			t.Errorf("BLOCKED line %q", text)
		}
		e.waitDone(task)
		screenshot(t, ctx, "network")
	})

	t.Run("Stop ends a running task", func(t *testing.T) {
		_, task := e.startTask("@@sleep 2\n@@todo [>] wait for the stop\n@@sleep 120\n@@reply never")
		e.waitFor("its container", func() bool {
			ti, _ := e.gw.Task(task)
			return ti.State == gateway.StateRunning && len(e.taskLeftovers()) > 0
		})
		ctx := b.tab(t)
		// Stop is clicked in the head as re-rendered live (the todo list
		// arrived after the page opened or with it): its form must still
		// carry a valid token.
		run(t, ctx, "click Stop", chromedp.Navigate(e.base+"/tasks/"+task),
			waitJS(`document.querySelector('#task-head').textContent.includes('wait for the stop')`),
			chromedp.WaitVisible(chromedp.CSS("#stop")), chromedp.Click(chromedp.CSS("#stop")))
		ti := e.waitDone(task)
		if ti.Outcome != "cancelled" {
			t.Errorf("outcome %s, want cancelled", ti.Outcome)
		}
		e.waitFor("the containers to go", func() bool { return len(e.taskLeftovers()) == 0 })
		run(t, ctx, "the page says cancelled", waitJS(`document.querySelector('#task-head').textContent.includes('cancelled')`))
		if eval[int](t, ctx, `document.querySelectorAll('#stop').length`) != 0 {
			t.Errorf("a stopped task still shows Stop")
		}
	})

	t.Run("new task, reply, resume", func(t *testing.T) {
		ctx := b.tab(t)
		run(t, ctx, "new task", chromedp.Navigate(e.base+"/repos/app"), chromedp.WaitVisible(chromedp.CSS("#new-task")),
			chromedp.SetValue(chromedp.CSS("#new-task textarea"), "@@run echo from-the-browser > /workspace/w.txt\n@@reply first-answer"),
			chromedp.Submit(chromedp.CSS("#new-task")))
		waitTrue(t, ctx, "the conversation page", `location.pathname.startsWith('/conversations/') && document.querySelector('#thread-live') !== null`)
		path := eval[string](t, ctx, `location.pathname`)
		conv := strings.TrimPrefix(path, "/conversations/")
		run(t, ctx, "the reply shows up", mark(),
			waitJS(`document.querySelector('#thread-live').textContent.includes('first-answer') && `+notReloaded))
		screenshot(t, ctx, "conversation")
		run(t, ctx, "reply", chromedp.SetValue(chromedp.CSS("#reply-form textarea"), "@@run cat /workspace/w.txt\n@@reply second-answer"),
			chromedp.Submit(chromedp.CSS("#reply-form")))
		waitTrue(t, ctx, "the second reply", `document.querySelector('#thread-live') !== null && document.querySelector('#thread-live').textContent.includes('second-answer')`)
		var c struct {
			Tasks []struct{ ID, Outcome string }
		}
		e.getJSON("/api/conversations/"+conv, &c)
		if len(c.Tasks) != 2 || c.Tasks[0].Outcome != "success" {
			t.Fatalf("conversation %s tasks %+v", conv, c.Tasks)
		}
		events := readAll(t, e.request("GET", "/api/tasks/"+c.Tasks[0].ID+"/events", nil))
		if !strings.Contains(events, "from-the-browser") {
			t.Errorf("the resumed task did not find the first task's workspace file:\n%s", events)
		}
		// The session was resumed: fakeclaude was called with --resume.
		var rec struct {
			SessionID string `json:"session_id"`
		}
		data, _ := os.ReadFile(filepath.Join(e.state, "app", "conversations", conv, "conversation.json"))
		_ = json.Unmarshal(data, &rec)
		if rec.SessionID == "" {
			t.Errorf("no session recorded")
		}
		screenshot(t, ctx, "conversation-resumed")
	})
}
