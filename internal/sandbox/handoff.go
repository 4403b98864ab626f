package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// proxyEndOfLog is the proxy's last network log line with --stop-on-eof
// (proxy.EndOfLog; the sandbox speaks the proxy's command line, not its
// package).
const proxyEndOfLog = "# airut-proxy: end of network log"

// handOffSuffix ends the name of a hand-off file in a run marker.
const handOffSuffix = ".handoff.json"

// handOffWork is what a hand-off leaves to the other process: engine
// objects whose processes have all stopped.
type handOffWork struct {
	Owner      string   `json:"owner"`
	Containers []string `json:"containers"`
	Networks   []string `json:"networks"`
}

// handOff stops the proxy through its input, reads its network log to the
// end, and hands the removal of the stopped proxy's container and of the
// task network to p.HandOff. It reports whether they were handed off; when
// not, the caller tears everything down itself.
func (p *ProxyNetwork) handOff(ctx context.Context, sp *spare, proc *proxyProcess) bool {
	if proc.stdin == nil {
		return false
	}
	proc.stdin.Close()
	select {
	case <-proc.ended:
	case <-proc.exited:
		// The client ended without the proxy's last line: whatever
		// happened, the usual teardown finds out.
		return false
	case <-time.After(proxyStopGrace * time.Second):
		return false
	case <-ctx.Done():
		return false
	}
	w := handOffWork{Owner: ownerToken(), Containers: []string{sp.proxyName}, Networks: []string{sp.netName}}
	if sp.holderName != "" {
		w.Containers = append(w.Containers, sp.holderName)
	}
	file, err := p.Runner.writeHandOff(sp.name, w)
	if err != nil {
		p.Runner.rt.Logger.Warn("hand-off of the teardown", "err", err)
		return false
	}
	if err := p.HandOff(file); err != nil {
		os.Remove(file)
		p.Runner.rt.Logger.Warn("hand-off of the teardown; tearing down here", "err", err)
		return false
	}
	return true
}

// writeHandOff writes w into this process's run marker, which it keeps
// from being removed at exit (MarkRunning's done removes only an empty
// one): a hand-off that never finishes is the next Sweep's.
func (r *Runner) writeHandOff(name string, w handOffWork) (string, error) {
	runs, err := r.runsDir()
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(w)
	if err != nil {
		return "", err
	}
	file := filepath.Join(runs, ownerDirName(w.Owner), name+handOffSuffix)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return "", fmt.Errorf("hand-off: %w", err)
	}
	return file, nil
}

// FinishHandOff does the teardown a ProxyNetwork's HandOff was given: it
// removes the containers and the network named in file, then the file,
// and once the process that handed it off has exited, that process's run
// marker if nothing else is in it. When a removal fails the file stays:
// the next Sweep finds the marker of a dead process and removes the rest.
func (rt *Runtime) FinishHandOff(ctx context.Context, file string) error {
	if !strings.HasSuffix(file, handOffSuffix) {
		return fmt.Errorf("hand-off %s: not a hand-off file", file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("hand-off: %w", err)
	}
	var w handOffWork
	if err := json.Unmarshal(data, &w); err != nil {
		return fmt.Errorf("hand-off %s: %w", file, err)
	}
	if ownerDirName(w.Owner) != filepath.Base(filepath.Dir(file)) {
		return fmt.Errorf("hand-off %s: not in its owner's run marker", file)
	}
	r := NewRunner(rt, "")
	for _, c := range w.Containers {
		r.remove(ctx, c)
	}
	var failed []string
	for _, n := range w.Networks {
		if !r.removeNetwork(ctx, n) {
			failed = append(failed, n)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("hand-off %s: networks %s not removed; the next sweep removes them", file, strings.Join(failed, ", "))
	}
	if err := os.Remove(file); err != nil {
		return fmt.Errorf("hand-off: %w", err)
	}
	waitExit(w.Owner, 10*time.Second)
	if !ownerAlive(w.Owner) {
		// A marker that is not empty stays: another hand-off of the same
		// process is still under way, and its end removes it.
		_ = os.Remove(filepath.Dir(file))
	}
	return nil
}

// waitExit waits, at most d, for the process named by an owner token to
// exit.
func waitExit(owner string, d time.Duration) {
	pid, _, ok := ownerProcess(owner)
	if !ok || !ownerAlive(owner) {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	pollExit(fd, time.Now().Add(d))
}
