package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/airut/airut/internal/yamlwalk"
)

var (
	repoIDRE        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	memoryRE        = regexp.MustCompile(`^[0-9]+[bkmgBKMG]$`)
	claudeVersionRE = regexp.MustCompile(`^(latest|stable|[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?)$`)
	slackDestRE     = regexp.MustCompile(`^[CGDUW][A-Z0-9]{2,}$`)
	ulimitRE        = regexp.MustCompile(`^[a-z]+=-?[0-9]+(:-?[0-9]+)?$`)
)

// validator applies the rules that need more than one value, or the
// value after defaults, once the walk is done.
type validator struct{ w *yamlwalk.Walker }

// root is the document's path, where every rule's path starts.
var root yamlwalk.Path

// required reports path as missing when empty is true, naming the
// environment variable it was meant to come from.
func (d *validator) required(path yamlwalk.Path, empty bool) {
	if !empty || d.w.Failed(path) {
		return
	}
	msg := "required"
	if s, ok := d.w.Source(path); ok {
		if s.Unset {
			msg += " (environment variable " + s.Env + " is not set)"
		} else {
			msg += " (environment variable " + s.Env + " is empty)"
		}
	}
	d.errorf(path, "%s", msg)
}

func (d *validator) check(path yamlwalk.Path, bad bool, format string, args ...any) {
	if bad {
		d.errorf(path, format, args...)
	}
}

func (d *validator) errorf(path yamlwalk.Path, format string, args ...any) {
	d.w.Report(d.w.Line(path), path, format, args...)
}

// unsetEnv reports whether path was written as !env of a variable that is
// not set.
func (d *validator) unsetEnv(path yamlwalk.Path) bool {
	s, ok := d.w.Source(path)
	return ok && s.Unset
}

func (d *validator) validate(c *Config) {
	d.check(root.Key("config_version"), c.Version < 1, "must be a positive integer")
	d.check(root.Key("config_version"), c.Version > CurrentVersion, "version %d is newer than this Airut supports (%d)", c.Version, CurrentVersion)
	d.check(root.Key("execution", "max_concurrent"), c.Execution.MaxConcurrent < 1, "must be at least 1")
	d.check(root.Key("execution", "warm_sandboxes"), c.Execution.WarmSandboxes != nil && *c.Execution.WarmSandboxes < 0, "must be 0 or more")
	d.check(root.Key("execution", "shutdown_timeout"), c.Execution.ShutdownTimeout < 1, "must be at least 1 (seconds)")
	d.check(root.Key("execution", "conversation_max_age_days"), c.Execution.ConversationMaxAgeDays < 1, "must be at least 1")
	d.check(root.Key("dashboard", "port"), c.Dashboard.Port < 1 || c.Dashboard.Port > 65535, "must be a port number (1-65535)")
	d.check(root.Key("dashboard", "host"), c.Dashboard.Enabled && c.Dashboard.Host == "", "required when the dashboard is enabled")
	d.required(root.Key("container_command"), c.ContainerCommand == "")
	for i, u := range c.ContainerUlimits {
		d.check(root.Key("container_ulimits").Index(i), !ulimitRE.MatchString(u), "must look like nofile=1024:1024, not %q", u)
	}
	if dns := c.Network.UpstreamDNS; dns != "" {
		_, errAddr := netip.ParseAddr(dns)
		_, errPort := netip.ParseAddrPort(dns)
		d.check(root.Key("network", "upstream_dns"), errAddr != nil && errPort != nil, "must be an IP address, optionally with :port, not %q", dns)
	}
	for host, addr := range c.Network.Resolve {
		p := root.Key("network", "resolve", host)
		// IP or IP:PORT, as the proxy and airut-sandbox --resolve take it.
		_, errAddr := netip.ParseAddr(addr)
		_, errPort := netip.ParseAddrPort(addr)
		d.check(p, errAddr != nil && errPort != nil, "must be an IP address, optionally with :port, not %q", addr)
	}

	ids := make([]string, 0, len(c.Repos))
	for id := range c.Repos {
		ids = append(ids, id)
	}
	// File order, so cross-repo errors land on the later repo.
	slices.SortFunc(ids, func(a, b string) int { return d.w.Line(root.Key("repos", a)) - d.w.Line(root.Key("repos", b)) })
	inboxes := map[string]string{}
	for _, id := range ids {
		r := c.Repos[id]
		// Both set on one repo is an error (validateRepo); the global
		// binary is only the default of a repo that chose neither.
		own := r.ClaudeBinary != ""
		if !own && r.ClaudeVersion == "" {
			r.ClaudeBinary = c.Execution.ClaudeBinary
		}
		d.validateRepo(root.Key("repos", id), id, r, c.Dashboard.WebChannel())
		d.check(root.Key("repos", id, "claude_version"), own && r.ClaudeVersion != "", "set either claude_version or claude_binary, not both")
		if r.Email != nil && r.Email.IMAP.Server != "" {
			key := strings.ToLower(r.Email.IMAP.Server) + "/" + strings.ToLower(r.Email.Account.Username)
			if other, dup := inboxes[key]; dup {
				d.errorf(root.Key("repos", id, "email"), "shares its IMAP inbox with repo %q: each repo needs its own inbox", other)
			} else {
				inboxes[key] = id
			}
		}
	}
}

func (d *validator) validateRepo(p yamlwalk.Path, id string, r *Repo, web bool) {
	d.check(p, !repoIDRE.MatchString(id), "repo id must be letters, digits, '.', '_' or '-', starting with a letter or digit")
	d.required(p.Key("repo_url"), r.RepoURL == "")
	if r.Model == "" {
		r.Model = "opus" // the reference treats an empty model as the default
	}
	d.check(p.Key("claude_version"), r.ClaudeVersion != "" && !claudeVersionRE.MatchString(r.ClaudeVersion), "must be a version (1.2.3), latest or stable, not %q", r.ClaudeVersion)
	cp := r.ContainerPath
	d.check(p.Key("container_path"), cp == "" || path.IsAbs(cp) || slices.Contains(strings.Split(cp, "/"), ".."),
		"must be a relative path inside the repo without '..', not %q", cp)

	rl, rp := r.ResourceLimits, p.Key("resource_limits")
	d.check(rp.Key("timeout"), rl.Timeout < 0 || (rl.Timeout > 0 && rl.Timeout < 10), "must be at least 10 (seconds)")
	d.check(rp.Key("memory"), rl.Memory != "" && (!memoryRE.MatchString(rl.Memory) || strings.Trim(rl.Memory[:len(rl.Memory)-1], "0") == ""),
		"must be a size above zero like 512m or 8g, not %q", rl.Memory)
	d.check(rp.Key("cpus"), rl.CPUs < 0 || (rl.CPUs > 0 && rl.CPUs < 0.01), "must be at least 0.01")
	d.check(rp.Key("pids_limit"), rl.PidsLimit < 0, "must be at least 1")

	if r.Email == nil && r.Slack == nil && !web {
		d.errorf(p, "no channel configured (add email: or slack:, or turn dashboard.tasks on)")
	}
	if r.Email != nil {
		d.validateEmail(p.Key("email"), r.Email)
	}
	if r.Slack != nil {
		d.validateSlack(p.Key("slack"), r.Slack)
	}
	d.validateCredentials(p, r)
	for name, s := range r.Schedules {
		d.validateSchedule(p.Key("schedules", name), r, &s)
		r.Schedules[name] = s
	}
}

func (d *validator) validateEmail(p yamlwalk.Path, e *Email) {
	d.required(p.Key("account", "username"), e.Account.Username == "")
	d.required(p.Key("account", "from"), e.Account.From == "")
	if e.Account.From != "" {
		_, err := mail.ParseAddress(e.Account.From)
		d.check(p.Key("account", "from"), err != nil, "must be an address like \"Airut <airut@example.com>\": %v", err)
	}
	if e.MicrosoftOAuth2 == nil {
		d.required(p.Key("account", "password"), e.Account.Password == "")
	} else {
		o, op := e.MicrosoftOAuth2, p.Key("microsoft_oauth2")
		d.required(op.Key("tenant_id"), o.TenantID == "")
		d.required(op.Key("client_id"), o.ClientID == "")
		d.required(op.Key("client_secret"), o.ClientSecret == "")
	}
	d.required(p.Key("imap", "server"), e.IMAP.Server == "")
	d.check(p.Key("imap", "port"), e.IMAP.Port < 1 || e.IMAP.Port > 65535, "must be a port number (1-65535)")
	d.check(p.Key("imap", "connect_retries"), e.IMAP.ConnectRetries < 1, "must be at least 1")
	d.check(p.Key("imap", "poll_interval"), e.IMAP.PollInterval < 0.1, "must be at least 0.1 (seconds)")
	d.check(p.Key("imap", "idle_reconnect_interval"), e.IMAP.IdleReconnectInterval < 60, "must be at least 60 (seconds)")
	d.required(p.Key("smtp", "server"), e.SMTP.Server == "")
	d.check(p.Key("smtp", "port"), e.SMTP.Port < 1 || e.SMTP.Port > 65535, "must be a port number (1-65535)")
	for _, f := range []struct {
		key  yamlwalk.Path
		file string
	}{{p.Key("imap", "ca_file"), e.IMAP.CAFile}, {p.Key("smtp", "ca_file"), e.SMTP.CAFile}} {
		if msg := caFileProblem(f.file); msg != "" {
			d.errorf(f.key, "%s", msg)
		}
	}

	ap := p.Key("auth")
	d.required(ap.Key("authorized_senders"), len(e.Auth.AuthorizedSenders) == 0)
	for i, s := range e.Auth.AuthorizedSenders {
		local, domain, ok := strings.Cut(s, "@")
		bad := !ok || local == "" || domain == "" || strings.ContainsAny(s, " \t<>,") || strings.Contains(domain, "@") ||
			(strings.Contains(local, "*") && local != "*")
		d.check(ap.Key("authorized_senders").Index(i), bad, "must be an address or *@domain, not %q", s)
	}
	// Present but empty is allowed (Microsoft 365); absent or an unset
	// variable is not, so a typo cannot turn the check off.
	present := d.w.Has(ap.Key("trusted_authserv_id"))
	d.required(ap.Key("trusted_authserv_id"), !present || d.unsetEnv(ap.Key("trusted_authserv_id")))
}

func (d *validator) validateSlack(p yamlwalk.Path, s *Slack) {
	d.required(p.Key("bot_token"), s.BotToken == "")
	d.check(p.Key("bot_token"), s.BotToken != "" && !strings.HasPrefix(s.BotToken.Reveal(), "xoxb-"), "must be a bot token (xoxb-…)")
	d.required(p.Key("app_token"), s.AppToken == "")
	d.check(p.Key("app_token"), s.AppToken != "" && !strings.HasPrefix(s.AppToken.Reveal(), "xapp-"), "must be an app-level token (xapp-…)")
	d.required(p.Key("authorized"), len(s.Authorized) == 0)
	if s.APIURL != "" {
		u, err := url.Parse(s.APIURL)
		d.check(p.Key("api_url"), err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "", "must be an http(s) URL")
	}
	for i, rule := range s.Authorized {
		rp := p.Key("authorized").Index(i)
		g := d.w.Has(rp.Key("user_group"))
		u := d.w.Has(rp.Key("user_id"))
		switch {
		case g:
			d.required(rp.Key("user_group"), rule.UserGroup == "")
		case u:
			d.required(rp.Key("user_id"), rule.UserID == "")
		}
	}
}

func (d *validator) validateCredentials(p yamlwalk.Path, r *Repo) {
	for name := range r.Secrets {
		d.check(p.Key("secrets", name), !envNameRE.MatchString(name), "must be an environment variable name")
	}
	for name, m := range r.MaskedSecrets {
		mp := p.Key("masked_secrets", name)
		if m.Value == "" && d.unsetEnv(mp.Key("value")) {
			delete(r.MaskedSecrets, name) // like the reference: an unset credential is left out
			continue
		}
		d.check(mp, !envNameRE.MatchString(name), "must be an environment variable name")
		d.required(mp.Key("value"), m.Value == "")
		d.nonEmptyList(mp.Key("scopes"), m.Scopes)
		d.nonEmptyList(mp.Key("headers"), m.Headers)
	}
	for name, s := range r.SigningCredentials {
		sp := p.Key("signing_credentials", name)
		if !d.w.Has(sp.Key("type")) {
			d.required(sp.Key("type"), true)
		} else {
			d.check(sp.Key("type"), s.Type != SigningTypeAWSSigV4, "must be %q, not %q", SigningTypeAWSSigV4, s.Type)
		}
		for _, f := range []struct {
			key, def string
			field    *SigningField
		}{
			{"access_key_id", "AWS_ACCESS_KEY_ID", &s.AccessKeyID},
			{"secret_access_key", "AWS_SECRET_ACCESS_KEY", &s.SecretAccessKey},
			{"session_token", "AWS_SESSION_TOKEN", s.SessionToken},
		} {
			fp := sp.Key(f.key)
			if f.field == nil {
				continue
			}
			if f.key == "session_token" && f.field.Value == "" && d.unsetEnv(fp.Key("value")) {
				s.SessionToken = nil
				continue
			}
			if f.field.Name == "" {
				f.field.Name = f.def
			}
			d.check(fp.Key("name"), !envNameRE.MatchString(f.field.Name), "must be an environment variable name, not %q", f.field.Name)
			d.required(fp.Key("value"), f.field.Value == "")
		}
		d.nonEmptyList(sp.Key("scopes"), s.Scopes)
		r.SigningCredentials[name] = s
	}
	for name, g := range r.GitHubAppCredentials {
		gp := p.Key("github_app_credentials", name)
		d.check(gp, !envNameRE.MatchString(name), "must be an environment variable name")
		d.required(gp.Key("app_id"), g.AppID == "")
		d.required(gp.Key("private_key"), g.PrivateKey == "")
		d.check(gp.Key("private_key"), g.PrivateKey != "" && !strings.Contains(g.PrivateKey.Reveal(), "PRIVATE KEY-----"), "must be a PEM private key")
		if !d.w.Has(gp.Key("installation_id")) || d.unsetEnv(gp.Key("installation_id")) {
			d.required(gp.Key("installation_id"), true)
		} else {
			d.check(gp.Key("installation_id"), g.InstallationID < 1, "must be a positive integer")
		}
		d.nonEmptyList(gp.Key("scopes"), g.Scopes)
		d.check(gp.Key("base_url"), !strings.HasPrefix(g.BaseURL, "https://"), "must be an https:// URL, not %q", g.BaseURL)
		for perm, level := range g.Permissions {
			d.check(gp.Key("permissions", perm), level != "read" && level != "write" && level != "admin",
				"must be read, write or admin, not %q", level)
		}
		for i, repo := range g.Repositories {
			d.check(gp.Key("repositories").Index(i), repo == "" || strings.ContainsAny(repo, "/ "),
				"must be a repository name without its owner (the installation's account), not %q", repo)
		}
	}
	if !r.Network.SandboxEnabled && (len(r.MaskedSecrets) > 0 || len(r.SigningCredentials) > 0 || len(r.GitHubAppCredentials) > 0) {
		d.errorf(p.Key("network", "sandbox_enabled"),
			"masked_secrets, signing_credentials and github_app_credentials need the network sandbox")
	}
}

func (d *validator) nonEmptyList(p yamlwalk.Path, list []string) {
	d.required(p, len(list) == 0)
	for i, s := range list {
		d.required(p.Index(i), s == "")
	}
}

// deliverTo is the path of deliver.to's i-th recipient: the key itself
// when it was written as one string.
func deliverTo(p yamlwalk.Path, s *Schedule, i int) yamlwalk.Path {
	if len(s.Deliver.To) == 1 {
		return p.Key("deliver", "to")
	}
	return p.Key("deliver", "to").Index(i)
}

func (d *validator) validateSchedule(p yamlwalk.Path, r *Repo, s *Schedule) {
	d.required(p.Key("cron"), s.Cron == "")
	var loc *time.Location
	if s.Timezone != "" {
		var err error
		loc, err = time.LoadLocation(s.Timezone)
		d.check(p.Key("timezone"), err != nil, "unknown time zone %q", s.Timezone)
	}
	if s.Cron != "" {
		if _, err := ParseCron(s.Cron, loc); errors.Is(err, errCronFields) {
			d.errorf(p.Key("cron"), "%v, not %q", err, s.Cron)
		} else if err != nil {
			d.errorf(p.Key("cron"), "%q: %v", s.Cron, err)
		}
	}
	if s.TriggerCommand != "" {
		if _, err := SplitCommand(s.TriggerCommand); err != nil {
			d.errorf(p.Key("trigger_command"), "cannot be split like a shell line: %v", err)
		}
	}
	switch {
	case s.Prompt == "" && s.TriggerCommand == "":
		d.errorf(p, "set one of prompt or trigger_command")
	case s.Prompt != "" && s.TriggerCommand != "":
		d.w.Report(d.w.Line(p.Key("trigger_command")), p, "prompt and trigger_command are mutually exclusive")
	}
	d.check(p.Key("trigger_timeout"), s.TriggerTimeout < 0, "must not be negative")
	d.check(p.Key("output_limit"), s.OutputLimit < 1, "must be at least 1 (bytes)")
	d.required(p.Key("deliver", "to"), len(s.Deliver.To) == 0)
	switch s.Deliver.Channel {
	case "email":
		d.check(p.Key("deliver", "channel"), r.Email == nil, "the repo has no email channel to deliver on")
		for i, to := range s.Deliver.To {
			_, err := mail.ParseAddress(to)
			d.check(deliverTo(p, s, i), to != "" && err != nil, "must be an email address, not %q", to)
		}
	case "slack":
		d.check(p.Key("deliver", "channel"), r.Slack == nil, "the repo has no slack channel to deliver on")
		for i, to := range s.Deliver.To {
			d.check(deliverTo(p, s, i), to != "" && !slackDestRE.MatchString(to),
				"must be a Slack channel id (C…, G…) or user id (U…, W…) for a DM, not %q", to)
		}
	default:
		d.errorf(p.Key("deliver", "channel"), "must be email or slack, not %q", s.Deliver.Channel)
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
