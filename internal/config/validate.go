package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

var (
	repoIDRE        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	memoryRE        = regexp.MustCompile(`^[0-9]+[bkmgBKMG]$`)
	claudeVersionRE = regexp.MustCompile(`^(latest|stable|[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?)$`)
	cronFieldRE     = regexp.MustCompile(`^[0-9A-Za-z*/,?-]+$`)
	ulimitRE        = regexp.MustCompile(`^[a-z]+=-?[0-9]+(:-?[0-9]+)?$`)
)

// required reports path as missing when empty is true, naming the
// environment variable it was meant to come from.
func (d *decoder) required(path string, empty bool) {
	if !empty || d.badWithin(path) {
		return
	}
	msg := "required"
	if s, ok := d.sources[path]; ok {
		if s.unset {
			msg += " (environment variable " + s.env + " is not set)"
		} else {
			msg += " (environment variable " + s.env + " is empty)"
		}
	}
	d.errorf(d.lineOf(path), path, "%s", msg)
}

// badWithin reports whether path or a section containing it already has an
// error, so a broken section does not also list every key as missing.
func (d *decoder) badWithin(path string) bool {
	for p := path; ; {
		if d.bad[p] {
			return true
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

func (d *decoder) check(path string, bad bool, format string, args ...any) {
	if bad {
		d.errorf(d.lineOf(path), path, format, args...)
	}
}

// unsetEnv reports whether path was written as !env of a variable that is
// not set.
func (d *decoder) unsetEnv(path string) bool {
	s, ok := d.sources[path]
	return ok && s.unset
}

func (d *decoder) validate(c *Config) {
	d.repo = ""
	d.validating = true
	d.check("config_version", c.Version < 1, "must be a positive integer")
	d.check("config_version", c.Version > CurrentVersion, "version %d is newer than this Airut supports (%d)", c.Version, CurrentVersion)
	d.check("execution.max_concurrent", c.Execution.MaxConcurrent < 1, "must be at least 1")
	d.check("execution.shutdown_timeout", c.Execution.ShutdownTimeout < 1, "must be at least 1 (seconds)")
	d.check("execution.conversation_max_age_days", c.Execution.ConversationMaxAgeDays < 1, "must be at least 1")
	d.check("dashboard.port", c.Dashboard.Port < 1 || c.Dashboard.Port > 65535, "must be a port number (1-65535)")
	d.check("dashboard.host", c.Dashboard.Enabled && c.Dashboard.Host == "", "required when the dashboard is enabled")
	d.required("container_command", c.ContainerCommand == "")
	for i, u := range c.ContainerUlimits {
		d.check(fmt.Sprintf("container_ulimits[%d]", i), !ulimitRE.MatchString(u), "must look like nofile=1024:1024, not %q", u)
	}
	if dns := c.Network.UpstreamDNS; dns != "" {
		_, errAddr := netip.ParseAddr(dns)
		_, errPort := netip.ParseAddrPort(dns)
		d.check("network.upstream_dns", errAddr != nil && errPort != nil, "must be an IP address, optionally with :port, not %q", dns)
	}
	for host, addr := range c.Network.Resolve {
		p := "network.resolve." + host
		_, err := netip.ParseAddr(addr)
		d.check(p, err != nil, "must be an IP address, not %q", addr)
	}

	ids := make([]string, 0, len(c.Repos))
	for id := range c.Repos {
		ids = append(ids, id)
	}
	// File order, so cross-repo errors land on the later repo.
	slices.SortFunc(ids, func(a, b string) int { return d.lines["repos."+a] - d.lines["repos."+b] })
	inboxes := map[string]string{}
	for _, id := range ids {
		r := c.Repos[id]
		d.repo = id
		if r.ClaudeBinary == "" {
			r.ClaudeBinary = c.Execution.ClaudeBinary
		}
		d.validateRepo("repos."+id, id, r)
		if r.Email != nil && r.Email.IMAP.Server != "" {
			key := strings.ToLower(r.Email.IMAP.Server) + "/" + strings.ToLower(r.Email.Account.Username)
			if other, dup := inboxes[key]; dup {
				d.errorf(d.lineOf("repos."+id+".email"), "repos."+id+".email", "shares its IMAP inbox with repo %q: each repo needs its own inbox", other)
			} else {
				inboxes[key] = id
			}
		}
	}
	d.repo = ""
}

func (d *decoder) validateRepo(p, id string, r *Repo) {
	d.check(p, !repoIDRE.MatchString(id), "repo id must be letters, digits, '.', '_' or '-', starting with a letter or digit")
	d.required(p+".repo_url", r.RepoURL == "")
	if r.Model == "" {
		r.Model = "opus" // the reference treats an empty model as the default
	}
	d.check(p+".claude_version", !claudeVersionRE.MatchString(r.ClaudeVersion), "must be a version (1.2.3), latest or stable, not %q", r.ClaudeVersion)
	cp := r.ContainerPath
	d.check(p+".container_path", cp == "" || path.IsAbs(cp) || slices.Contains(strings.Split(cp, "/"), ".."),
		"must be a relative path inside the repo without '..', not %q", cp)

	rl, rp := r.ResourceLimits, p+".resource_limits"
	d.check(rp+".timeout", rl.Timeout < 0 || (rl.Timeout > 0 && rl.Timeout < 10), "must be at least 10 (seconds)")
	d.check(rp+".memory", rl.Memory != "" && (!memoryRE.MatchString(rl.Memory) || strings.Trim(rl.Memory[:len(rl.Memory)-1], "0") == ""),
		"must be a size above zero like 512m or 8g, not %q", rl.Memory)
	d.check(rp+".cpus", rl.CPUs < 0 || (rl.CPUs > 0 && rl.CPUs < 0.01), "must be at least 0.01")
	d.check(rp+".pids_limit", rl.PidsLimit < 0, "must be at least 1")

	if r.Email == nil && r.Slack == nil {
		d.errorf(d.lineOf(p), p, "no channel configured (add email: or slack:)")
	}
	if r.Email != nil {
		d.validateEmail(p+".email", r.Email)
	}
	if r.Slack != nil {
		d.validateSlack(p+".slack", r.Slack)
	}
	d.validateCredentials(p, r)
	for name, s := range r.Schedules {
		d.validateSchedule(p+".schedules."+name, r, &s)
		r.Schedules[name] = s
	}
}

func (d *decoder) validateEmail(p string, e *Email) {
	d.required(p+".account.username", e.Account.Username == "")
	d.required(p+".account.from", e.Account.From == "")
	if e.Account.From != "" {
		_, err := mail.ParseAddress(e.Account.From)
		d.check(p+".account.from", err != nil, "must be an address like \"Airut <airut@example.com>\": %v", err)
	}
	if e.MicrosoftOAuth2 == nil {
		d.required(p+".account.password", e.Account.Password == "")
	} else {
		o, op := e.MicrosoftOAuth2, p+".microsoft_oauth2"
		d.required(op+".tenant_id", o.TenantID == "")
		d.required(op+".client_id", o.ClientID == "")
		d.required(op+".client_secret", o.ClientSecret == "")
	}
	d.required(p+".imap.server", e.IMAP.Server == "")
	d.check(p+".imap.port", e.IMAP.Port < 1 || e.IMAP.Port > 65535, "must be a port number (1-65535)")
	d.check(p+".imap.connect_retries", e.IMAP.ConnectRetries < 1, "must be at least 1")
	d.check(p+".imap.poll_interval", e.IMAP.PollInterval < 0.1, "must be at least 0.1 (seconds)")
	d.check(p+".imap.idle_reconnect_interval", e.IMAP.IdleReconnectInterval < 60, "must be at least 60 (seconds)")
	d.required(p+".smtp.server", e.SMTP.Server == "")
	d.check(p+".smtp.port", e.SMTP.Port < 1 || e.SMTP.Port > 65535, "must be a port number (1-65535)")
	for _, f := range []struct{ key, file string }{{p + ".imap.ca_file", e.IMAP.CAFile}, {p + ".smtp.ca_file", e.SMTP.CAFile}} {
		if msg := caFileProblem(f.file); msg != "" {
			d.errorf(d.lineOf(f.key), f.key, "%s", msg)
		}
	}

	ap := p + ".auth"
	d.required(ap+".authorized_senders", len(e.Auth.AuthorizedSenders) == 0)
	for i, s := range e.Auth.AuthorizedSenders {
		local, domain, ok := strings.Cut(s, "@")
		bad := !ok || local == "" || domain == "" || strings.ContainsAny(s, " \t<>,") || strings.Contains(domain, "@") ||
			(strings.Contains(local, "*") && local != "*")
		d.check(fmt.Sprintf("%s.authorized_senders[%d]", ap, i), bad, "must be an address or *@domain, not %q", s)
	}
	// Present but empty is allowed (Microsoft 365); absent or an unset
	// variable is not, so a typo cannot turn the check off.
	_, present := d.lines[ap+".trusted_authserv_id"]
	d.required(ap+".trusted_authserv_id", !present || d.unsetEnv(ap+".trusted_authserv_id"))
}

func (d *decoder) validateSlack(p string, s *Slack) {
	d.required(p+".bot_token", s.BotToken == "")
	d.check(p+".bot_token", s.BotToken != "" && !strings.HasPrefix(s.BotToken.Reveal(), "xoxb-"), "must be a bot token (xoxb-…)")
	d.required(p+".app_token", s.AppToken == "")
	d.check(p+".app_token", s.AppToken != "" && !strings.HasPrefix(s.AppToken.Reveal(), "xapp-"), "must be an app-level token (xapp-…)")
	d.required(p+".authorized", len(s.Authorized) == 0)
	for i, rule := range s.Authorized {
		rp := fmt.Sprintf("%s.authorized[%d]", p, i)
		_, g := d.lines[rp+".user_group"]
		_, u := d.lines[rp+".user_id"]
		switch {
		case g:
			d.required(rp+".user_group", rule.UserGroup == "")
		case u:
			d.required(rp+".user_id", rule.UserID == "")
		}
	}
}

func (d *decoder) validateCredentials(p string, r *Repo) {
	for name := range r.Secrets {
		d.check(p+".secrets."+name, !envNameRE.MatchString(name), "must be an environment variable name")
	}
	for name, m := range r.MaskedSecrets {
		mp := p + ".masked_secrets." + name
		if m.Value == "" && d.unsetEnv(mp+".value") {
			delete(r.MaskedSecrets, name) // like the reference: an unset credential is left out
			continue
		}
		d.check(mp, !envNameRE.MatchString(name), "must be an environment variable name")
		d.required(mp+".value", m.Value == "")
		d.nonEmptyList(mp+".scopes", m.Scopes)
		d.nonEmptyList(mp+".headers", m.Headers)
	}
	for name, s := range r.SigningCredentials {
		sp := p + ".signing_credentials." + name
		if _, ok := d.lines[sp+".type"]; !ok {
			d.required(sp+".type", true)
		} else {
			d.check(sp+".type", s.Type != SigningTypeAWSSigV4, "must be %q, not %q", SigningTypeAWSSigV4, s.Type)
		}
		for _, f := range []struct {
			key, def string
			field    *SigningField
		}{
			{"access_key_id", "AWS_ACCESS_KEY_ID", &s.AccessKeyID},
			{"secret_access_key", "AWS_SECRET_ACCESS_KEY", &s.SecretAccessKey},
			{"session_token", "AWS_SESSION_TOKEN", s.SessionToken},
		} {
			fp := sp + "." + f.key
			if f.field == nil {
				continue
			}
			if f.key == "session_token" && f.field.Value == "" && d.unsetEnv(fp+".value") {
				s.SessionToken = nil
				continue
			}
			if f.field.Name == "" {
				f.field.Name = f.def
			}
			d.check(fp+".name", !envNameRE.MatchString(f.field.Name), "must be an environment variable name, not %q", f.field.Name)
			d.required(fp+".value", f.field.Value == "")
		}
		d.nonEmptyList(sp+".scopes", s.Scopes)
		r.SigningCredentials[name] = s
	}
	for name, g := range r.GitHubAppCredentials {
		gp := p + ".github_app_credentials." + name
		d.check(gp, !envNameRE.MatchString(name), "must be an environment variable name")
		d.required(gp+".app_id", g.AppID == "")
		d.required(gp+".private_key", g.PrivateKey == "")
		d.check(gp+".private_key", g.PrivateKey != "" && !strings.Contains(g.PrivateKey.Reveal(), "PRIVATE KEY-----"), "must be a PEM private key")
		if _, ok := d.lines[gp+".installation_id"]; !ok || d.unsetEnv(gp+".installation_id") {
			d.required(gp+".installation_id", true)
		} else {
			d.check(gp+".installation_id", g.InstallationID < 1, "must be a positive integer")
		}
		d.nonEmptyList(gp+".scopes", g.Scopes)
		d.check(gp+".base_url", !strings.HasPrefix(g.BaseURL, "https://"), "must be an https:// URL, not %q", g.BaseURL)
	}
	if !r.Network.SandboxEnabled && (len(r.MaskedSecrets) > 0 || len(r.SigningCredentials) > 0 || len(r.GitHubAppCredentials) > 0) {
		d.errorf(d.lineOf(p+".network.sandbox_enabled"), p+".network.sandbox_enabled",
			"masked_secrets, signing_credentials and github_app_credentials need the network sandbox")
	}
}

func (d *decoder) nonEmptyList(p string, list []string) {
	d.required(p, len(list) == 0)
	for i, s := range list {
		d.required(fmt.Sprintf("%s[%d]", p, i), s == "")
	}
}

func (d *decoder) validateSchedule(p string, r *Repo, s *Schedule) {
	d.required(p+".cron", s.Cron == "")
	if s.Cron != "" {
		fields := strings.Fields(s.Cron)
		bad := len(fields) != 5
		for _, f := range fields {
			bad = bad || !cronFieldRE.MatchString(f)
		}
		d.check(p+".cron", bad, "must be a 5-field cron expression (minute hour day month weekday), not %q", s.Cron)
	}
	if s.Timezone != "" {
		_, err := time.LoadLocation(s.Timezone)
		d.check(p+".timezone", err != nil, "unknown time zone %q", s.Timezone)
	}
	switch {
	case s.Prompt == "" && s.TriggerCommand == "":
		d.errorf(d.lineOf(p), p, "set one of prompt or trigger_command")
	case s.Prompt != "" && s.TriggerCommand != "":
		d.errorf(d.lineOf(p+".trigger_command"), p, "prompt and trigger_command are mutually exclusive")
	}
	d.check(p+".trigger_timeout", s.TriggerTimeout < 0, "must not be negative")
	d.check(p+".output_limit", s.OutputLimit < 1, "must be at least 1 (bytes)")
	d.required(p+".deliver.to", len(s.Deliver.To) == 0)
	switch s.Deliver.Channel {
	case "email":
		d.check(p+".deliver.channel", r.Email == nil, "the repo has no email channel to deliver on")
	case "slack":
		d.check(p+".deliver.channel", r.Slack == nil, "the repo has no slack channel to deliver on")
	default:
		d.errorf(d.lineOf(p+".deliver.channel"), p+".deliver.channel", "must be email or slack, not %q", s.Deliver.Channel)
	}
}

// caFileProblem says what is wrong with a ca_file, or "" when it is unset
// or a readable file of PEM certificates. Checked at load, so a typo is a
// config error with its line rather than "unknown authority" at the first
// login.
func caFileProblem(file string) string {
	if file == "" {
		return ""
	}
	if !filepath.IsAbs(file) {
		return fmt.Sprintf("must be an absolute path, not %q", file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", file, errors.Unwrap(err))
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Sprintf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", file)
	}
	return ""
}
