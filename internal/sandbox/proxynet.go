package sandbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing/fstest"
	"time"
)

// In-container paths of the network sandbox.
const (
	// CAPath is where the agent container finds the per-task proxy CA; the
	// entrypoint trusts it.
	CAPath         = "/etc/airut/proxy-ca.pem"
	proxyConfigDir = "/airut/config"
	proxyOutDir    = "/airut/out"
	proxyBinary    = "/airut-proxy"
)

// ProxyReadyTimeout bounds the wait for the proxy's health signal.
const ProxyReadyTimeout = 30 * time.Second

// ProxyNetwork is the NetworkProvider of the network sandbox (S4): a
// per-task internal network whose only other member is a proxy container
// that answers DNS with its own address, terminates TLS with a per-task CA,
// enforces the allowlist and swaps surrogate credentials. Fail closed: the
// agent starts only once the proxy is up, and it has no route anywhere else.
type ProxyNetwork struct {
	Runner *Runner
	// ProxyImage is the FROM scratch image holding airut-proxy (see
	// ImageCache.EnsureProxy).
	ProxyImage string
	// ProxyBinary is the airut-proxy binary ProxyImage is built from; the
	// network itself only needs the image.
	ProxyBinary string
	// Allowlist is the validated network-allowlist.yaml content.
	Allowlist []byte
	// ReplacementFile, when set, is the secrets replacement map (host path).
	ReplacementFile string
	// Resolve pins host names to addresses (network.resolve, --resolve).
	Resolve map[string]string
	// UpstreamCA is PEM data trusted for upstream TLS besides system roots.
	UpstreamCA []byte
	// UpstreamDNS is HOST:PORT of the upstream resolver; "" = the system's.
	UpstreamDNS string
	// NetworkLog receives every network log line of the proxy as it is
	// written (ALLOWED/BLOCKED/DNS …); nil drops them.
	NetworkLog func(line string)
}

var _ NetworkProvider = (*ProxyNetwork)(nil)

// EgressNetwork is the shared network through which proxies reach upstream.
func (p *ProxyNetwork) EgressNetwork() string { return p.Runner.Prefix + "-egress" }

// Setup creates the internal network and the proxy, waits for the proxy's
// readiness signal, and returns the agent container's network arguments.
func (p *ProxyNetwork) Setup(ctx context.Context, name string) (args []string, teardown func(context.Context), err error) {
	rt := p.Runner.rt
	if p.ProxyImage == "" {
		return nil, nil, fmt.Errorf("network sandbox: no proxy image: %w", ErrInfrastructure)
	}
	var (
		netName, proxyName, tmp string
		stopFollow              func()
	)
	// undo is a local, not the named result: a failing return sets the
	// result to nil before the deferred cleanup below runs.
	undo := func(ctx context.Context) {
		proxyGone := proxyName == ""
		if netName != "" {
			// Forcing the task network away removes the proxy on it too:
			// one engine call instead of two on every task's teardown.
			if _, err := rt.output(ctx, "network", "rm", "-f", "-t", "0", netName); err != nil {
				rt.Logger.Warn("remove task network", "network", netName, "err", err)
			} else {
				proxyGone = true
			}
		}
		if !proxyGone {
			p.Runner.remove(ctx, proxyName)
		}
		if stopFollow != nil {
			stopFollow()
		}
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}
	defer func() {
		if err != nil {
			undo(context.WithoutCancel(ctx))
			err = fmt.Errorf("network sandbox: %w: %w", err, ErrInfrastructure)
		}
	}()

	tmp, err = os.MkdirTemp("", "airut-proxy-")
	if err != nil {
		return nil, nil, err
	}
	confDir, outDir := filepath.Join(tmp, "config"), filepath.Join(tmp, "out")
	for _, d := range []string{confDir, outDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(confDir, "allowlist.yaml"), p.Allowlist, 0o600); err != nil {
		return nil, nil, err
	}
	proxyArgs := []string{"--allowlist", proxyConfigDir + "/allowlist.yaml",
		"--ca-cert-out", proxyOutDir + "/ca.pem", "--network-log", proxyOutDir + "/network.log"}
	if p.ReplacementFile != "" {
		data, err := os.ReadFile(p.ReplacementFile)
		if err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(filepath.Join(confDir, "replacements.json"), data, 0o600); err != nil {
			return nil, nil, err
		}
		proxyArgs = append(proxyArgs, "--replacements", proxyConfigDir+"/replacements.json")
	}
	if len(p.UpstreamCA) > 0 {
		if err := os.WriteFile(filepath.Join(confDir, "upstream-ca.pem"), p.UpstreamCA, 0o600); err != nil {
			return nil, nil, err
		}
		proxyArgs = append(proxyArgs, "--upstream-ca", proxyConfigDir+"/upstream-ca.pem")
	}
	if p.UpstreamDNS != "" {
		proxyArgs = append(proxyArgs, "--upstream-dns", p.UpstreamDNS)
	}
	hosts := make([]string, 0, len(p.Resolve))
	for h := range p.Resolve {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		proxyArgs = append(proxyArgs, "--resolve", h+"="+p.Resolve[h])
	}
	logPath := filepath.Join(outDir, "network.log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		return nil, nil, err
	}

	// The two networks are independent; creating them at once saves an
	// engine round trip on every task.
	egressErr := make(chan error, 1)
	go func() { egressErr <- p.ensureEgress(ctx) }()
	var proxyIP string
	netName, proxyIP, err = p.createInternal(ctx, name)
	if eerr := <-egressErr; err == nil && eerr != nil {
		return nil, nil, eerr // teardown removes the task network
	}
	if err != nil {
		netName = ""
		return nil, nil, err
	}
	stopFollow = followFile(logPath, p.NetworkLog)

	proxyName = name + "-proxy"
	runArgs := []string{"run", "-d", "--rm", "--name", proxyName,
		"--label", labelKind + "=" + p.Runner.Prefix, "--label", labelOwner + "=" + ownerToken(),
		"--network", netName + ":ip=" + proxyIP, "--network", p.EgressNetwork(),
		"--cap-drop=ALL", "--cap-add=NET_BIND_SERVICE", "--security-opt", "no-new-privileges",
		// The proxy must never route packets between the task network and
		// the egress network: everything goes through its listeners.
		"--sysctl", "net.ipv4.ip_forward=0",
		"--sysctl", "net.ipv6.conf.all.disable_ipv6=1",
		"--memory", "512m", "--pids-limit", "256",
		"--mount", "type=bind,source=" + confDir + ",destination=" + proxyConfigDir + ",ro",
		"--mount", "type=bind,source=" + outDir + ",destination=" + proxyOutDir + ",rw",
	}
	runArgs = append(runArgs, rt.runtimeArgs()...)
	runArgs = append(runArgs, "--entrypoint", proxyBinary, p.ProxyImage, "--listen-ip", proxyIP)
	runArgs = append(runArgs, proxyArgs...)
	if _, err := rt.output(ctx, runArgs...); err != nil {
		return nil, nil, fmt.Errorf("start proxy: %w", err)
	}
	caPath := filepath.Join(outDir, "ca.pem")
	if err := p.waitReady(ctx, proxyName, caPath); err != nil {
		return nil, nil, err
	}

	args = []string{"--network", netName, "--dns", proxyIP,
		// No IPv6 at all: link-local addresses on the bridge would be a
		// path to the host that the proxy never sees.
		"--sysctl", "net.ipv6.conf.all.disable_ipv6=1",
		"--mount", "type=bind,source=" + caPath + ",destination=" + CAPath + ",ro"}
	return args, undo, nil
}

// createInternal creates the task network on a random private /24, retrying
// when the subnet is taken. The proxy takes .2; the network has no gateway,
// so the agent's only neighbour is the proxy.
func (p *ProxyNetwork) createInternal(ctx context.Context, name string) (netName, proxyIP string, err error) {
	netName = p.Runner.Prefix + "-conv-" + strings.TrimPrefix(name, p.Runner.Prefix+"-")
	var last error
	for range 8 {
		a, _ := rand.Int(rand.Reader, big.NewInt(128))
		b, _ := rand.Int(rand.Reader, big.NewInt(256))
		subnet := fmt.Sprintf("10.%d.%d.0/24", 128+a.Int64(), b.Int64())
		_, err := p.Runner.rt.output(ctx, "network", "create", "--internal", "--disable-dns",
			"--subnet", subnet, "--label", labelKind+"="+p.Runner.Prefix, "--label", labelOwner+"="+ownerToken(), netName)
		if err == nil {
			return netName, fmt.Sprintf("10.%d.%d.2", 128+a.Int64(), b.Int64()), nil
		}
		last = err
		if !strings.Contains(strings.ToLower(err.Error()), "subnet") {
			break
		}
	}
	return "", "", fmt.Errorf("create task network %s: %w", netName, last)
}

var egressMu sync.Mutex

// ensureEgress creates the shared egress network once. It carries no owner
// label, so sweeps never remove it from under a running task.
func (p *ProxyNetwork) ensureEgress(ctx context.Context) error {
	egressMu.Lock()
	defer egressMu.Unlock()
	rt := p.Runner.rt
	if _, err := rt.output(ctx, "network", "exists", p.EgressNetwork()); err == nil {
		return nil
	}
	_, err := rt.output(ctx, "network", "create", "--label", "io.airut.egress=1", p.EgressNetwork())
	if err != nil && !strings.Contains(strings.ToLower(err.Error()), "already") {
		return fmt.Errorf("create egress network: %w", err)
	}
	return nil
}

// waitReady waits for the CA certificate, which the proxy writes only after
// every listener is bound, and fails early if the proxy exits.
func (p *ProxyNetwork) waitReady(ctx context.Context, proxyName, caPath string) error {
	deadline := time.Now().Add(ProxyReadyTimeout)
	for i := 0; ; i++ {
		if info, err := os.Stat(caPath); err == nil && info.Size() > 0 {
			return nil
		}
		if i%20 == 19 {
			// Every second, make sure the proxy is still there.
			if _, err := p.Runner.rt.output(ctx, "container", "exists", proxyName); err != nil {
				return fmt.Errorf("proxy exited before it was ready: %s", p.proxyLogs(proxyName))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proxy not ready after %s: %s", ProxyReadyTimeout, p.proxyLogs(proxyName))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *ProxyNetwork) proxyLogs(name string) string {
	out, _ := exec.Command(p.Runner.rt.Command, "logs", "--tail", "5", name).CombinedOutput()
	return strings.TrimSpace(string(out))
}

// followFile calls fn with each line appended to path until the returned
// stop function is called, which delivers what is left and returns.
func followFile(path string, fn func(string)) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		r := bufio.NewReader(f)
		var partial string
		drain := func() {
			for {
				line, err := r.ReadString('\n')
				partial += line
				if err != nil {
					return
				}
				fn(strings.TrimRight(partial, "\r\n"))
				partial = ""
			}
		}
		for {
			drain()
			select {
			case <-done:
				drain()
				if partial != "" {
					fn(partial)
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// EnsureProxy builds (once per binary content) the FROM scratch image that
// holds the static airut-proxy binary.
func (c *ImageCache) EnsureProxy(ctx context.Context, binary string) (string, error) {
	info, err := os.Stat(binary)
	if err != nil {
		return "", fmt.Errorf("proxy binary: %w: %w", err, ErrInfrastructure)
	}
	fileKey := fmt.Sprintf("%s\x00%d\x00%d", binary, info.Size(), info.ModTime().UnixNano())
	c.mu.Lock()
	tag, known := c.proxyTags[fileKey]
	c.mu.Unlock()
	if known {
		return tag, nil
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return "", fmt.Errorf("proxy binary: %w: %w", err, ErrInfrastructure)
	}
	bctx := fstest.MapFS{
		"Dockerfile":  {Data: []byte("FROM scratch\nCOPY airut-proxy " + proxyBinary + "\nENTRYPOINT [\"" + proxyBinary + "\"]\n")},
		"airut-proxy": {Data: data, Mode: 0o755},
	}
	hash, err := ContextHash(bctx)
	if err != nil {
		return "", err
	}
	tag = fmt.Sprintf("localhost/%s-proxy:%s", c.Prefix, hash[:24])
	return c.flight(ctx, "proxy:"+hash, func() (string, error) {
		// The proxy image has no base to refresh, so it never ages out.
		if _, err := c.rt.output(ctx, "image", "exists", tag); err != nil {
			if err := c.buildFS(ctx, tag, bctx, "proxy image"); err != nil {
				return "", err
			}
		}
		c.mu.Lock()
		c.proxyTags[fileKey] = tag
		c.mu.Unlock()
		return tag, nil
	})
}

// FindProxyBinary locates airut-proxy: $AIRUT_PROXY_BINARY, then beside the
// running executable, then on PATH.
func FindProxyBinary() (string, error) {
	if p := os.Getenv("AIRUT_PROXY_BINARY"); p != "" {
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "airut-proxy")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("airut-proxy"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("airut-proxy binary not found (set AIRUT_PROXY_BINARY or install it beside %s): %w",
		filepath.Base(os.Args[0]), ErrInfrastructure)
}
