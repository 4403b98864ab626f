package sandboxcli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/airut/airut/internal/allowlist"
	"github.com/airut/airut/internal/repoconfig"
	"github.com/airut/airut/internal/sandbox"
	"github.com/airut/airut/internal/secrets"
)

// configureNetwork picks the network for the run: the network sandbox by
// default; network_sandbox: false (from the trusted ref only, see
// loadSandboxConfig) is the only way to an open network, and it is
// announced on every run. Everything the proxy needs is validated here,
// before any image is built or container started.
func configureNetwork(ctx context.Context, o *runOpts, cfg *repoconfig.Sandbox, r *rules,
	spec *sandbox.Spec, runner *sandbox.Runner, stderr io.Writer) (proxy *sandbox.ProxyNetwork, cleanup func(), err error) {
	noop := func() {}
	if !cfg.NetworkSandbox {
		fmt.Fprintln(stderr, "airut-sandbox: WARNING: network_sandbox is false in sandbox.yaml: "+
			"the command runs on an OPEN network, with no allowlist and no credential masking")
		if len(cfg.MaskedSecrets) > 0 || len(cfg.SigningCredentials) > 0 || len(cfg.GitHubAppCredentials) > 0 {
			// Fail closed: without the proxy the real values would have to
			// enter the container.
			return nil, noop, fmt.Errorf("sandbox.yaml: masked_secrets, signing_credentials and github_app_credentials need the network sandbox (network_sandbox: false)")
		}
		spec.Network = sandbox.NetworkOpen
		return nil, noop, nil
	}

	var allowData []byte
	if o.allowlist != "" {
		var name string
		if allowData, name, _, err = r.readFile(ctx, "--allowlist", o.allowlist); err == nil {
			_, err = allowlist.Parse(allowData, name)
		}
	} else {
		allowData, _, err = repoconfig.LoadAllowlist(ctx, r.src)
	}
	if err != nil {
		return nil, noop, err
	}
	resolve := map[string]string{}
	for h, a := range cfg.Resolve {
		resolve[h] = a
	}
	for _, r := range o.resolve {
		h, a, ok := strings.Cut(r, "=")
		if !ok || h == "" || a == "" {
			return nil, noop, fmt.Errorf("--resolve %q: want HOST=ADDR", r)
		}
		resolve[strings.ToLower(h)] = a
	}
	caFile := cfg.UpstreamCA
	if o.upstreamCA != "" {
		caFile = o.upstreamCA
	}
	var upstreamCA []byte
	if caFile != "" {
		if upstreamCA, err = os.ReadFile(caFile); err != nil {
			return nil, noop, fmt.Errorf("upstream CA: %w", err)
		}
	}

	masked := map[string]secrets.Masked{}
	for name, m := range cfg.MaskedSecrets {
		masked[name] = secrets.Masked{Value: m.Value, Scopes: m.Scopes, Headers: m.Headers,
			AllowForeignCredentials: m.AllowForeignCredentials}
	}
	signing := map[string]secrets.AWS{}
	for name, c := range cfg.SigningCredentials {
		a := secrets.AWS{AccessKeyID: c.AccessKeyID.Value, SecretAccessKey: c.SecretAccessKey.Value, Scopes: c.Scopes,
			AccessKeyIDEnv: c.AccessKeyID.Name, SecretAccessKeyEnv: c.SecretAccessKey.Name}
		if c.SessionToken != nil {
			a.SessionToken, a.SessionTokenEnv = c.SessionToken.Value, c.SessionToken.Name
		}
		signing[name] = a
	}
	apps := map[string]secrets.GitHubApp{}
	for name, g := range cfg.GitHubAppCredentials {
		apps[name] = secrets.GitHubApp{AppID: g.AppID, PrivateKey: g.PrivateKey, InstallationID: g.InstallationID,
			Scopes: g.Scopes, BaseURL: g.BaseURL, Permissions: g.Permissions, Repositories: g.Repositories,
			AllowForeignCredentials: g.AllowForeignCredentials}
	}
	smap, err := secrets.NewMapFrom(secrets.Pools{Masked: masked, AWS: signing, GitHubApps: apps})
	if err != nil {
		return nil, noop, fmt.Errorf("sandbox.yaml: %w", err)
	}
	if spec.Env == nil {
		spec.Env = map[string]string{}
	}
	for k, v := range smap.Env() {
		spec.Env[k] = v
	}
	bin, err := sandbox.FindProxyBinary()
	if err != nil {
		return nil, noop, err
	}
	sink, closeSink, err := networkLogSink(o, networkLogHeader(o, r), stderr)
	if err != nil {
		return nil, noop, err
	}
	spec.Network = sandbox.NetworkSandboxed
	// ProxyImage is filled in by the caller, which builds it alongside the
	// task image. The real secret values are written only to the runner's
	// private directory (0700, under the state directory), and only until
	// the proxy has read them.
	proxy = &sandbox.ProxyNetwork{
		Runner: runner, ProxyBinary: bin, Allowlist: allowData, Secrets: smap,
		Resolve: resolve, UpstreamCA: upstreamCA, NetworkLog: sink,
		HandOff: handOffTeardown(o.containerCommand),
	}
	spec.Provider = proxy
	return proxy, closeSink, nil
}

// networkLogHeader opens each run's part of the network log: when, and
// which rules the proxy enforces (the ref and commit they came from).
func networkLogHeader(o *runOpts, r *rules) string {
	h := "# airut-sandbox run " + time.Now().UTC().Format(time.RFC3339) + ": rules from " + r.describe()
	if !r.trusted {
		h += ", the code under test (" + r.why + ")"
	}
	if o.allowlist != "" {
		h += "; allowlist --allowlist " + o.allowlist
	}
	return h
}

// networkLogSink writes proxy log lines to --network-log (appending) and,
// with --network-log-live, to stderr, each run's lines after its header.
func networkLogSink(o *runOpts, header string, stderr io.Writer) (func(string), func(), error) {
	var f *os.File
	if o.networkLog != "" {
		var err error
		f, err = os.OpenFile(o.networkLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("--network-log: %w", err)
		}
	}
	if f == nil && !o.networkLogLive {
		return nil, func() {}, nil
	}
	var mu sync.Mutex
	sink := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if f != nil {
			fmt.Fprintln(f, line)
		}
		if o.networkLogLive {
			fmt.Fprintln(stderr, "[network] "+line)
		}
	}
	sink(header)
	return sink, func() {
		if f != nil {
			f.Close()
		}
	}, nil
}
