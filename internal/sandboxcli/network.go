package sandboxcli

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/airut/airut/internal/repoconfig"
	"github.com/airut/airut/internal/sandbox"
)

// configureNetwork picks the network for the run. network_sandbox: false is
// the only way to an open network, and it is announced on every run.
func configureNetwork(_ context.Context, _ *runOpts, cfg *repoconfig.Sandbox, _ repoconfig.Source,
	spec *sandbox.Spec, _ *slog.Logger, stderr io.Writer) (func(), error) {
	if !cfg.NetworkSandbox {
		fmt.Fprintln(stderr, "airut-sandbox: WARNING: network_sandbox is false in sandbox.yaml: "+
			"the command runs on an OPEN network, with no allowlist and no credential masking")
		spec.Network = sandbox.NetworkOpen
		return func() {}, nil
	}
	spec.Network = sandbox.NetworkSandboxed
	return func() {}, nil
}
