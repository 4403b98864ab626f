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

// Sweep removes containers and networks of this runner's prefix left behind
// by a process that no longer runs (a crash, a SIGKILL). Resources of live
// processes, including other airut instances sharing the host, are kept.
func (r *Runner) Sweep(ctx context.Context) (removed []string, err error) {
	removed, err = r.SweepContainers(ctx)
	if err != nil {
		return removed, err
	}
	nets, err := r.SweepNetworks(ctx)
	return append(removed, nets...), err
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
		if _, err := r.rt.output(ctx, "network", "rm", "-f", name); err == nil {
			removed = append(removed, name)
		}
	}
	return removed, nil
}

// Run markers let a short-lived process (airut-sandbox) skip the sweep, which
// costs engine calls on every start, unless a previous process really died
// with resources up: each process leaves a marker named by its owner token
// while it runs and removes it at exit, so a marker whose owner is gone is
// a crashed run.
func (r *Runner) markerDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("airut-runs-%d", os.Getuid()), r.Prefix)
}

// MarkRunning records this process as running; call the returned function
// at a clean exit.
func (r *Runner) MarkRunning() (done func()) {
	dir := r.markerDir()
	p := filepath.Join(dir, strings.ReplaceAll(ownerToken(), ":", "-"))
	if os.MkdirAll(dir, 0o700) != nil || os.WriteFile(p, nil, 0o600) != nil {
		return func() {}
	}
	return func() { os.Remove(p) }
}

// NeedsSweep reports whether a process of this prefix died without removing
// its marker. When markers cannot be read it answers true: sweeping is the
// safe side.
func (r *Runner) NeedsSweep() bool {
	entries, err := os.ReadDir(r.markerDir())
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	for _, e := range entries {
		if !ownerAlive(strings.Replace(e.Name(), "-", ":", 1)) {
			return true
		}
	}
	return false
}

// ClearDeadMarkers removes the markers of processes that are gone, after a
// sweep has cleaned up what they left.
func (r *Runner) ClearDeadMarkers() {
	dir := r.markerDir()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !ownerAlive(strings.Replace(e.Name(), "-", ":", 1)) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
