package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Sweep removes what a process of this runner's prefix that no longer runs
// (a crash, a SIGKILL) left behind: its private files (secrets) first, then
// its containers and networks, then its run marker. Resources of live
// processes, including other airut instances sharing the host, are kept.
func (r *Runner) Sweep(ctx context.Context) (removed []string, err error) {
	fileErr := r.sweepPrivateFiles()
	removed, err = r.SweepContainers(ctx)
	if err == nil {
		var nets []string
		nets, err = r.SweepNetworks(ctx)
		removed = append(removed, nets...)
	}
	if err == nil && fileErr == nil {
		r.ClearDeadMarkers()
	}
	return removed, errors.Join(fileErr, err)
}

// SweepContainers is the container half of Sweep.
func (r *Runner) SweepContainers(ctx context.Context) (removed []string, err error) {
	out, err := r.rt.output(ctx, "ps", "-a", "--filter", "label="+labelKind+"="+r.Prefix,
		"--format", `{{.Names}} {{index .Labels "`+labelOwner+`"}}`)
	if err != nil {
		return nil, fmt.Errorf("sweep: list containers: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, owner, _ := strings.Cut(strings.TrimSpace(line), " ")
		if name == "" || ownerAlive(owner) {
			continue
		}
		r.remove(ctx, name)
		removed = append(removed, name)
	}
	if len(removed) > 0 {
		r.rt.Logger.Info("swept containers left by a previous run", "removed", strings.Join(removed, ","))
	}
	return removed, nil
}

// SweepNetworks is the network half of Sweep: task networks whose owner is
// gone.
func (r *Runner) SweepNetworks(ctx context.Context) ([]string, error) {
	if !r.rt.IsPodman() {
		return nil, nil
	}
	out, err := r.rt.output(ctx, "network", "ls", "--filter", "label="+labelKind+"="+r.Prefix, "--format", "{{.Name}}")
	if err != nil {
		return nil, fmt.Errorf("sweep: list networks: %w", err)
	}
	var removed []string
	for _, name := range strings.Fields(string(out)) {
		// podman network ls cannot print one label; inspect can.
		raw, err := r.rt.output(ctx, "network", "inspect", name)
		if err != nil {
			continue
		}
		var nets []struct {
			Labels map[string]string `json:"labels"`
		}
		if json.Unmarshal(raw, &nets) != nil || len(nets) != 1 || ownerAlive(nets[0].Labels[labelOwner]) {
			continue
		}
		if r.removeNetwork(ctx, name) {
			removed = append(removed, name)
		}
	}
	return removed, nil
}

// Private files. Each process keeps its tasks' private files (the proxy's
// configuration with the real secret values) in a directory named by its
// owner token, <StateDir>/runs/<owner>/<task>/, 0700 throughout, files
// 0600. The owner directory doubles as the run marker that lets a
// short-lived process (airut-sandbox) skip the sweep, which costs engine
// calls on every start, unless a previous process really died with
// resources up: a directory whose owner is gone is a crashed run, and the
// sweep removes it with whatever secrets it held.

// DefaultStateDir is where a Runner without StateDir keeps its private
// files: $XDG_STATE_HOME/airut-sandbox, by default
// ~/.local/state/airut-sandbox.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "airut-sandbox"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no state directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "airut-sandbox"), nil
}

// runsDir is <StateDir>/runs, created 0700 (with StateDir) when missing.
func (r *Runner) runsDir() (string, error) {
	state := r.StateDir
	if state == "" {
		var err error
		if state, err = DefaultStateDir(); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(state, "runs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	// Whatever the umask or an older version left: nobody else reads it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return dir, nil
}

func ownerDirName(token string) string  { return strings.Replace(token, ":", "-", 1) }
func ownerOfDirName(name string) string { return strings.Replace(name, "-", ":", 1) }

// taskDir creates the private directory of one task of this process.
func (r *Runner) taskDir(name string) (string, error) {
	runs, err := r.runsDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(runs, ownerDirName(ownerToken()), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("task directory: %w", err)
	}
	return dir, nil
}

// MarkRunning records this process as running; call the returned function
// at a clean exit. It removes the marker only when every task's teardown
// has removed its private directory: what is left over is the next sweep's.
// A marker that cannot be written only costs the next run its shortcut.
func (r *Runner) MarkRunning() (done func()) {
	runs, err := r.runsDir()
	if err != nil {
		return func() {}
	}
	p := filepath.Join(runs, ownerDirName(ownerToken()))
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return func() {}
	}
	return func() { os.Remove(p) }
}

// deadOwners lists the owner directories of processes that are gone.
func (r *Runner) deadOwners() ([]string, error) {
	runs, err := r.runsDir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(runs)
	if err != nil {
		return nil, err
	}
	var dead []string
	for _, e := range entries {
		if !ownerAlive(ownerOfDirName(e.Name())) {
			dead = append(dead, filepath.Join(runs, e.Name()))
		}
	}
	return dead, nil
}

// NeedsSweep reports whether a process of this runner died without
// cleaning up. When that cannot be told it answers true: sweeping is the
// safe side.
func (r *Runner) NeedsSweep() bool {
	dead, err := r.deadOwners()
	return err != nil || len(dead) > 0
}

// sweepPrivateFiles removes the task directories of processes that are
// gone, secrets included. It runs before anything asks the engine: a
// secret on disk must not outlive a crash because the engine is slow or
// down. The owner directories stay as markers until ClearDeadMarkers.
func (r *Runner) sweepPrivateFiles() error {
	dead, err := r.deadOwners()
	if err != nil {
		return fmt.Errorf("sweep: private files: %w", err)
	}
	var errs []error
	for _, d := range dead {
		entries, err := os.ReadDir(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(d, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(dead) > 0 {
		r.rt.Logger.Info("removed private files left by a previous run", "runs", len(dead))
	}
	return errors.Join(errs...)
}

// ClearDeadMarkers removes the markers of processes that are gone, after a
// sweep has cleaned up what they left.
func (r *Runner) ClearDeadMarkers() {
	dead, _ := r.deadOwners()
	for _, d := range dead {
		os.RemoveAll(d)
	}
}
