package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func testSpecs(t *testing.T) map[string]unitSpec {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]unitSpec{
		"user":   {Exec: exe, Config: "/home/op/.config/airut/airut.yaml", Path: "/usr/local/bin:/usr/bin:/bin", User: "op", UID: "1000", Home: "/home/op", StopSec: 90},
		"system": {Exec: exe, Config: "/home/op/.config/airut/airut.yaml", Path: "/usr/local/bin:/usr/bin:/bin", System: true, User: "op", UID: "1000", Home: "/home/op", StopSec: 90},
	}
}

// TestServiceUnitVerifies: the unit passes systemd-analyze verify with no
// complaint about it. (systemd cannot run as PID 1 in this container or
// in CI, so the unit is not started for real here.)
func TestServiceUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not installed (apt-get install systemd)")
		}
		t.Skip("systemd-analyze not installed")
	}
	for name, spec := range testSpecs(t) {
		t.Run(name, func(t *testing.T) {
			unit, err := renderUnit(spec)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), ServiceName)
			if err := os.WriteFile(path, unit, 0o644); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd := exec.Command(analyze, "verify", path)
			cmd.Stderr = &stderr
			err = cmd.Run()
			// verify reports a bad directive on stderr and still exits 0.
			for _, l := range strings.Split(stderr.String(), "\n") {
				if strings.Contains(l, ServiceName) {
					t.Errorf("systemd-analyze: %s", l)
				}
			}
			if err != nil {
				t.Errorf("systemd-analyze verify: %v\n%s", err, stderr.String())
			}
		})
	}
}

// TestServiceUnitVerifyCatchesTypos: the check above can fail.
func TestServiceUnitVerifyCatchesTypos(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("covered by TestServiceUnitVerifies")
	}
	unit, _ := renderUnit(testSpecs(t)["user"])
	path := filepath.Join(t.TempDir(), ServiceName)
	_ = os.WriteFile(path, bytes.Replace(unit, []byte("KillMode=mixed"), []byte("KillMode=mixd"), 1), 0o644)
	out, _ := exec.Command(analyze, "verify", path).CombinedOutput()
	if !strings.Contains(string(out), "kill mode") {
		t.Errorf("a bad KillMode went unnoticed: %s", out)
	}
}

// TestServiceUnitRootlessPodman: Restart=always, and none of the
// hardening directives that break rootless Podman.
func TestServiceUnitRootlessPodman(t *testing.T) {
	for name, spec := range testSpecs(t) {
		unit, err := renderUnit(spec)
		if err != nil {
			t.Fatal(err)
		}
		text := string(unit)
		for _, want := range []string{"Restart=always", "ExecStart=" + spec.Exec + " run --config " + spec.Config, "ExecReload=/bin/kill -HUP $MAINPID", "TimeoutStopSec=90"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s unit lacks %q:\n%s", name, want, text)
			}
		}
		for _, bad := range []string{"NoNewPrivileges", "PrivateTmp", "ProtectHome", "ProtectSystem", "RestrictNamespaces",
			"PrivateUsers", "SystemCallFilter", "CapabilityBoundingSet", "DynamicUser"} {
			if strings.Contains(text, "\n"+bad+"=") {
				t.Errorf("%s unit sets %s, which breaks rootless Podman", name, bad)
			}
		}
		if spec.System && (!strings.Contains(text, "User=op") || !strings.Contains(text, "XDG_RUNTIME_DIR=/run/user/1000") || !strings.Contains(text, "WantedBy=multi-user.target")) {
			t.Errorf("system unit:\n%s", text)
		}
		if !spec.System && (strings.Contains(text, "User=") || !strings.Contains(text, "WantedBy=default.target")) {
			t.Errorf("user unit:\n%s", text)
		}
	}
}

// fakeTools puts systemctl and loginctl on PATH that record their
// arguments: systemd does not run here.
func fakeTools(t *testing.T, linger string) (log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	for name, body := range map[string]string{
		"systemctl": "echo systemctl \"$@\" >> " + log,
		"loginctl":  "echo " + linger,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return log
}

func TestInstallServiceUser(t *testing.T) {
	geteuid = func() int { return 1000 }
	t.Cleanup(func() { geteuid = os.Geteuid })
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	calls := fakeTools(t, "no")
	me := os.Getenv("USER")
	if me == "" {
		me = "root"
	}
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"install-service"}, &stdout, &stderr); code != 0 {
		t.Fatalf("install-service: %d %s", code, stderr.String())
	}
	unitPath := filepath.Join(xdg, "systemd", "user", ServiceName)
	unit, err := os.ReadFile(unitPath)
	if err != nil || !strings.Contains(string(unit), "--config "+filepath.Join(xdg, "airut", "airut.yaml")) {
		t.Errorf("unit: %s %v", unit, err)
	}
	got, _ := os.ReadFile(calls)
	if string(got) != "systemctl --user daemon-reload\nsystemctl --user enable --now airut.service\n" {
		t.Errorf("systemctl calls:\n%s", got)
	}
	out := stdout.String()
	if !strings.Contains(out, "fix: sudo loginctl enable-linger ") || !strings.Contains(out, "dashboard: http://127.0.0.1:5200/") {
		t.Errorf("output:\n%s", out)
	}

	stdout.Reset()
	if code := Run(context.Background(), []string{"uninstall-service"}, &stdout, &stderr); code != 0 {
		t.Fatalf("uninstall-service: %d %s", code, stderr.String())
	}
	if _, err := os.Stat(unitPath); !os.IsNotExist(err) {
		t.Errorf("unit still there: %v", err)
	}
	got, _ = os.ReadFile(calls)
	if !strings.HasSuffix(string(got), "systemctl --user disable --now airut.service\nsystemctl --user daemon-reload\n") {
		t.Errorf("systemctl calls:\n%s", got)
	}
}

func TestInstallServiceLingerOn(t *testing.T) {
	geteuid = func() int { return 1000 }
	t.Cleanup(func() { geteuid = os.Geteuid })
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	fakeTools(t, "yes")
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"install-service", "--dry-run"}, &stdout, &stderr); code != 0 {
		t.Fatalf("%d %s", code, stderr.String())
	}
	if strings.Contains(stdout.String(), "enable-linger") || !strings.Contains(stdout.String(), "would run: systemctl --user enable --now airut.service") {
		t.Errorf("output:\n%s", stdout.String())
	}
}

func TestInstallServiceRoot(t *testing.T) {
	geteuid = func() int { return 0 }
	t.Cleanup(func() { geteuid = os.Geteuid })
	fakeTools(t, "no")
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"install-service", "--dry-run"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--user NAME") {
		t.Errorf("root without --user: %d %s", code, stderr.String())
	}
	stderr.Reset()
	if code := Run(context.Background(), []string{"install-service", "--dry-run", "--user", "nobody"}, &stdout, &stderr); code != 0 {
		t.Fatalf("%d %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"# /etc/systemd/system/airut.service", "User=nobody", "would run: systemctl enable --now airut.service", "fix: sudo loginctl enable-linger nobody"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat("/etc/systemd/system/airut.service"); err == nil {
		t.Error("--dry-run wrote the unit")
	}
}
