package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airut/airut/internal/cli"
	"github.com/airut/airut/internal/testkit"
)

const scheduleYAML = `config_version: 5
repos:
  app:
    repo_url: %s
    email:
      account: {username: airut, from: airut@example.org, password: pw}
      imap: {server: 127.0.0.1, port: 1, tls: false}
      smtp: {server: 127.0.0.1, port: 1, starttls: false, require_auth: false}
      auth: {authorized_senders: [alice@example.org], trusted_authserv_id: mx.example.org}
    schedules:
      nightly:
        cron: "30 2 * * *"
        timezone: Europe/Berlin
        trigger_command: ./check.sh
        deliver: {to: alice@example.org}
      off:
        cron: "0 9 * * 1"
        enable: false
        prompt: weekly summary
        deliver: {to: alice@example.org}
`

// TestScheduleCommands: without a gateway, `schedule list` shows the
// config's schedules and next runs and `schedule run` says the gateway is
// not running; with `airut run` up, both go through its control socket:
// list shows the live state, and run starts a run (of a disabled
// schedule too) whose result --wait prints — here that the task could not
// be submitted: the repo's repo_url does not exist.
func TestScheduleCommands(t *testing.T) {
	testkit.RequireEngine(t) // gateway.New looks for the container engine
	isolate(t)
	path := filepath.Join(t.TempDir(), "airut.yaml")
	writeFile(t, path, strings.Replace(scheduleYAML, "%s", filepath.Join(t.TempDir(), "missing.git"), 1), 0o600)

	r := airut(t, "schedule", "list", "--config", path)
	if r.code != 0 {
		t.Fatalf("offline list: %s", r)
	}
	for _, want := range []string{"The gateway is not running", "nightly", "script", "Europe/Berlin", "off", "disabled"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("offline list lacks %q:\n%s", want, r.stdout)
		}
	}
	r = airut(t, "schedule", "run", "app", "off")
	if r.code != 1 || !strings.Contains(r.stderr, "the gateway is not running") || !strings.Contains(r.stderr, "airut run") {
		t.Errorf("run without a gateway: %s", r)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"run", "--config", path, "--prefix", "airut-cli-sched-test"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("airut run:\n%s", stderr.String())
		}
	}()
	socket := filepath.Join(os.Getenv("HOME"), ".local", "state", "airut", "scheduler.sock")
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control socket at %s", socket)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, _ := os.Stat(socket); fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v; want 0600", fi.Mode().Perm())
	}
	r = airut(t, "schedule", "list", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"name": "nightly"`) || strings.Contains(r.stdout, "not running") {
		t.Errorf("live list: %s", r)
	}
	r = airut(t, "schedule", "run", "app", "off", "--wait")
	// (Or "no such repository" while the gateway is still sweeping.)
	if r.code != 1 || !strings.Contains(r.stdout, "app/off started") || !strings.Contains(r.stdout, "failed: task not submitted: app") {
		t.Errorf("run --wait on a repo that cannot start: %s", r)
	}
	r = airut(t, "schedule", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "failed: task not submitted") {
		t.Errorf("list after the run: %s", r)
	}
	r = airut(t, "schedule", "run", "app", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "no such schedule") {
		t.Errorf("run of an unknown schedule: %s", r)
	}
}
