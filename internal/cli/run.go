package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
)

func newRunCmd(configPath *string, stderr io.Writer) *cobra.Command {
	var debug bool
	var prefix string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the gateway until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := resolveConfigPath(*configPath)
			if err != nil {
				return err
			}
			// .env is exported so that children (git, podman) see the
			// same variables as !env does; variables set before airut
			// started win, on every reload too.
			before := envSnapshot()
			reg := redact.NewRegistry()
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			logger := slog.New(redact.NewHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}), reg))
			var g *gateway.Gateway
			rl := config.NewReloader(config.ReloaderOptions{
				Path: path, Env: before, Registry: reg, Logger: logger, DotEnv: dotEnvExporter(before),
				Apply: func(c *config.Config) error { return g.ApplyConfig(c) },
			})
			// No file or an empty one is the first run: the defaults,
			// set up from the dashboard.
			cfg, err := rl.Load()
			if err != nil {
				return &ExitError{Code: 1, Msg: "config " + path + ":\n" + err.Error()}
			}
			state, err := config.StateDir(lookupEnv)
			if err != nil {
				return err
			}
			g, err = gateway.New(cfg, gateway.Options{StateDir: state, Logger: logger, Registry: reg, Prefix: prefix,
				Channels: ChannelFactories()})
			if err != nil {
				return err
			}
			logger.Info("airut gateway starting", "version", Version, "config", path, "state", state, "repos", len(cfg.Repos))
			if len(cfg.Repos) == 0 {
				// Otherwise a first `make run` sits idle after one log line
				// and nothing says why.
				fmt.Fprint(stderr, noReposMessage(path, len(cfg.RepoErrors), cfg.Dashboard))
			}
			watchConfig(cmd.Context(), rl, logger)
			sch, stopScheduler := runScheduler(cmd.Context(), g, state, logger)
			defer stopScheduler()
			waitDashboard := startDashboard(cmd.Context(), dashboardDeps{gw: g, cfg: rl.Current, reload: rl, env: before,
				state: state, configPath: path, reg: reg, log: logger, schedules: sch.Handler()})
			defer waitDashboard()
			return g.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&debug, "debug", false, "log at debug level")
	// Containers, networks and images are named after the prefix, and
	// start-up sweeps leftovers of that prefix only: a second gateway on
	// the same host (or a test) needs its own.
	cmd.Flags().StringVar(&prefix, "prefix", gateway.DefaultPrefix, "name prefix of containers, networks and images")
	_ = cmd.Flags().MarkHidden("prefix")
	return cmd
}

// noReposMessage is what the console says when no repository can run.
func noReposMessage(path string, failed int, d config.Dashboard) string {
	why := "No repository is configured yet"
	if failed > 0 {
		why = fmt.Sprintf("No repository can run (%d failed validation: `airut config validate --config %s` says why)", failed, path)
	}
	how := "add a repository under `repos:` in " + path + "\n" +
		"(repo_url and an email: or slack: channel; `airut config init` writes a commented example);\n" +
		"it is picked up without a restart. `airut check --config " + path + "` checks the host.\n"
	if d.Enabled {
		how = "Set it up in the browser: " + dashboardURL(d) + "\nor " + how
	} else {
		how = "To give it work: " + how
	}
	return why + ", so this gateway is waiting for one.\n" + how
}

// dashboardURL is where the dashboard of d is reached from this host.
func dashboardURL(d config.Dashboard) string {
	if d.BaseURL != "" {
		return d.BaseURL
	}
	host := d.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(d.Port)) + "/"
}
