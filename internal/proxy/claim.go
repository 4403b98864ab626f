package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
)

// A spare proxy (the sandbox's warm pool) starts before its task exists:
// it knows only its address on its own task network. It waits, with no
// listener bound (every connection to it is refused, no DNS answered), for
// a claim file that the sandbox writes atomically into the proxy's
// read-only config directory — a mount only the host can write, never
// anything on the task network. The claim holds the rest of the command
// line: the task's allowlist, replacement map, upstream settings and
// network-log target. Only then is the per-task CA generated (New) and are
// the listeners bound; the CA file is the readiness signal as before.

// claimPoll is how often a waiting proxy looks for its claim: the claim is
// on the task's critical path, and a stat is cheap.
const claimPoll = 2 * time.Millisecond

// maxClaimSize bounds the claim file; it holds paths and flags only.
const maxClaimSize = 1 << 20

// Claim is the content of the claim file.
type Claim struct {
	// Args are airut-proxy flags, parsed after the start flags. The address
	// and ports are the spare's own and cannot be changed by a claim.
	Args []string `json:"args"`
}

// claimForbidden are the flags fixed when the spare starts.
var claimForbidden = []string{"listen-ip", "bind-ip", "dns-port", "http-port", "https-port", "wait-config", "wait-signal", "stop-on-eof"}

// awaitClaim waits for the claim file named by --wait-config and returns
// the start flags with the claim's applied. A claim that does not parse or
// sets a fixed flag is an error: the proxy exits and the sandbox sees it
// fail (fail closed).
func awaitClaim(ctx context.Context, start []string, waitFile, signal string, stderr io.Writer) (ServeConfig, error) {
	if signal != "" {
		if err := os.WriteFile(signal, []byte("waiting\n"), 0o644); err != nil {
			return ServeConfig{}, fmt.Errorf("write wait signal: %w", err)
		}
	}
	tick := time.NewTicker(claimPoll)
	defer tick.Stop()
	var data []byte
	for {
		f, err := os.Open(waitFile)
		if err == nil {
			data, err = io.ReadAll(io.LimitReader(f, maxClaimSize+1))
			f.Close()
			if err != nil {
				return ServeConfig{}, fmt.Errorf("read claim %s: %w", waitFile, err)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return ServeConfig{}, fmt.Errorf("read claim %s: %w", waitFile, err)
		}
		select {
		case <-ctx.Done():
			return ServeConfig{}, ctx.Err()
		case <-tick.C:
		}
	}
	if len(data) > maxClaimSize {
		return ServeConfig{}, fmt.Errorf("claim %s: larger than %d bytes", waitFile, maxClaimSize)
	}
	var c Claim
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return ServeConfig{}, fmt.Errorf("claim %s: %w", waitFile, err)
	}
	for _, a := range c.Args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && slices.Contains(claimForbidden, name) {
			return ServeConfig{}, fmt.Errorf("claim %s: --%s is fixed when the proxy starts", waitFile, name)
		}
	}
	cfg, err := parseFlags(append(withoutWaitFlags(start), c.Args...), stderr)
	if err != nil {
		return ServeConfig{}, fmt.Errorf("claim %s: %w", waitFile, err)
	}
	return cfg, nil
}

// withoutWaitFlags drops --wait-config and --wait-signal (and their values)
// from the start flags, so that the merged command line is a plain one.
func withoutWaitFlags(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if strings.HasPrefix(args[i], "-") && (name == "wait-config" || name == "wait-signal") {
			if !hasValue {
				i++
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}
