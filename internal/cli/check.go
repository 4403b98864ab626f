package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airut/airut/internal/channel/email"
	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/gateway"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/sandbox"
)

// finding is one line of `airut check`.
type finding struct {
	ok    bool
	fatal bool // the sandbox cannot work while this is wrong
	what  string
	hint  string
}

func newCheckCmd(configPath *string, stdout io.Writer) *cobra.Command {
	var engine string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that this host can run the sandbox, and say how to fix what it cannot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := runChecks(cmd.Context(), engine, *configPath)
			bad := 0
			for _, f := range fs {
				mark := "ok  "
				if !f.ok {
					mark = "WARN"
					if f.fatal {
						mark = "FAIL"
						bad++
					}
				}
				fmt.Fprintf(stdout, "[%s] %s\n", mark, f.what)
				if !f.ok && f.hint != "" {
					fmt.Fprintf(stdout, "       fix: %s\n", f.hint)
				}
			}
			if bad > 0 {
				return &ExitError{Code: 1, Msg: fmt.Sprintf("%d problem(s) stop the sandbox from working", bad)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&engine, "container-command", "", "container engine to check (default: from the config, else podman)")
	return cmd
}

func runChecks(ctx context.Context, engine, configPath string) []finding {
	var out []finding
	add := func(f finding) { out = append(out, f) }

	var cfg *config.Config
	path, err := resolveConfigPath(configPath)
	if err == nil {
		cfg, err = config.Load(path, lookupEnv, redact.NewRegistry())
		switch {
		case errors.Is(err, fs.ErrNotExist):
			add(finding{ok: false, what: "config " + path + ": not found", hint: "airut run starts without one: set it up in the dashboard (http://127.0.0.1:5200/config), or write one with airut config init"})
		case err != nil:
			add(finding{fatal: true, what: "config " + path + ":\n" + indent(err.Error()), hint: "fix the lines above; airut config validate"})
		case cfg.Err() != nil:
			add(finding{what: "config " + path + ": some repos are invalid:\n" + indent(cfg.Err().Error()), hint: "airut config validate"})
		default:
			add(finding{ok: true, what: fmt.Sprintf("config %s: valid, %d repo(s)", path, len(cfg.Repos))})
		}
	}
	if cfg != nil {
		out = append(out, mailChecks(ctx, cfg)...)
		out = append(out, claudeChecks(ctx, cfg)...)
	}
	if engine == "" {
		engine = "podman"
		if cfg != nil && cfg.ContainerCommand != "" {
			engine = cfg.ContainerCommand
		}
	}

	if _, err := exec.LookPath("git"); err != nil {
		add(finding{fatal: true, what: "git: not found", hint: "sudo apt-get install git"})
	} else {
		add(finding{ok: true, what: "git: found"})
	}

	rt, err := sandbox.NewRuntime(engine, nil)
	if err != nil {
		add(finding{fatal: true, what: err.Error(), hint: "sudo apt-get install podman runc uidmap slirp4netns"})
		return out
	}
	if cfg != nil {
		rt.OCIRuntime, rt.Ulimits = cfg.ContainerRuntime, cfg.ContainerUlimits
	}
	host := sandbox.ProbeHost(ctx, rt)
	if host.ProbeErr != nil {
		add(finding{fatal: true, what: engine + " info failed: " + host.ProbeErr.Error(), hint: sandbox.StartHint(host.ProbeErr.Error())})
		return out
	}
	mode := "rootful"
	if host.Rootless {
		mode = "rootless"
	}
	add(finding{ok: true, what: fmt.Sprintf("%s %s, %s, cgroup %s, OCI runtime %s", engine, host.Version, mode, host.CgroupVersion, host.OCIRuntime)})

	if host.Rootless && rt.IsPodman() {
		out = append(out, rootlessChecks()...)
	}
	if host.LimitsEnforceable {
		add(finding{ok: true, what: "resource limits (memory, cpus, pids) can be enforced"})
	} else {
		add(finding{what: "resource limits CANNOT be enforced: " + host.LimitsReason,
			hint: "tasks still run, and every task start warns that its limits are not applied"})
	}
	out = append(out, trialRun(ctx, rt, host)...)
	return out
}

func rootlessChecks() []finding {
	var out []finding
	u, err := user.Current()
	name := ""
	if err == nil {
		name = u.Username
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, _ := os.ReadFile(f)
		found := false
		for _, line := range strings.Split(string(data), "\n") {
			if fields := strings.Split(line, ":"); len(fields) == 3 && (fields[0] == name || u != nil && fields[0] == u.Uid) {
				found = true
			}
		}
		if found {
			out = append(out, finding{ok: true, what: f + ": has a range for " + name})
		} else {
			out = append(out, finding{fatal: true, what: f + ": no range for " + name,
				hint: fmt.Sprintf("sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s", name)})
		}
	}
	if fd, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		out = append(out, finding{fatal: true, what: "/dev/net/tun: not usable by this user (" + err.Error() + ")",
			hint: "sudo chmod 666 /dev/net/tun (rootless networking needs it)"})
	} else {
		fd.Close()
		out = append(out, finding{ok: true, what: "/dev/net/tun: usable"})
	}
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		if _, err2 := exec.LookPath("pasta"); err2 != nil {
			out = append(out, finding{fatal: true, what: "neither slirp4netns nor pasta found", hint: "sudo apt-get install slirp4netns"})
		}
	}
	return out
}

// trialRun starts a trivial container from an image made of this very
// binary (imported, never pulled), with the configured runtime knobs.
func trialRun(ctx context.Context, rt *sandbox.Runtime, host sandbox.HostInfo) []finding {
	self, err := os.Executable()
	if err != nil {
		return []finding{{what: "cannot find own executable for the trial container: " + err.Error()}}
	}
	if !isStatic(self) {
		// An empty image has no dynamic loader: the trial would fail for a
		// reason that has nothing to do with the host.
		return []finding{{what: "trial container skipped: " + self + " is dynamically linked",
			hint: "build airut with CGO_ENABLED=0 (make build) so the check can start a container from it"}}
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		return []finding{{what: "cannot read own executable: " + err.Error()}}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "airut", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(bin)
	_ = tw.Close()

	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// A tag per run, so two checks at once cannot remove each other's image.
	tag := "localhost/airut-check:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	imp := exec.CommandContext(ctx, rt.Command, "import", "-", tag)
	imp.Stdin = &buf
	if msg, err := imp.CombinedOutput(); err != nil {
		return []finding{{fatal: true, what: "import trial image: " + strings.TrimSpace(string(msg))}}
	}
	defer exec.Command(rt.Command, "rmi", "-f", tag).Run()

	runner := sandbox.NewRunner(rt, "airut-check")
	var stderr []string
	res := runner.Run(ctx, sandbox.Spec{Context: "trial", Image: tag, Command: []string{"/airut", "version"},
		Network: sandbox.NetworkNone, Workdir: "/", Stderr: func(l []byte) { stderr = append(stderr, string(l)) }})
	if res.Outcome == sandbox.OutcomeSuccess {
		return []finding{{ok: true, what: fmt.Sprintf("a trivial container starts (OCI runtime %s)", host.OCIRuntime)}}
	}
	msg := strings.Join(stderr, "\n")
	hint := sandbox.StartHint(msg + " " + res.Reason)
	if hint == "" {
		hint = "see the engine's message above; `" + rt.Command + " run --rm` of any image should work for this user"
	}
	if msg == "" {
		msg = res.Reason
	}
	return []finding{{fatal: true, what: "a trivial container does not start:\n" + indent(msg), hint: hint}}
}

func indent(s string) string {
	return "       " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n       ")
}

// isStatic reports whether an ELF executable needs no dynamic loader.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// mailProbeTimeout bounds one repo's mail check: both logins, TLS
// included, on a server that accepts the connection and then stalls.
const mailProbeTimeout = 20 * time.Second

// mailChecks logs in to every repo's IMAP server and authenticates to its
// SMTP server with the channel's own Probe, so a wrong password or an
// untrusted certificate fails here and not at the first message. Each
// failure is fatal for that repo's mail and says what to change.
func mailChecks(ctx context.Context, cfg *config.Config) []finding {
	var out []finding
	ids := make([]string, 0, len(cfg.Repos))
	for id := range cfg.Repos {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rc := cfg.Repos[id]
		if rc.Email == nil {
			continue
		}
		e := rc.Email
		ch, err := emailChannel(gateway.ChannelEnv{RepoID: id, Repo: rc, Config: cfg,
			Exists: func(string) bool { return false }, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			out = append(out, finding{fatal: true, what: fmt.Sprintf("repo %s: email channel: %v", id, err), hint: "airut config validate"})
			continue
		}
		mc, ok := ch.(*email.Channel)
		if !ok {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, mailProbeTimeout)
		for _, side := range []struct {
			kind, key, addr string
			probe           func(context.Context) error
		}{
			{"IMAP", "imap", net.JoinHostPort(e.IMAP.Server, strconv.Itoa(e.IMAP.Port)), mc.ProbeIMAP},
			{"SMTP", "smtp", net.JoinHostPort(e.SMTP.Server, strconv.Itoa(e.SMTP.Port)), mc.ProbeSMTP},
		} {
			what := fmt.Sprintf("repo %s: %s server %s", id, side.kind, side.addr)
			err := side.probe(pctx)
			if err == nil {
				done := "login works"
				if side.key == "smtp" {
					done = "connection works"
					if e.SMTP.RequireAuth {
						done = "authentication works"
					}
				}
				out = append(out, finding{ok: true, what: what + ": " + done})
				continue
			}
			out = append(out, mailFinding(what, "repos."+id+".email", side.key, err))
		}
		cancel()
	}
	return out
}

// mailFinding turns one side's probe failure into a finding with the fix
// for its kind of problem.
func mailFinding(what, prefix, side string, err error) finding {
	f := finding{fatal: true, what: what + ": " + err.Error()}
	var pe *email.ProbeError
	problem := email.ProblemOther
	if errors.As(err, &pe) {
		problem = pe.Problem
		f.what = what + ": " + pe.Err.Error()
	}
	switch problem {
	case email.ProblemUnreachable:
		f.what = what + ": unreachable (" + strings.TrimPrefix(f.what, what+": ") + ")"
		f.hint = fmt.Sprintf("check %s.%s.server and .port, DNS, and outbound firewall rules", prefix, side)
	case email.ProblemCertificate:
		f.what = what + ": certificate not trusted (" + strings.TrimPrefix(f.what, what+": ") + ")"
		f.hint = fmt.Sprintf("if the server's certificate comes from a private CA, set %s.%s.ca_file to that CA's PEM file; "+
			"%s.%s.server must be a name the certificate carries", prefix, side, prefix, side)
	case email.ProblemLogin:
		f.what = what + ": login refused (" + strings.TrimPrefix(f.what, what+": ") + ")"
		f.hint = fmt.Sprintf("check %s.account.username and %s.account.password (or the !env variable it names, and .env); "+
			"for Microsoft 365, %s.microsoft_oauth2", prefix, prefix, prefix)
	default:
		f.hint = fmt.Sprintf("check the %s settings under %s (tls, port, starttls, require_auth) against what the server offers", strings.ToUpper(side), prefix)
	}
	return f
}
