package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCronVixieSemantics(t *testing.T) {
	utc := time.UTC
	// 2026-03-01 is a Sunday.
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, utc)
	tests := []struct {
		expr string
		want []string // the next runs after from, in order
	}{
		// Day of month and day of week both restricted: either matches.
		{"0 9 13 * 5", []string{"2026-03-06 09:00", "2026-03-13 09:00", "2026-03-20 09:00", "2026-03-27 09:00", "2026-04-03 09:00"}},
		// Only one restricted: that one decides.
		{"0 9 13 * *", []string{"2026-03-13 09:00", "2026-04-13 09:00"}},
		{"0 9 * * 5", []string{"2026-03-06 09:00", "2026-03-13 09:00"}},
		// A day field beginning with "*" ("*/2") counts as unrestricted
		// (Vixie), so both must match: Mondays on odd days. robfig/cron
		// alone would OR them (every odd day and every Monday).
		{"0 9 */2 * 1", []string{"2026-03-09 09:00", "2026-03-23 09:00", "2026-04-13 09:00"}},
		// 7 is Sunday, alone, in a range and in a list.
		{"0 8 * * 7", []string{"2026-03-01 08:00", "2026-03-08 08:00"}},
		{"0 8 * * 6-7", []string{"2026-03-01 08:00", "2026-03-07 08:00", "2026-03-08 08:00"}},
		{"0 8 * * 1,7", []string{"2026-03-01 08:00", "2026-03-02 08:00", "2026-03-08 08:00"}},
		{"0 8 * * 1-7/3", []string{"2026-03-01 08:00", "2026-03-02 08:00", "2026-03-05 08:00", "2026-03-08 08:00"}},
		{"0 8 * * sat-7", []string{"2026-03-01 08:00", "2026-03-07 08:00", "2026-03-08 08:00"}},
		{"0 8 * * 0", []string{"2026-03-01 08:00", "2026-03-08 08:00"}},
		{"30 */6 * jan-mar mon-fri", []string{"2026-03-02 00:30", "2026-03-02 06:30"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			s, err := ParseCron(tt.expr, utc)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			at := from
			for range tt.want {
				at = s.Next(at)
				got = append(got, at.Format("2006-01-02 15:04"))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("next runs: got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestParseCronRejects(t *testing.T) {
	for _, expr := range []string{"@daily", "0 9 * *", "0 9 * * * *", "TZ=UTC 0 9 * *", "61 * * * *", "0 25 * * *", "0 9 32 * *", "0 9 * * 8", "0 9 * * mon-7/2", "x * * * *"} {
		if _, err := ParseCron(expr, nil); err == nil {
			t.Errorf("ParseCron(%q): no error", expr)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"./check.sh --all", []string{"./check.sh", "--all"}},
		{`sh -c 'git log | head -n 3'`, []string{"sh", "-c", "git log | head -n 3"}},
		{`echo "a b" c\ d`, []string{"echo", "a b", "c d"}},
		{"echo $HOME", []string{"echo", "$HOME"}}, // no expansion: no shell
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.line)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("SplitCommand(%q): got %q, %v; want %q", tt.line, got, err, tt.want)
		}
	}
	for _, bad := range []string{`echo "open`, "   "} {
		if _, err := SplitCommand(bad); err == nil {
			t.Errorf("SplitCommand(%q): no error", bad)
		}
	}
}

// TestScheduleValidation: each problem of a schedules entry is reported
// as file:line: key: message, and the repo is left out.
func TestScheduleValidation(t *testing.T) {
	yaml := `config_version: 5
repos:
  app:
    repo_url: https://example.org/app.git
    email:
      account: {username: a, from: a@example.org, password: pw}
      imap: {server: imap.example.org}
      smtp: {server: smtp.example.org}
      auth: {authorized_senders: [b@example.org], trusted_authserv_id: mx.example.org}
    schedules:
      value:
        cron: "61 9 * * *"
        prompt: hi
        deliver: {to: b@example.org}
      zone:
        cron: "0 9 * * *"
        timezone: Europe/Atlantis
        prompt: hi
        deliver: {to: b@example.org}
      quote:
        cron: "0 9 * * *"
        trigger_command: "echo 'open"
        deliver: {to: b@example.org}
      both:
        cron: "0 9 * * *"
        prompt: hi
        trigger_command: ./x.sh
        deliver: {to: b@example.org}
      neither:
        cron: "0 9 * * *"
        deliver: {to: b@example.org}
      slack:
        cron: "0 9 * * *"
        prompt: hi
        deliver: {to: C123, channel: slack}
      address:
        cron: "0 9 * * *"
        prompt: hi
        deliver:
          to: [b@example.org, "not an address"]
`
	cfg, err := Parse("airut.yaml", []byte(yaml), MapEnv(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Repos["app"]; ok {
		t.Fatal("repo with invalid schedules is in Repos")
	}
	got := cfg.Err().Error()
	for _, want := range []string{
		`airut.yaml:12: repos.app.schedules.value.cron: "61 9 * * *": end of range (61) above maximum (59): 61`,
		`airut.yaml:17: repos.app.schedules.zone.timezone: unknown time zone "Europe/Atlantis"`,
		`airut.yaml:22: repos.app.schedules.quote.trigger_command: cannot be split like a shell line:`,
		`airut.yaml:27: repos.app.schedules.both: prompt and trigger_command are mutually exclusive`,
		`airut.yaml:29: repos.app.schedules.neither: set one of prompt or trigger_command`,
		`airut.yaml:35: repos.app.schedules.slack.deliver.channel: the repo has no slack channel to deliver on`,
		`airut.yaml:40: repos.app.schedules.address.deliver.to[1]: must be an email address, not "not an address"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q; got:\n%s", want, got)
		}
	}
}
