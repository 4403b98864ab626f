package cli

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/airut/airut/internal/claudecli"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
)

// claudeChecks says, per repo, which Claude Code its tasks will run and
// which version that is. Nothing is installed here: a claude_version
// release is downloaded by the gateway at the first task that needs it.
func claudeChecks(ctx context.Context, cfg *config.Config) []finding {
	state, err := config.StateDir(lookupEnv)
	if err != nil {
		return []finding{{fatal: true, what: "Claude Code: no state directory: " + err.Error()}}
	}
	in := &claudecli.Installer{Dir: filepath.Join(state, gateway.ClaudeBinariesDir), Registry: cfg.Execution.ClaudeRegistry}
	ids := make([]string, 0, len(cfg.Repos))
	for id := range cfg.Repos {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []finding
	for _, id := range ids {
		out = append(out, claudeCheck(ctx, in, id, cfg.Repos[id]))
	}
	return out
}

func claudeCheck(ctx context.Context, in *claudecli.Installer, id string, rc *config.Repo) finding {
	what := "repo " + id + ": Claude Code "
	if v := rc.ClaudeVersion; v != "" && rc.ClaudeBinary == "" {
		platform, err := claudecli.HostPlatform()
		if err != nil {
			return finding{fatal: true, what: what + err.Error(), hint: "set claude_binary to a Claude Code executable for this host"}
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		version, err := in.Resolve(rctx, v)
		cancel()
		if err != nil {
			return finding{fatal: true, what: what + "claude_version " + v + ": " + err.Error(),
				hint: "check that this host reaches the npm registry (or execution.claude_registry), or pin claude_version to a version or set claude_binary"}
		}
		from := "claude_version " + v
		if v != version {
			from += " = " + version
		}
		if !in.Installed(version) {
			return finding{ok: true, what: fmt.Sprintf("%s%s (%s, %s): not installed yet; the first task installs it from the npm registry (about 190 MB) into %s",
				what, version, from, claudecli.PlatformPackage(platform), filepath.Dir(in.Path(version)))}
		}
		return versionFinding(ctx, what, in.Path(version), from)
	}
	loc, err := in.Locate(ctx, rc.ClaudeBinary, "")
	if errors.Is(err, claudecli.ErrNoClaude) {
		return finding{fatal: true, what: what + "none: no claude_binary, no claude_version, and no claude on PATH",
			hint: "add `claude_version: latest` (installed from the npm registry) or `claude_binary: /path/to/claude` to repos." + id}
	}
	if err != nil {
		return finding{fatal: true, what: what + err.Error(), hint: "point claude_binary at a Claude Code executable, or use claude_version instead"}
	}
	from := "claude_binary " + loc.Path
	if loc.From == claudecli.FromPath {
		from = "claude on PATH: " + loc.Path
	}
	return versionFinding(ctx, what, loc.Path, from)
}

// versionFinding runs `claude --version` on the host: a binary that does
// not run there will not run in the container either.
func versionFinding(ctx context.Context, what, path, from string) finding {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	version := strings.TrimSpace(string(out))
	if err != nil || version == "" {
		return finding{fatal: true, what: fmt.Sprintf("%s(%s): `--version` failed: %v", what, from, err),
			hint: "the file is not a Claude Code executable for this host; use claude_version to install one"}
	}
	return finding{ok: true, what: fmt.Sprintf("%s%s (%s)", what, version, from)}
}
