package dashboard_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airut/airut/internal/dashboard"
	"github.com/airut/airut/internal/testkit"
)

// warmHealth is /api/health's warm_sandboxes, nil when null.
func (e *env) warmHealth() *dashboard.WarmSandboxes {
	e.t.Helper()
	var h dashboard.Health
	e.getJSON("/api/health", &h)
	return h.WarmSandboxes
}

// TestWarmPool runs the gateway with a pool of one spare: /api/health and
// the overview's panel show the spare ready, a task claims it (started
// warm), the panel follows without a reload, and the pool drains at
// shutdown leaving nothing behind.
func TestWarmPool(t *testing.T) {
	b := newBrowser(t)
	// The first task builds the images, which takes minutes on a loaded
	// host.
	waitTimeout = 20 * time.Minute
	t.Cleanup(func() { waitTimeout = 6 * time.Minute })
	e := newEnv(t, envOpts{warm: 1})

	ctx := b.tab(t)
	run(t, ctx, "open overview", chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS("#warm-pool")), mark(),
		waitJS(`document.querySelector('#live').getAttribute('sse-connect') !== null`))
	panel := `document.querySelector('#warm-pool')`
	field := func(name string) string {
		return `(document.querySelector('#warm-pool [data-warm="` + name + `"]') || {}).textContent`
	}
	if eval[bool](t, ctx, panel+`.textContent.includes('Not running')`) {
		t.Log("the page opened before the spare was up: its arrival is an update without a reload")
	}

	var h *dashboard.WarmSandboxes
	e.waitFor("/api/health to show the spare ready", func() bool {
		h = e.warmHealth()
		return h != nil && h.Ready == 1
	})
	if h.Size != 1 || h.Warm != 0 || h.Cold != 0 || h.Claimed != 0 {
		t.Errorf("before any task: warm_sandboxes %+v", *h)
	}
	run(t, ctx, "the panel shows the spare ready", waitJS(field("ready")+` === '1 of 1' && `+notReloaded))
	screenshot(t, ctx, "overview-warm-ready")
	spares := 0
	for _, l := range testkit.Leftovers(e.engine, e.prefix) {
		if strings.Contains(l, "-spare-") {
			spares++
		}
	}
	if spares == 0 {
		t.Fatalf("no spare container or network under prefix %s: the drain check below would prove nothing", e.prefix)
	}

	_, task := e.startTask("@@run echo warm-task\n@@reply warm done")
	if ti := e.waitDone(task); ti.Outcome != "success" {
		t.Fatalf("task: %s %s\n%s", ti.Outcome, ti.Reason, e.dump())
	}
	h = e.warmHealth()
	if h == nil || h.Warm != 1 || h.Cold != 0 {
		t.Fatalf("after one task on a ready spare: warm_sandboxes %+v, want warm 1 cold 0", h)
	}
	run(t, ctx, "the panel counts the task as started warm",
		waitJS(field("warm")+` === '1' && `+field("cold")+` === '0' && `+notReloaded))
	// The claimed spare is torn down after the reply and a new one made:
	// the panel follows on the pool's own changes, which no task event
	// announces.
	e.waitFor("the pool to be whole again", func() bool {
		h = e.warmHealth()
		return h != nil && h.Ready == 1 && h.Claimed == 0
	})
	run(t, ctx, "the panel shows the new spare and nothing in use",
		waitJS(field("ready")+` === '1 of 1' && `+field("claimed")+` === '0' && `+notReloaded))
	screenshot(t, ctx, "overview-warm")

	e.shutdown() // fails the test if a spare or a task's sandbox is left
	if st, ok := e.gw.WarmPool(); ok {
		t.Errorf("after shutdown the gateway still has a pool: %+v", st)
	}
}

// TestHealthWithoutPool: with no pool /api/health carries warm_sandboxes
// as null, and the overview says why there is none: turned off by
// execution.warm_sandboxes: 0, or configured but not running (this
// gateway is never started).
func TestHealthWithoutPool(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"disabled", "config_version: 5\nexecution:\n  warm_sandboxes: 0\n", "execution.warm_sandboxes: 0"},
		{"not running", "config_version: 5\n", "Not running"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newIdleServerWith(t, t.TempDir(), tc.yaml)
			hs := httptest.NewServer(srv)
			defer hs.Close()
			e := &env{t: t, base: hs.URL}
			var raw map[string]json.RawMessage
			e.getJSON("/api/health", &raw)
			if w, ok := raw["warm_sandboxes"]; !ok || string(w) != "null" {
				t.Errorf("warm_sandboxes = %s (present %v), want null", w, ok)
			}
			for _, k := range []string{"status", "repos", "tasks", "config_generation", "last_reload_error"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("health lost its %q field", k)
				}
			}
			page := readAll(t, e.request("GET", "/", nil))
			if !strings.Contains(page, `id="warm-pool"`) || !strings.Contains(page, tc.want) {
				t.Errorf("overview's warm pool panel lacks %q:\n%s", tc.want, page)
			}
		})
	}
}
