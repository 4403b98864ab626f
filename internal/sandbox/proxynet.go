package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airut/airut/internal/secrets"
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

// Default limits of the proxy container. The CPU limit keeps a flood of TLS
// handshakes from one task from starving the host and the other tasks.
const (
	DefaultProxyMemory = "512m"
	DefaultProxyCPUs   = "1"
	DefaultProxyPids   = 256
)

// replacementsFile is the replacement map's name in the proxy's config
// directory.
const replacementsFile = "replacements.json"

// proxyStopGrace is how long the proxy gets at teardown to finish its last
// log lines (it shuts down on SIGTERM) before it is killed.
const proxyStopGrace = 2

// ProxyNetwork is the NetworkProvider of the network sandbox (S4): a
// per-task internal network whose only other member is a proxy container
// that answers DNS with its own address, terminates TLS with a per-task CA,
// enforces the allowlist and swaps surrogate credentials. Fail closed: the
// agent starts only once the proxy is up, and it has no route anywhere else.
//
// Set-up has four steps, each undone in reverse on failure and at
// teardown: the task's private directory (proxy config, replacement map),
// the networks, the proxy container, its readiness.
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
	// Secrets, when set, holds the masked secrets whose replacement map the
	// proxy gets. The map is written only into the task's private directory
	// under Runner.StateDir (0700/0600), never under /tmp, and removed as
	// soon as the proxy has read it (it is ready); a crash before that
	// leaves it to the next sweep.
	Secrets *secrets.Map
	// Resolve pins host names to addresses (network.resolve, --resolve).
	Resolve map[string]string
	// UpstreamCA is PEM data trusted for upstream TLS besides system roots.
	UpstreamCA []byte
	// UpstreamDNS is HOST:PORT of the upstream resolver; "" = the system's.
	UpstreamDNS string
	// Pending, when set, delivers the allowlist (in place of Allowlist)
	// after Setup has been called: the task's configuration is still
	// being read while its container starts. A pool's Setup then hands
	// out a ready spare at once and claims it in the TaskNetwork's Ready;
	// any other Setup waits for Pending first.
	Pending func(ctx context.Context) ([]byte, error)
	// NetworkLog receives every network log line of the proxy, in order, as
	// the proxy writes it to its standard output (ALLOWED/BLOCKED/DNS …);
	// the last lines are delivered before teardown returns. nil drops them.
	NetworkLog func(line string)
	// HandOff, when set, has each teardown finished by another process:
	// the proxy is stopped (through its input, no engine call) and its
	// network log read to the end here; the removal of what is left, the
	// stopped proxy's container and the task network, is written to a
	// file in this process's run marker, which HandOff gives to a process
	// that outlives this one and calls Runtime.FinishHandOff (airut-sandbox
	// exits as soon as its command's result is known). Should that process
	// die first, the marker stays and the next Sweep removes the rest. An
	// error from HandOff has the teardown done here.
	HandOff func(file string) error
	// Memory, CPUs and Pids limit the proxy container; empty or zero means
	// DefaultProxyMemory, DefaultProxyCPUs, DefaultProxyPids.
	Memory string
	CPUs   string
	Pids   int
}

var _ NetworkProvider = (*ProxyNetwork)(nil)

// EgressNetwork is the shared network through which proxies reach upstream.
func (p *ProxyNetwork) EgressNetwork() string { return p.Runner.Prefix + "-egress" }

// Setup creates the task's network sandbox and returns the agent
// container's network arguments. On failure nothing it created is left.
func (p *ProxyNetwork) Setup(ctx context.Context, name string) (*TaskNetwork, error) {
	if p.Pending != nil {
		q, err := p.resolved(ctx)
		if err != nil {
			return nil, err
		}
		return q.Setup(ctx, name)
	}
	tn, err := p.setup(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("network sandbox: %w: %w", err, ErrInfrastructure)
	}
	return tn, nil
}

func (p *ProxyNetwork) setup(ctx context.Context, name string) (*TaskNetwork, error) {
	// A cold start is a spare claimed before its proxy starts: the claim
	// file is already there when the proxy looks for it.
	sp, err := p.newSpare(ctx, name, p)
	if err != nil {
		return nil, err
	}
	return sp.finish(ctx, p)
}

// resolved is p with its Pending allowlist delivered.
func (p *ProxyNetwork) resolved(ctx context.Context) (*ProxyNetwork, error) {
	allow, err := p.Pending(ctx)
	if err != nil {
		return nil, err
	}
	q := *p
	q.Allowlist, q.Pending = allow, nil
	return &q, nil
}

// spare is one task's network sandbox before (or while) its task claims
// it: the private directory, the task network, the proxy on it. A spare
// is claimed by one task only, and torn down with it.
type spare struct {
	name      string
	key       spareKey
	confDir   string
	outDir    string
	netName   string
	proxyIP   string
	proxyName string
	proc      *proxyProcess
	// holderName is the container holding the task network's namespace,
	// which the agent's container joins; holderGone is closed when it
	// has exited (nil when that cannot be watched).
	holderName string
	holderGone <-chan struct{}
	undo       undoStack
	// taken is closed when a task claims the spare (the pool's health
	// watch stops).
	taken chan struct{}
}

// spareKey is what a spare must share with the task that claims it: the
// proxy container's image and limits.
type spareKey struct {
	image, memory, cpus string
	pids                int
}

func (p *ProxyNetwork) spareKey() spareKey {
	memory, cpus, pids := p.Memory, p.CPUs, p.Pids
	if memory == "" {
		memory = DefaultProxyMemory
	}
	if cpus == "" {
		cpus = DefaultProxyCPUs
	}
	if pids <= 0 {
		pids = DefaultProxyPids
	}
	return spareKey{image: p.ProxyImage, memory: memory, cpus: cpus, pids: pids}
}

// newSpare creates the private directory and the networks and starts the
// proxy waiting for its claim. With task set, the claim is written before
// the proxy starts (a cold start). On failure nothing is left.
func (p *ProxyNetwork) newSpare(ctx context.Context, name string, task *ProxyNetwork) (_ *spare, err error) {
	return p.newSpareImage(ctx, name, task, nil)
}

// newSpareImage is newSpare with the proxy image, when image is not nil,
// looked up while the private directory and the networks are made (which
// do not need it); it sets p.ProxyImage.
func (p *ProxyNetwork) newSpareImage(ctx context.Context, name string, task *ProxyNetwork, image func(context.Context) (string, error)) (_ *spare, err error) {
	if image == nil && p.ProxyImage == "" {
		return nil, errors.New("no proxy image")
	}
	imageDone := make(chan struct{})
	var imageErr error
	if image != nil {
		go func() {
			defer close(imageDone)
			p.ProxyImage, imageErr = image(ctx)
		}()
	} else {
		close(imageDone)
	}
	waitImage := func() error {
		<-imageDone
		return imageErr
	}
	// No return leaves the look-up running.
	defer func() { _ = waitImage() }()
	sp := &spare{name: name, proxyName: name + "-proxy", taken: make(chan struct{})}
	if task == nil {
		// Made ahead of need, a spare also holds its network's namespace
		// for the agent (startHolder); on a cold start the holder would
		// cost more than it saves.
		sp.holderName = name + "-net"
	}
	defer func() {
		if err != nil {
			sp.undo.unwind(ctx)
		}
	}()
	dir, err := p.Runner.taskDir(name)
	if err != nil {
		return nil, err
	}
	sp.undo.push(func(context.Context) { os.RemoveAll(dir) })
	sp.confDir, sp.outDir = filepath.Join(dir, "config"), filepath.Join(dir, "out")
	for _, d := range []string{sp.confDir, sp.outDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	if task != nil {
		if err := task.writeClaim(sp); err != nil {
			return nil, err
		}
	}

	sp.netName, sp.proxyIP, err = p.createNetworks(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := waitImage(); err != nil {
		return nil, err
	}
	if p.ProxyImage == "" {
		return nil, errors.New("no proxy image")
	}
	sp.key = p.spareKey()
	netGone := false
	sp.undo.push(func(ctx context.Context) {
		if !netGone {
			p.Runner.removeNetwork(ctx, sp.netName)
		}
	})

	// The proxy and the network's holder are independent: they start at
	// once.
	holderErr := make(chan error, 1)
	if sp.holderName != "" {
		go func() { holderErr <- p.startHolder(ctx, sp) }()
	} else {
		holderErr <- nil
	}
	proc, err := p.startProxy(ctx, sp, task)
	herr := <-holderErr
	if sp.holderName != "" {
		// A failed run may still have created the container.
		sp.undo.push(func(ctx context.Context) {
			if !netGone {
				p.Runner.remove(ctx, sp.holderName)
			}
		})
	}
	if err != nil {
		return nil, err
	}
	sp.proc = proc
	sp.undo.push(func(ctx context.Context) {
		proc.finishing.Store(true)
		if p.HandOff != nil && p.handOff(ctx, sp, proc) {
			netGone = true
			return
		}
		// Removing the task network stops the proxy and the holder on it
		// too (SIGTERM, then SIGKILL after the grace): one engine call on
		// every task's teardown, and the proxy flushes its last log lines.
		netGone = p.Runner.removeNetworkOnce(ctx, sp.netName, proxyStopGrace)
		if !netGone {
			p.Runner.remove(ctx, sp.proxyName)
		}
		if proc.finish(ctx) {
			// The client had to be killed: the engine may still hold a
			// container it created late (a spare torn down while it was
			// starting), which no network removal reached.
			p.Runner.remove(ctx, sp.proxyName)
		}
	})
	if herr != nil {
		return nil, herr
	}
	return sp, nil
}

// Limits of the holder container: it runs one idle process.
const (
	holderMemory = "32m"
	holderPids   = 8
)

// startHolder starts the container that holds the task network's
// namespace: attached to the task network, with the proxy as its
// resolver and IPv6 off. The agent's container joins that namespace
// instead of being attached itself, so the network's set-up (the
// engine's veth, address and firewall work, a quarter of a bare start)
// is off the agent's path. The holder runs airut-proxy's "hold" from the
// proxy image: nothing listens in it and it has no capability.
func (p *ProxyNetwork) startHolder(ctx context.Context, sp *spare) error {
	rt := p.Runner.rt
	args := []string{"run", "-d", "--rm", "--name", sp.holderName,
		"--label", labelKind + "=" + p.Runner.Prefix, "--label", labelOwner + "=" + ownerToken(),
		"--network", sp.netName, "--dns", sp.proxyIP,
		// No IPv6 at all: link-local addresses on the bridge would be a
		// path to the host that the proxy never sees.
		"--sysctl", "net.ipv6.conf.all.disable_ipv6=1",
		"--cap-drop=ALL", "--security-opt", "no-new-privileges", "--read-only",
		"--memory", holderMemory, "--pids-limit", strconv.Itoa(holderPids),
	}
	if rt.IsPodman() {
		args = append(args, "--log-driver", "none")
	}
	args = append(args, pullNever)
	args = append(args, rt.runtimeArgs()...)
	args = append(args, "--entrypoint", proxyBinary, p.ProxyImage, "hold")
	out, err := rt.output(ctx, args...)
	if err != nil {
		return fmt.Errorf("start network holder: %w", err)
	}
	sp.holderGone = watchContainerExit(ctx, rt, strings.TrimSpace(string(out)))
	return nil
}

// claim hands a waiting spare its task's configuration. The spare is the
// task's from here on, whatever happens: on failure it is torn down.
func (sp *spare) claim(ctx context.Context, task *ProxyNetwork) (*TaskNetwork, error) {
	if err := task.writeClaim(sp); err != nil {
		sp.undo.unwind(ctx)
		return nil, err
	}
	if task.NetworkLog != nil {
		sp.proc.logFn.Store(&task.NetworkLog)
	}
	return sp.finish(ctx, task)
}

// finish waits for the claimed proxy to be ready (it has generated the
// task's CA and bound its listeners) and returns the task's network.
func (sp *spare) finish(ctx context.Context, task *ProxyNetwork) (*TaskNetwork, error) {
	if err := sp.ready(ctx); err != nil {
		sp.undo.unwind(ctx)
		return nil, err
	}
	return sp.taskNetwork(), nil
}

// taskNetwork hands the spare to its task: the agent's network arguments,
// the proxy's loss, and the teardown of everything the spare holds.
func (sp *spare) taskNetwork() *TaskNetwork {
	return &TaskNetwork{Args: sp.args(), Lost: sp.proc.lost, Teardown: sp.undo.release()}
}

// claimLater hands the spare to a task whose allowlist is still being read
// (ProxyNetwork.Pending): the agent's container can start on it at once,
// and the TaskNetwork's Ready claims it. The spare is the task's from
// here on; the Teardown removes it whatever Ready did.
func (sp *spare) claimLater(task *ProxyNetwork) *TaskNetwork {
	tn := sp.taskNetwork()
	tn.Ready = func(ctx context.Context) error {
		allow, err := task.Pending(ctx)
		if err != nil {
			return err
		}
		t := *task
		t.Allowlist, t.Pending = allow, nil
		if err := t.writeClaim(sp); err != nil {
			return fmt.Errorf("network sandbox: claim: %w", err)
		}
		if t.NetworkLog != nil {
			sp.proc.logFn.Store(&t.NetworkLog)
		}
		if err := sp.ready(ctx); err != nil {
			return fmt.Errorf("network sandbox: %w", err)
		}
		return nil
	}
	return tn
}

// ready waits for the claimed proxy to have made the task's CA and bound
// its listeners, and checks that the network's holder still runs.
func (sp *spare) ready(ctx context.Context) error {
	if err := waitReady(ctx, sp.proc, filepath.Join(sp.outDir, caFile), 2*time.Millisecond); err != nil {
		return err
	}
	// The proxy has read its configuration before it signals readiness:
	// the real secret values need not stay on disk while the task runs.
	if err := os.Remove(filepath.Join(sp.confDir, replacementsFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if sp.gone() {
		return errors.New("the task network's holder container exited")
	}
	return nil
}

// caFile is the per-task CA's name in the proxy's output directory, which
// the agent's container sees read-only at CAPath's directory (the CA is
// written only once the proxy is claimed and ready, after the agent's
// container may have started).
var caFile = path.Base(CAPath)

// args are the agent container's network arguments on the spare.
func (sp *spare) args() []string {
	// The agent joins the holder's namespace when there is one: the task
	// network, the proxy as resolver, IPv6 off, all set when the holder
	// started.
	args := []string{"--network", "container:" + sp.holderName}
	if sp.holderName == "" {
		args = []string{"--network", sp.netName, "--dns", sp.proxyIP,
			// No IPv6 at all: link-local addresses on the bridge would be
			// a path to the host that the proxy never sees.
			"--sysctl", "net.ipv6.conf.all.disable_ipv6=1"}
	}
	return append(args, "--mount", "type=bind,source="+sp.outDir+",destination="+path.Dir(CAPath)+",ro")
}

// claimFile is the claim's name in the proxy's config directory.
const claimFile = "claim.json"

// writeClaim writes the task's configuration into the spare's config
// directory: the files first, then the claim naming them, atomically (the
// waiting proxy reads the claim as soon as it appears).
func (p *ProxyNetwork) writeClaim(sp *spare) error {
	dir := sp.confDir
	if err := os.WriteFile(filepath.Join(dir, "allowlist.yaml"), p.Allowlist, 0o600); err != nil {
		return err
	}
	args := []string{"--allowlist", proxyConfigDir + "/allowlist.yaml", "--ca-cert-out", proxyOutDir + "/" + caFile}
	if p.Secrets != nil {
		if err := p.Secrets.WriteReplacementFile(filepath.Join(dir, replacementsFile)); err != nil {
			return err
		}
		args = append(args, "--replacements", proxyConfigDir+"/"+replacementsFile)
	}
	if len(p.UpstreamCA) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "upstream-ca.pem"), p.UpstreamCA, 0o600); err != nil {
			return err
		}
		args = append(args, "--upstream-ca", proxyConfigDir+"/upstream-ca.pem")
	}
	if p.UpstreamDNS != "" {
		args = append(args, "--upstream-dns", p.UpstreamDNS)
	}
	hosts := make([]string, 0, len(p.Resolve))
	for h := range p.Resolve {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		args = append(args, "--resolve", h+"="+p.Resolve[h])
	}
	data, err := json.Marshal(map[string][]string{"args": args})
	if err != nil {
		return err
	}
	// No fsync: a crash loses the task anyway, and the sweep removes the
	// directory.
	tmp := filepath.Join(dir, "."+claimFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, claimFile))
}

// createNetworks creates the task network and, when missing, the shared
// egress network. The two are independent; creating them at once saves an
// engine round trip on every task. On failure neither is left over from
// this call (the egress network is shared and stays).
func (p *ProxyNetwork) createNetworks(ctx context.Context, name string) (netName, proxyIP string, err error) {
	egressErr := make(chan error, 1)
	go func() { egressErr <- p.ensureEgress(ctx) }()
	netName, proxyIP, err = p.createInternal(ctx, name)
	if eerr := <-egressErr; err == nil && eerr != nil {
		p.Runner.removeNetwork(context.WithoutCancel(ctx), netName)
		return "", "", eerr
	}
	return netName, proxyIP, err
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
		if ctx.Err() != nil {
			// The engine may have created the network before it was
			// stopped.
			p.Runner.removeNetwork(context.WithoutCancel(ctx), netName)
			return "", "", fmt.Errorf("create task network %s: %w", netName, err)
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

// proxyProcess is the engine client running the proxy attached: its
// standard output is the network log, its standard error the proxy's own
// log (kept for error messages).
type proxyProcess struct {
	*engineProcess
	stderr *tailBuf
	// lost is closed when the client dies while the task still runs (it
	// was killed, or the engine failed): the network log is incomplete and
	// the proxy can no longer be watched.
	lost      chan struct{}
	finishing atomic.Bool
	// logFn is the network log's receiver: set when the task claims the
	// proxy, before its claim is written (a spare logs nothing).
	logFn atomic.Pointer[func(string)]
	// stdin, with HandOff, is the proxy's input: closing it stops the
	// proxy, which then writes its end-of-log line (ended is closed).
	stdin *os.File
	ended chan struct{}
}

// startProxy runs the proxy container with its output attached, so every
// network log line reaches NetworkLog without polling a file.
func (p *ProxyNetwork) startProxy(ctx context.Context, sp *spare, task *ProxyNetwork) (*proxyProcess, error) {
	rt := p.Runner.rt
	proxyName, netName, proxyIP, confDir, outDir := sp.proxyName, sp.netName, sp.proxyIP, sp.confDir, sp.outDir
	memory, cpus, pids := sp.key.memory, sp.key.cpus, sp.key.pids
	runArgs := []string{"run", "--rm", "--name", proxyName,
		"--label", labelKind + "=" + p.Runner.Prefix, "--label", labelOwner + "=" + ownerToken(),
		"--network", netName + ":ip=" + proxyIP, "--network", p.EgressNetwork(),
		"--cap-drop=ALL", "--cap-add=NET_BIND_SERVICE", "--security-opt", "no-new-privileges",
		// The proxy must never route packets between the task network and
		// the egress network: everything goes through its listeners.
		"--sysctl", "net.ipv4.ip_forward=0",
		"--sysctl", "net.ipv6.conf.all.disable_ipv6=1",
		"--memory", memory, "--pids-limit", strconv.Itoa(pids),
		"--mount", "type=bind,source=" + confDir + ",destination=" + proxyConfigDir + ",ro",
		"--mount", "type=bind,source=" + outDir + ",destination=" + proxyOutDir + ",rw",
	}
	if p.Runner.hostInfo().cpuLimitWorks() {
		runArgs = append(runArgs, "--cpus", cpus)
	}
	if rt.IsPodman() {
		// The output is read from the attached client; a copy in the
		// engine's log store would only cost disk writes.
		runArgs = append(runArgs, "--log-driver", "none")
	}
	runArgs = append(runArgs, pullNever)
	runArgs = append(runArgs, rt.runtimeArgs()...)
	var stdinR *os.File
	pp := &proxyProcess{stderr: newTail(8), lost: make(chan struct{}), ended: make(chan struct{})}
	if p.HandOff != nil {
		var err error
		if stdinR, pp.stdin, err = os.Pipe(); err != nil {
			return nil, fmt.Errorf("start proxy: %w", err)
		}
		runArgs = append(runArgs, "-i")
	}
	runArgs = append(runArgs, "--entrypoint", proxyBinary, p.ProxyImage, "--listen-ip", proxyIP,
		"--wait-config", proxyConfigDir+"/"+claimFile, "--wait-signal", proxyOutDir+"/waiting")
	if p.HandOff != nil {
		runArgs = append(runArgs, "--stop-on-eof")
	}

	// The client lives as long as the proxy: it is not tied to ctx, and
	// teardown stops the proxy through the engine (or its input).
	cmd := rt.command(context.WithoutCancel(ctx), runArgs...)
	if stdinR != nil {
		cmd.Stdin = stdinR
	}
	if task != nil && task.NetworkLog != nil {
		pp.logFn.Store(&task.NetworkLog)
	}
	var endOnce sync.Once
	logFn := func(line []byte) {
		if stdinR != nil && string(line) == proxyEndOfLog {
			endOnce.Do(func() { close(pp.ended) })
			return
		}
		if fn := pp.logFn.Load(); fn != nil {
			(*fn)(string(line))
		}
	}
	proc, err := startStreaming(cmd, logFn, nil, pp.stderr, DefaultMaxLine)
	if stdinR != nil {
		// The client has its copy.
		stdinR.Close()
	}
	if err != nil {
		if pp.stdin != nil {
			pp.stdin.Close()
		}
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	pp.engineProcess = proc
	go func() {
		<-proc.exited
		if !pp.finishing.Load() && clientFailed(proc.err) {
			rt.Logger.Warn("the proxy's engine client died mid-task", "proxy", proxyName, "err", proc.err)
			close(pp.lost)
		}
	}()
	return pp, nil
}

// clientFailed tells an engine client that was killed or failed itself
// (status 125) from one that returned the container's own exit status.
func clientFailed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err != nil
	}
	return ee.ExitCode() < 0 || ee.ExitCode() == 125
}

// finish waits for the client to return once the proxy is stopped, and
// for the last network log lines; a client that hangs is killed.
func (pp *proxyProcess) finish(ctx context.Context) (killed bool) {
	pp.finishing.Store(true)
	select {
	case <-pp.exited:
	case <-time.After(proxyStopGrace*time.Second + 10*time.Second):
		_ = pp.cmd.Process.Kill()
		<-pp.exited
		killed = true
	case <-ctx.Done():
		_ = pp.cmd.Process.Kill()
		<-pp.exited
		killed = true
	}
	pp.drain(ctx, 10*time.Second)
	return killed
}

// waitReady waits for a file the proxy writes (the CA certificate, which
// it writes only after every listener is bound, or a spare's wait signal),
// and fails at once if the proxy exits.
func waitReady(ctx context.Context, proc *proxyProcess, caPath string, poll time.Duration) error {
	deadline := time.NewTimer(ProxyReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if info, err := os.Stat(caPath); err == nil && info.Size() > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-proc.exited:
			proc.drain(ctx, 2*time.Second) // for the whole reason
			return fmt.Errorf("proxy exited before it was ready (%v): %s", proc.err, engineMessage(proc.stderr.lines()))
		case <-deadline.C:
			return fmt.Errorf("proxy not ready after %s: %s", ProxyReadyTimeout, engineMessage(proc.stderr.lines()))
		case <-tick.C:
		}
	}
}

// engineMessage is the tail of an engine client's standard error, on one
// line.
func engineMessage(lines []string) string {
	if len(lines) == 0 {
		return "no output"
	}
	return strings.Join(lines, " | ")
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
