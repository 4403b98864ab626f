package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/redact"
)

// geteuid is os.Geteuid, replaced in tests to exercise the user-unit
// path as root.
var geteuid = os.Geteuid

// ServiceName is the systemd unit airut install-service writes.
const ServiceName = "airut.service"

// unitSpec is what the unit is made of.
type unitSpec struct {
	Exec, Config, Path string
	// System: a system unit run as User (installed as root), else a user
	// unit.
	System  bool
	User    string
	UID     string
	Home    string
	StopSec int
}

// The unit deliberately carries no sandboxing directives: rootless Podman
// needs what they take away. NoNewPrivileges (and any SystemCallFilter,
// CapabilityBoundingSet) stops the setuid newuidmap/newgidmap that map
// the container's user namespace; PrivateTmp, ProtectHome and
// ProtectSystem=strict hide or freeze the user's container storage
// (~/.local/share/containers) and runtime directory, so the service and
// the user's own `podman` would see different containers and locks;
// RestrictNamespaces and PrivateUsers forbid the user namespaces Podman
// creates. The gateway's isolation is the container sandbox itself.
var unitTmpl = template.Must(template.New("unit").Parse(`# Written by airut install-service; airut uninstall-service removes it.
[Unit]
Description=Airut gateway (sandboxed Claude Code over email, Slack and the dashboard)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
{{- if .System}}
User={{.User}}
Environment="HOME={{.Home}}" "XDG_RUNTIME_DIR=/run/user/{{.UID}}"
# Podman creates the containers' cgroups below the service's.
Delegate=yes
{{- end}}
Environment="PATH={{.Path}}"
ExecStart={{.Exec}} run --config {{.Config}}
# SIGHUP reloads the config at once (it is also watched).
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=5
# SIGTERM to airut only: it lets running tasks finish (shutdown_timeout)
# and removes its containers itself.
KillMode=mixed
TimeoutStopSec={{.StopSec}}

[Install]
WantedBy={{if .System}}multi-user.target{{else}}default.target{{end}}
`))

func renderUnit(s unitSpec) ([]byte, error) {
	var b bytes.Buffer
	if err := unitTmpl.Execute(&b, s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// checkUnitValue refuses what a unit file cannot carry unquoted.
func checkUnitValue(what, v string) error {
	if strings.ContainsAny(v, "\n\"\\%$ ") {
		return fmt.Errorf("%s %q: spaces, quotes, %%, $ and backslashes are not supported in the unit; use a plain path", what, v)
	}
	return nil
}

type serviceFlags struct {
	dryRun bool
	user   string
}

func newInstallServiceCmd(configPath *string, stdout io.Writer) *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:   "install-service",
		Short: "Install, enable and start a systemd unit that runs airut run (a user unit; as root, a system unit with --user)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return installService(*configPath, f, stdout)
		},
	}
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the unit and what would be run, change nothing")
	cmd.Flags().StringVar(&f.user, "user", "", "as root: the user the gateway runs as (rootless Podman)")
	return cmd
}

func newUninstallServiceCmd(stdout io.Writer) *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:   "uninstall-service",
		Short: "Stop, disable and remove the systemd unit install-service wrote",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return uninstallService(f, stdout)
		},
	}
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print what would be run, change nothing")
	return cmd
}

// serviceTarget is where the unit goes and how systemctl is called.
type serviceTarget struct {
	unitPath  string
	systemctl []string // "systemctl" [--user]
	spec      unitSpec
}

func resolveService(configPath string, f serviceFlags) (serviceTarget, error) {
	var t serviceTarget
	if geteuid() == 0 {
		if f.user == "" || f.user == "root" {
			return t, &ExitError{Code: 2, Msg: "as root, name the user the gateway runs as: install-service --user NAME " +
				"(rootless Podman is the supported deployment; running the gateway as root is not)"}
		}
		u, err := user.Lookup(f.user)
		if err != nil {
			return t, &ExitError{Code: 1, Msg: fmt.Sprintf("--user %s: %v", f.user, err)}
		}
		t.spec = unitSpec{System: true, User: u.Username, UID: u.Uid, Home: u.HomeDir}
		t.unitPath = filepath.Join("/etc/systemd/system", ServiceName)
		t.systemctl = []string{"systemctl"}
		if configPath == "" {
			configPath = filepath.Join(u.HomeDir, ".config", "airut", config.FileName)
		}
	} else {
		if f.user != "" {
			return t, &ExitError{Code: 2, Msg: "--user is for root (a system unit); as a user, install-service writes a user unit for yourself"}
		}
		dir, err := userUnitDir()
		if err != nil {
			return t, err
		}
		t.unitPath = filepath.Join(dir, ServiceName)
		t.systemctl = []string{"systemctl", "--user"}
		u, err := user.Current()
		if err != nil {
			return t, err
		}
		t.spec = unitSpec{User: u.Username, UID: u.Uid, Home: u.HomeDir}
		if configPath == "" {
			if configPath, err = config.DefaultPath(lookupEnv); err != nil {
				return t, err
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return t, fmt.Errorf("locate the airut binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return t, fmt.Errorf("locate the airut binary: %w", err)
	}
	if configPath, err = filepath.Abs(configPath); err != nil {
		return t, err
	}
	t.spec.Exec, t.spec.Config = exe, configPath
	// The gateway finds podman, git and claude on the PATH of whoever
	// installs it; systemd's default PATH is shorter.
	t.spec.Path = os.Getenv("PATH")
	if t.spec.Path == "" {
		t.spec.Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for what, v := range map[string]string{"binary": exe, "config": configPath, "PATH": t.spec.Path} {
		if err := checkUnitValue(what, v); err != nil {
			return t, &ExitError{Code: 1, Msg: err.Error()}
		}
	}
	t.spec.StopSec = 60 + 30
	if cfg, err := config.Load(configPath, lookupEnv, redact.NewRegistry()); err == nil {
		// Leave the graceful shutdown its whole timeout before SIGKILL.
		t.spec.StopSec = cfg.Execution.ShutdownTimeout + 30
	}
	return t, nil
}

func userUnitDir() (string, error) {
	if v := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(v) {
		return filepath.Join(v, "systemd", "user"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "systemd", "user"), nil
}

// lingerProblem says how to fix a user whose services stop at logout (and
// whose /run/user directory, which rootless Podman needs, goes with them),
// or "" when lingering is on.
func lingerProblem(name string) string {
	out, err := exec.Command("loginctl", "show-user", name, "--property=Linger", "--value").Output()
	if err == nil && strings.TrimSpace(string(out)) == "yes" {
		return ""
	}
	if _, statErr := os.Stat(filepath.Join("/var/lib/systemd/linger", name)); statErr == nil {
		return ""
	}
	return "lingering is off for " + name + ": the service would stop when " + name + " logs out.\n" +
		"fix: sudo loginctl enable-linger " + name
}

func installService(configPath string, f serviceFlags, stdout io.Writer) error {
	t, err := resolveService(configPath, f)
	if err != nil {
		return err
	}
	unit, err := renderUnit(t.spec)
	if err != nil {
		return err
	}
	steps := [][]string{
		append(append([]string{}, t.systemctl...), "daemon-reload"),
		append(append([]string{}, t.systemctl...), "enable", "--now", ServiceName),
	}
	linger := lingerProblem(t.spec.User)
	if f.dryRun {
		fmt.Fprintf(stdout, "# %s\n%s\n", t.unitPath, unit)
		for _, s := range steps {
			fmt.Fprintf(stdout, "would run: %s\n", strings.Join(s, " "))
		}
		if linger != "" {
			fmt.Fprintln(stdout, "warning: "+linger)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(t.unitPath), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", t.unitPath, err)
	}
	if err := os.WriteFile(t.unitPath, unit, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", t.unitPath, err)
	}
	fmt.Fprintf(stdout, "wrote %s\n", t.unitPath)
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return &ExitError{Code: 1, Msg: fmt.Sprintf("%s: %v\n%s", strings.Join(s, " "), err, out)}
		}
	}
	fmt.Fprintf(stdout, "started %s\n", ServiceName)
	if linger != "" {
		fmt.Fprintln(stdout, "warning: "+linger)
	}
	d := config.Dashboard{Enabled: true, Host: "127.0.0.1", Port: 5200}
	if cfg, err := config.Load(t.spec.Config, lookupEnv, redact.NewRegistry()); err == nil {
		d = cfg.Dashboard
	}
	if d.Enabled {
		fmt.Fprintf(stdout, "dashboard: %s\n", dashboardURL(d))
	}
	logs := "journalctl --user -u airut"
	if t.spec.System {
		logs = "journalctl -u airut"
	}
	fmt.Fprintf(stdout, "logs: %s\n", logs)
	return nil
}

func uninstallService(f serviceFlags, stdout io.Writer) error {
	var unitPath string
	systemctl := []string{"systemctl", "--user"}
	if geteuid() == 0 {
		unitPath, systemctl = filepath.Join("/etc/systemd/system", ServiceName), []string{"systemctl"}
	} else {
		dir, err := userUnitDir()
		if err != nil {
			return err
		}
		unitPath = filepath.Join(dir, ServiceName)
	}
	if _, err := os.Stat(unitPath); errors.Is(err, fs.ErrNotExist) {
		return &ExitError{Code: 1, Msg: unitPath + ": not installed"}
	}
	disable := append(append([]string{}, systemctl...), "disable", "--now", ServiceName)
	reload := append(append([]string{}, systemctl...), "daemon-reload")
	if f.dryRun {
		fmt.Fprintf(stdout, "would run: %s\nwould remove: %s\nwould run: %s\n", strings.Join(disable, " "), unitPath, strings.Join(reload, " "))
		return nil
	}
	if out, err := exec.Command(disable[0], disable[1:]...).CombinedOutput(); err != nil {
		return &ExitError{Code: 1, Msg: fmt.Sprintf("%s: %v\n%s", strings.Join(disable, " "), err, out)}
	}
	if err := os.Remove(unitPath); err != nil {
		return err
	}
	if out, err := exec.Command(reload[0], reload[1:]...).CombinedOutput(); err != nil {
		return &ExitError{Code: 1, Msg: fmt.Sprintf("%s: %v\n%s", strings.Join(reload, " "), err, out)}
	}
	fmt.Fprintf(stdout, "stopped and removed %s\n", unitPath)
	return nil
}
