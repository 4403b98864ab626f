package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/airut/airut/internal/config"
)

// envSnapshot is the process environment before .env was read: on every
// reload those variables win over .env, the others come from the .env of
// that reload.
func envSnapshot() config.Environ {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return config.MapEnv(m)
}

// dotEnvExporter returns a config.ReloaderOptions.DotEnv that puts .env
// into the process environment, so children (git, podman) see what !env
// sees: a variable set before airut started is never touched; one that
// came from .env follows every reload, and is unset when .env drops it.
func dotEnvExporter(before config.Environ) func(map[string]string) {
	var mu sync.Mutex
	exported := map[string]bool{}
	return func(dotenv map[string]string) {
		mu.Lock()
		defer mu.Unlock()
		for k, v := range dotenv {
			if _, set := before(k); set {
				continue
			}
			os.Setenv(k, v)
			exported[k] = true
		}
		for k := range exported {
			if _, ok := dotenv[k]; !ok {
				os.Unsetenv(k)
				delete(exported, k)
			}
		}
	}
}

// watchConfig hot-reloads the config until ctx ends: on a change to
// airut.yaml or .env (debounced) and at once on SIGHUP.
func watchConfig(ctx context.Context, r *config.Reloader, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	logger.Info("hot reload on: the config directory is watched, SIGHUP reloads at once", "config", filepath.Dir(r.Path()))
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading the config")
				_ = r.Reload() // logged and recorded in Status
			}
		}
	}()
	go func() {
		if err := r.Watch(ctx); err != nil {
			// SIGHUP still reloads.
			logger.Error("config file watch failed; reload with SIGHUP", "error", err)
		}
	}()
}
