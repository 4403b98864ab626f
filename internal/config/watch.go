package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/airut/airut/internal/redact"
)

// DefaultDebounce is how long the watcher waits after the last change to
// airut.yaml or .env before it reloads: editors save in several steps
// (truncate then write, or write a temp file then rename), and a reload
// half-way through would read a partial file.
const DefaultDebounce = 300 * time.Millisecond

// ReloaderOptions configures a Reloader.
type ReloaderOptions struct {
	// Path is airut.yaml's path. Its directory is watched.
	Path string
	// Env is the environment as it was before .env was read: a variable
	// set there wins over .env (SPEC S1, "existing variables win"), on
	// every reload. A caller that exports .env into its own process must
	// pass a snapshot taken before it did, or a changed .env value would
	// never take effect.
	Env Environ
	// Registry receives every secret a load resolves and every .env
	// value.
	Registry *redact.Registry
	// Apply makes a loaded config the one in force (the gateway's
	// ApplyConfig). It is not called for the boot load.
	Apply func(*Config) error
	// DotEnv, when set, is called with the .env of every load that is
	// applied (boot included), e.g. to export it to child processes.
	DotEnv func(map[string]string)
	// Logger reports reloads. Default: discard.
	Logger *slog.Logger
	// Debounce overrides DefaultDebounce.
	Debounce time.Duration
}

// ReloadStatus is what /api/health and the dashboard show of hot reload.
type ReloadStatus struct {
	// Generation counts the configs applied: 1 after boot, +1 for every
	// successful reload.
	Generation uint64
	// LastError is why the last reload was refused (the file kept out),
	// or the repos it left out as invalid; "" when it applied cleanly.
	LastError string
	// LastReload is when a reload was last attempted (zero: never).
	LastReload time.Time
}

// Reloader loads airut.yaml at boot and again whenever it or the .env
// beside it changes (Watch) or on demand (Reload, for SIGHUP). A reload
// validates first: a file that does not load is reported and kept out, the
// running config stays.
type Reloader struct {
	o ReloaderOptions

	reloadMu sync.Mutex // serialises loads and applies

	mu      sync.Mutex
	status  ReloadStatus
	current *Config
	seen    [sha256.Size]byte // the inputs of the last attempt
}

// NewReloader returns a Reloader; nothing is read before Load.
func NewReloader(o ReloaderOptions) *Reloader {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = redact.NewRegistry()
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	return &Reloader{o: o}
}

// Load is the boot load. A missing or empty airut.yaml is the first run:
// the defaults, with no repos (the dashboard is on, health says setup).
func (r *Reloader) Load() (*Config, error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	cfg, dotenv, sum, err := r.read(true)
	if err != nil {
		return nil, err
	}
	if r.o.DotEnv != nil {
		r.o.DotEnv(dotenv)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.current, r.seen = cfg, sum
	r.status = ReloadStatus{Generation: 1, LastError: errText(cfg.Err())}
	return cfg, nil
}

// Path is airut.yaml's path.
func (r *Reloader) Path() string { return r.o.Path }

// Current returns the config in force.
func (r *Reloader) Current() *Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// Status returns the reload state for /api/health and the dashboard.
func (r *Reloader) Status() ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Reload reads the files again and applies them, even when they did not
// change (SIGHUP; a failed repo is retried by every reload). The error is
// the reason the new config was kept out, also recorded in Status.
func (r *Reloader) Reload() error { return r.reload(true) }

// reload loads and applies; unless force, inputs identical to the last
// attempt's are skipped (an editor touching the file, a chmod).
func (r *Reloader) reload(force bool) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	cfg, dotenv, sum, err := r.read(false)
	r.mu.Lock()
	same := sum == r.seen
	r.mu.Unlock()
	if !force && same && err == nil {
		return nil
	}
	if err == nil {
		if r.o.Apply != nil {
			if aerr := r.o.Apply(cfg); aerr != nil {
				err = fmt.Errorf("apply: %w", aerr)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = sum
	r.status.LastReload = time.Now()
	if err != nil {
		r.status.LastError = err.Error()
		r.o.Logger.Error("config reload refused; the running config stays", "config", r.o.Path, "error", err)
		return err
	}
	if r.o.DotEnv != nil {
		r.o.DotEnv(dotenv)
	}
	r.current = cfg
	r.status.Generation++
	r.status.LastError = errText(cfg.Err())
	if r.status.LastError != "" {
		r.o.Logger.Warn("config reloaded; invalid repos left out", "config", r.o.Path,
			"generation", r.status.Generation, "error", r.status.LastError)
	} else {
		r.o.Logger.Info("config reloaded", "config", r.o.Path, "generation", r.status.Generation, "repos", len(cfg.Repos))
	}
	return nil
}

// read loads airut.yaml with the .env beside it. boot allows a missing
// file (the first run); a reload refuses one, since a file that
// disappeared is far more likely half-saved than meant to remove every
// repo. sum covers both files' bytes.
func (r *Reloader) read(boot bool) (*Config, map[string]string, [sha256.Size]byte, error) {
	h := sha256.New()
	data, err := os.ReadFile(r.o.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && boot:
		data = nil
	case err != nil:
		var sum [sha256.Size]byte
		return nil, nil, sum, fmt.Errorf("read config: %w", err)
	}
	h.Write(data)
	envPath := filepath.Join(filepath.Dir(r.o.Path), DotEnvName)
	envData, _ := os.ReadFile(envPath)
	h.Write([]byte{0})
	h.Write(envData)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])

	dotenv, err := ReadDotEnv(envPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, sum, err
	}
	for _, v := range dotenv {
		// .env exists to hold secrets; none of them belongs in a log.
		r.o.Registry.Add(v)
	}
	env := r.o.Env
	if env == nil {
		env = noEnv
	}
	cfg, err := Parse(filepath.Base(r.o.Path), data, Overlay(env, dotenv), r.o.Registry)
	if err != nil {
		return nil, nil, sum, err
	}
	return cfg, dotenv, sum, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Watch reloads whenever airut.yaml or .env in its directory is written,
// created, renamed or removed, once the changes have been quiet for the
// debounce time, until ctx ends. The directory is watched rather than the
// file: an editor that saves by renaming a temp file over airut.yaml
// replaces the inode a file watch would follow. The directory is created
// (0700) when missing, so a first run can be configured later.
func (r *Reloader) Watch(ctx context.Context) error {
	dir := filepath.Dir(r.o.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config watch: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config watch: %w", err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("config watch %s: %w", dir, err)
	}
	name := filepath.Base(r.o.Path)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if base := filepath.Base(ev.Name); base != name && base != DotEnvName {
				continue
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(r.o.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events, not the watch: reload to be sure.
			r.o.Logger.Warn("config watch", "error", err)
			timer.Reset(r.o.Debounce)
		case <-timer.C:
			_ = r.reload(false) // recorded in Status and logged
		}
	}
}
