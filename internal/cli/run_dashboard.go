package cli

import (
	"context"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airut/airut/internal/channel"
	"github.com/airut/airut/internal/channel/web"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/dashboard"
	"github.com/airut/airut/internal/dashboard/configui"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
)

// webChannel gives every repo the dashboard's web channel while
// dashboard.enabled and dashboard.tasks are on.
func webChannel(env gateway.ChannelEnv) (channel.Channel, error) {
	if env.Config == nil || !env.Config.Dashboard.WebChannel() {
		return nil, nil
	}
	return web.New(env.StateDir)
}

// dashboardDeps is what `airut run` hands the dashboard.
type dashboardDeps struct {
	gw         *gateway.Gateway
	cfg        func() *config.Config
	state      string
	configPath string
	reg        *redact.Registry
	log        *slog.Logger
	// reload is the hot reloader: the editor saves through its
	// environment, and health shows its generation and last error.
	reload *config.Reloader
	env    config.Environ
	// schedules is the scheduler's JSON API (/api/schedules…), served
	// behind the dashboard's middleware as well as on its control socket.
	schedules http.Handler
}

// startDashboard serves the dashboard in the background when
// dashboard.enabled; the returned wait blocks until it has stopped after
// ctx ends. A dashboard that cannot bind is logged, not fatal: the
// gateway still answers email and Slack.
func startDashboard(ctx context.Context, d dashboardDeps) (wait func()) {
	cfg := d.cfg()
	if !cfg.Dashboard.Enabled {
		return func() {}
	}
	// The editor renders inside the dashboard's layout; srv is set before
	// any request can reach it.
	var srv *dashboard.Server
	editor := configui.New(configui.Options{
		Store: &config.Store{Path: d.configPath, Env: d.env},
		Layout: func(w http.ResponseWriter, r *http.Request, title string, body template.HTML) {
			srv.Page(w, r, title, body)
		},
		CSRFToken: dashboard.CSRFToken,
		Logger:    d.log,
	})
	srv, err := dashboard.New(dashboard.Options{
		Gateway: d.gw, Config: d.cfg, StateDir: d.state, Registry: d.reg, Logger: d.log, Version: Version,
		Checks: cachedChecks(d.configPath, d.cfg),
		Reload: func() dashboard.ReloadState {
			st := d.reload.Status()
			return dashboard.ReloadState{Generation: st.Generation, LastError: st.LastError}
		},
		Extra: []func(*http.ServeMux){editor.Register, func(mux *http.ServeMux) {
			if d.schedules != nil {
				mux.Handle("/api/schedules", d.schedules)
				mux.Handle("/api/schedules/", d.schedules)
			}
		}},
		Nav: []dashboard.NavLink{{Title: "Config", Path: "/config"}},
	})
	if err != nil {
		d.log.Error("dashboard not started", "error", err)
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.ListenAndServe(ctx); err != nil {
			d.log.Error("dashboard stopped", "error", err,
				"addr", net.JoinHostPort(cfg.Dashboard.Host, strconv.Itoa(cfg.Dashboard.Port)))
		}
	}()
	return wg.Wait
}

// checkTTL: `airut check` starts a trial container, too slow to run on
// every page view.
const checkTTL = 5 * time.Minute

// cachedChecks runs the checks of `airut check` at most every checkTTL
// and adds the first-run items: a repository configured.
func cachedChecks(configPath string, cfg func() *config.Config) func(context.Context) []dashboard.Finding {
	var mu sync.Mutex
	var last []dashboard.Finding
	var at time.Time
	return func(ctx context.Context) []dashboard.Finding {
		mu.Lock()
		defer mu.Unlock()
		if last == nil || time.Since(at) > checkTTL {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			fs := runChecks(cctx, "", configPath)
			cancel()
			last = last[:0]
			for _, f := range fs {
				last = append(last, dashboard.Finding{Title: firstLine(f.what), OK: f.ok, Detail: f.what, Fix: f.hint})
			}
			at = time.Now()
		}
		return append(append([]dashboard.Finding(nil), last...), setupFindings(cfg(), exec.LookPath)...)
	}
}

// claudeCredentials are the names Claude Code reads its credential from.
var claudeCredentials = []string{"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"}

// setupFindings are the first-run items that `airut check` has no repo to
// report on yet: a Claude Code binary, a Claude credential, a repository.
func setupFindings(cfg *config.Config, lookPath func(string) (string, error)) []dashboard.Finding {
	var out []dashboard.Finding
	if len(cfg.Repos) == 0 {
		claude := dashboard.Finding{Title: "Claude Code", OK: true}
		switch {
		case cfg.Execution.ClaudeBinary != "":
			claude.Detail = "execution.claude_binary: " + cfg.Execution.ClaudeBinary
		default:
			if p, err := lookPath("claude"); err == nil {
				claude.Detail = "found on PATH: " + p
			} else {
				claude.OK, claude.Detail = false, "no claude executable on PATH"
				claude.Fix = "set claude_version in the repository (installed from the npm registry and verified), or claude_binary to an executable"
			}
		}
		out = append(out, claude)
	}
	cred := dashboard.Finding{Title: "Claude credential", Detail: "no repository has ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN",
		Fix: "add ANTHROPIC_API_KEY as a masked secret scoped to api.anthropic.com (header x-api-key) in the repository's credentials"}
	for _, r := range cfg.Repos {
		for _, name := range claudeCredentials {
			_, masked := r.MaskedSecrets[name]
			_, plain := r.Secrets[name]
			if masked || plain {
				cred = dashboard.Finding{Title: "Claude credential", OK: true, Detail: name + " configured"}
			}
		}
	}
	out = append(out, cred)
	if len(cfg.Repos) == 0 {
		out = append(out, dashboard.Finding{Title: "First repository", Detail: "no repository is configured yet",
			Fix: "add one in the config editor (Config, above), or under repos: in airut.yaml"})
	} else {
		out = append(out, dashboard.Finding{Title: "First repository", OK: true, Detail: "configured"})
	}
	return out
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	if k, _, ok := strings.Cut(l, ":"); ok {
		return k
	}
	return l
}
