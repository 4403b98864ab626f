package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

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
			// .env is exported first so that children (git, podman) see
			// the same variables as !env does; existing variables win.
			dotenv, err := config.ReadDotEnv(filepath.Join(filepath.Dir(path), config.DotEnvName))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: %w", config.DotEnvName, err)
			}
			for k, v := range dotenv {
				if _, set := os.LookupEnv(k); !set {
					os.Setenv(k, v)
				}
			}
			reg := redact.NewRegistry()
			for _, v := range dotenv {
				// .env exists to hold secrets; none of them belongs in a log.
				reg.Add(v)
			}
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			logger := slog.New(redact.NewHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}), reg))
			cfg, err := config.Load(path, lookupEnv, reg)
			if err != nil {
				return &ExitError{Code: 1, Msg: "config " + path + ":\n" + err.Error()}
			}
			state, err := config.StateDir(lookupEnv)
			if err != nil {
				return err
			}
			g, err := gateway.New(cfg, gateway.Options{StateDir: state, Logger: logger, Registry: reg, Prefix: prefix,
				Channels: ChannelFactories()})
			if err != nil {
				return err
			}
			logger.Info("airut gateway starting", "version", Version, "config", path, "state", state, "repos", len(cfg.Repos))
			if len(cfg.Repos) == 0 {
				// Otherwise a first `make run` sits idle after one log line
				// and nothing says why.
				fmt.Fprint(stderr, noReposMessage(path, len(cfg.RepoErrors)))
			}
			_, stopScheduler := runScheduler(cmd.Context(), g, state, logger)
			defer stopScheduler()
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
func noReposMessage(path string, failed int) string {
	why := "No repository is configured"
	if failed > 0 {
		why = fmt.Sprintf("No repository can run (%d failed validation: `airut config validate --config %s` says why)", failed, path)
	}
	return why + ", so this gateway has nothing to do and will stay idle.\n" +
		"To give it work: add a repository under `repos:` in " + path + "\n" +
		"(repo_url and an email: or slack: channel; `airut config init` writes a commented example),\n" +
		"check it with `airut check --config " + path + "`, and start `airut run` again.\n"
}
