// Package config loads and validates the server config, airut.yaml.
//
// The schema is the reference Airut's (config_version 5), so an operator can
// bring the same file over. Values may be written as !env NAME (read from the
// environment, then from .env beside the file) or !var NAME (from the
// top-level vars: map). Validation collects every problem, each located as
// "airut.yaml:42: repos.app.email.imap.server: required". A repo whose
// section is invalid is reported in Config.RepoErrors and left out of
// Config.Repos, so the other repos can still run ("partial boot"); a problem
// outside repos: fails the whole load.
//
// Every secret that a load resolves is registered with the redact.Registry
// given to Load, and secret fields have type redact.Secret, which never
// prints its value.
package config

import (
	"reflect"
	"time"

	"github.com/airut/airut/internal/redact"
)

// CurrentVersion is the config_version this package reads: the reference
// Airut's current schema.
const CurrentVersion = 5

// Config is the whole server config.
type Config struct {
	// Version is config_version. Default 5. Files written for an older
	// schema are rejected with a hint where their layout differs.
	Version int `yaml:"config_version"`
	// Execution holds global task execution settings.
	Execution Execution `yaml:"execution"`
	// Dashboard configures the web dashboard.
	Dashboard Dashboard `yaml:"dashboard"`
	// Network configures how the proxy reaches upstream hosts.
	Network Network `yaml:"network"`
	// ContainerCommand is the container engine CLI. Default "podman";
	// "docker" is accepted.
	ContainerCommand string `yaml:"container_command"`
	// ContainerRuntime is passed as --runtime (e.g. "runc") on hosts where
	// the engine's default OCI runtime cannot start containers. Default ""
	// (the engine's default).
	ContainerRuntime string `yaml:"container_runtime"`
	// ContainerUlimits are passed as --ulimit values (e.g. "nofile=1024:1024")
	// on hosts where inheriting the host limits fails. Default none.
	ContainerUlimits []string `yaml:"container_ulimits"`

	// Repos holds the repos that passed validation, by repo id. Default
	// empty: a config without repos is valid (the dashboard still runs).
	Repos map[string]*Repo `yaml:"repos"`

	// RepoErrors holds, for each repo that failed validation, an Errors
	// value with every problem found in its section. Not part of the file.
	RepoErrors map[string]error `yaml:"-"`
}

// Execution is the execution: section.
type Execution struct {
	// MaxConcurrent is the number of tasks run at once across all repos.
	// Default 3.
	MaxConcurrent int `yaml:"max_concurrent"`
	// WarmSandboxes is how many network sandboxes are kept ready ahead of
	// need, so a task starts without waiting for its proxy. Default: max_concurrent; 0 disables.
	WarmSandboxes *int `yaml:"warm_sandboxes"`
	// ShutdownTimeout is how long, in seconds, a graceful shutdown waits for
	// running tasks before cancelling them. Default 60.
	ShutdownTimeout int `yaml:"shutdown_timeout"`
	// ConversationMaxAgeDays is how many days a conversation may stay
	// inactive before it is garbage-collected. Default 7.
	ConversationMaxAgeDays int `yaml:"conversation_max_age_days"`
	// ImagePrune removes unused airut images during garbage collection.
	// Default true.
	ImagePrune bool `yaml:"image_prune"`
	// ClaudeBinary is the host path of the Claude Code executable mounted
	// into containers, for repos that set neither claude_binary nor
	// claude_version. Default "" (`claude` found on PATH).
	ClaudeBinary string `yaml:"claude_binary"`
	// ClaudeRegistry is the npm registry claude_version installs from (a
	// mirror). Default "" (https://registry.npmjs.org).
	ClaudeRegistry string `yaml:"claude_registry"`
}

// ShutdownTimeoutDuration returns ShutdownTimeout as a time.Duration.
func (e Execution) ShutdownTimeoutDuration() time.Duration {
	return time.Duration(e.ShutdownTimeout) * time.Second
}

// Dashboard is the dashboard: section.
type Dashboard struct {
	// Enabled starts the dashboard. Default true.
	Enabled bool `yaml:"enabled"`
	// Host is the bind address. Default "127.0.0.1": the dashboard has no
	// login and is meant to sit behind an authenticating reverse proxy.
	Host string `yaml:"host"`
	// Port is the listen port. Default 5200.
	Port int `yaml:"port"`
	// BaseURL is the public URL used for dashboard links in replies.
	// Default "" (no links).
	BaseURL string `yaml:"base_url"`
	// Tasks turns the web channel on: tasks started and continued from
	// the dashboard. Default true; a repo needs no email or Slack channel
	// while it is on.
	Tasks bool `yaml:"tasks"`
}

// WebChannel reports whether the dashboard's web channel runs.
func (d *Dashboard) WebChannel() bool { return d.Enabled && d.Tasks }

// Network is the global network: section.
type Network struct {
	// UpstreamDNS is the DNS server ("1.1.1.1" or "1.1.1.1:53") the proxy
	// resolves upstream hosts with. Default "" (the system resolver).
	UpstreamDNS string `yaml:"upstream_dns"`
	// UpstreamCA is a PEM file of extra CA certificates the proxy trusts
	// upstream, beside the system roots (private CAs). Default "" (none).
	UpstreamCA string `yaml:"upstream_ca"`
	// Resolve pins host names to addresses for the proxy (split-horizon
	// deployments, internal services): an IP ("10.0.0.5") or IP:PORT
	// ("10.0.0.5:8443", the port replacing the request's). A pinned address
	// is the operator's choice and is exempt from the private-range guard.
	// Default none.
	Resolve map[string]string `yaml:"resolve"`
}

// Repo is one entry under repos:.
type Repo struct {
	// RepoURL is the git URL cloned into the mirror. Required.
	RepoURL string `yaml:"repo_url"`
	// Model is the Claude model for new conversations. Default "opus".
	Model string `yaml:"model"`
	// Effort is passed as --effort (low, medium, high, max). Default ""
	// (the flag is left out and Claude Code uses its own default).
	Effort string `yaml:"effort"`
	// ClaudeVersion is the Claude Code version the gateway installs from
	// the npm registry: a version (2.1.3), "latest" or "stable". Default ""
	// (claude_binary, else execution.claude_binary, else `claude` on PATH).
	// Exclusive with claude_binary.
	ClaudeVersion string `yaml:"claude_version"`
	// ClaudeBinary is the host path of the Claude Code executable mounted
	// read-only into the container. Default execution.claude_binary when
	// claude_version is unset, else "" (`claude` found on PATH).
	ClaudeBinary string `yaml:"claude_binary"`
	// ContainerPath is the directory in the repo holding the Dockerfile and
	// its build context; relative, without "..". Default ".airut/container".
	ContainerPath string `yaml:"container_path"`
	// ResourceLimits bound each task's container. Default: no limits.
	ResourceLimits ResourceLimits `yaml:"resource_limits"`
	// Network is the repo's network: section.
	Network RepoNetwork `yaml:"network"`
	// Email is the email channel. Default nil (no email channel). At least
	// one of Email and Slack is required.
	Email *Email `yaml:"email"`
	// Slack is the Slack channel. Default nil (no Slack channel).
	Slack *Slack `yaml:"slack"`
	// Secrets are plain credentials: the container sees the real value in
	// an environment variable named by the key. An entry whose !env
	// variable is unset is left out. Default none.
	Secrets map[string]redact.Secret `yaml:"secrets"`
	// MaskedSecrets are credentials the container sees only as surrogates,
	// swapped for the real value by the proxy on scoped hosts. Default none.
	MaskedSecrets map[string]MaskedSecret `yaml:"masked_secrets"`
	// SigningCredentials are AWS keys the proxy re-signs requests with.
	// Default none.
	SigningCredentials map[string]SigningCredential `yaml:"signing_credentials"`
	// GitHubAppCredentials are GitHub Apps the proxy mints installation
	// tokens for. Default none.
	GitHubAppCredentials map[string]GitHubAppCredential `yaml:"github_app_credentials"`
	// Schedules are cron-scheduled tasks by name. Default none.
	Schedules map[string]Schedule `yaml:"schedules"`
}

// ResourceLimits is a repo's resource_limits: section. A zero field means no
// limit (the container flag is left out).
type ResourceLimits struct {
	// Timeout is the task's hard time limit in seconds, at least 10.
	// Default 0 (none).
	Timeout int `yaml:"timeout"`
	// Memory is the --memory value, a number with a b/k/m/g suffix such as
	// "8g". Default "" (none).
	Memory string `yaml:"memory"`
	// CPUs is the --cpus value, fractions allowed, at least 0.01.
	// Default 0 (none).
	CPUs float64 `yaml:"cpus"`
	// PidsLimit is the --pids-limit value, at least 1. Default 0 (none).
	PidsLimit int `yaml:"pids_limit"`
}

// TimeoutDuration returns Timeout as a time.Duration (0 when unset).
func (r ResourceLimits) TimeoutDuration() time.Duration {
	return time.Duration(r.Timeout) * time.Second
}

// RepoNetwork is a repo's network: section.
type RepoNetwork struct {
	// SandboxEnabled routes the container's traffic through the allowlisting
	// proxy. Default true. Masked, signing and GitHub App credentials need it.
	SandboxEnabled bool `yaml:"sandbox_enabled"`
}

// Email is a repo's email: channel.
type Email struct {
	// Account is the mailbox's credentials.
	Account EmailAccount `yaml:"account"`
	// IMAP is the inbound server.
	IMAP IMAP `yaml:"imap"`
	// SMTP is the outbound server.
	SMTP SMTP `yaml:"smtp"`
	// Auth decides which senders are accepted.
	Auth EmailAuth `yaml:"auth"`
	// MicrosoftOAuth2 switches IMAP and SMTP to XOAUTH2 with Microsoft 365
	// client credentials. Default nil (password login).
	MicrosoftOAuth2 *MicrosoftOAuth2 `yaml:"microsoft_oauth2"`
}

// EmailAccount is email.account.
type EmailAccount struct {
	// Username is the IMAP/SMTP login. Required.
	Username string `yaml:"username"`
	// From is the From address of replies, e.g. "Airut <airut@example.com>".
	// Required.
	From string `yaml:"from"`
	// Password is the IMAP/SMTP password. Required unless microsoft_oauth2
	// is set.
	Password redact.Secret `yaml:"password"`
}

// IMAP is email.imap.
type IMAP struct {
	// Server is the IMAP host (TLS). Required.
	Server string `yaml:"server"`
	// Port is the IMAPS port. Default 993.
	Port int `yaml:"port"`
	// TLS wraps the connection in TLS from the start (IMAPS). Default true.
	// false is plain TCP, for a local server on the same host only: the
	// password then crosses the connection in clear.
	TLS bool `yaml:"tls"`
	// ConnectRetries is how many connection attempts are made before the
	// channel reports an error. Default 3.
	ConnectRetries int `yaml:"connect_retries"`
	// PollInterval is the seconds between polls when IDLE is off, at least
	// 0.1. Default 60.
	PollInterval float64 `yaml:"poll_interval"`
	// CAFile is a PEM file of CA certificates trusted for this connection
	// only, for a server with a private CA; an absolute path, checked at
	// load. Default "" (the system roots).
	CAFile string `yaml:"ca_file" json:",omitempty"`
	// UseIdle waits for new mail with IMAP IDLE instead of polling.
	// Default true.
	UseIdle bool `yaml:"use_idle"`
	// IdleReconnectInterval is the seconds after which IDLE is re-issued
	// (servers drop IDLE after 30 minutes), at least 60. Default 1740.
	IdleReconnectInterval float64 `yaml:"idle_reconnect_interval"`
}

// PollIntervalDuration returns PollInterval as a time.Duration.
func (i IMAP) PollIntervalDuration() time.Duration { return seconds(i.PollInterval) }

// IdleReconnectDuration returns IdleReconnectInterval as a time.Duration.
func (i IMAP) IdleReconnectDuration() time.Duration { return seconds(i.IdleReconnectInterval) }

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// SMTP is email.smtp.
type SMTP struct {
	// Server is the SMTP host. Required.
	Server string `yaml:"server"`
	// Port is the submission port. Default 587.
	Port int `yaml:"port"`
	// RequireAuth logs in with AUTH before sending. Default true.
	RequireAuth bool `yaml:"require_auth"`
	// StartTLS requires STARTTLS. Default true. false is for a local relay
	// that does not offer it: STARTTLS is still used whenever offered.
	StartTLS bool `yaml:"starttls"`
	// CAFile is as IMAP.CAFile, for the SMTP connection. Default "".
	CAFile string `yaml:"ca_file" json:",omitempty"`
}

// EmailAuth is email.auth.
type EmailAuth struct {
	// AuthorizedSenders are the addresses (or "*@domain") allowed to send
	// tasks, case-insensitive. Required, at least one.
	AuthorizedSenders []string `yaml:"authorized_senders"`
	// TrustedAuthservID is the authserv-id the first Authentication-Results
	// header must carry. Required; "" is allowed and skips the check
	// (Microsoft 365 omits it).
	TrustedAuthservID string `yaml:"trusted_authserv_id"`
	// MicrosoftInternalFallback accepts X-MS-Exchange-Organization-AuthAs:
	// Internal when there is no Authentication-Results header at all.
	// Default false.
	MicrosoftInternalFallback bool `yaml:"microsoft_internal_fallback"`
}

// MicrosoftOAuth2 is email.microsoft_oauth2; all three fields are required
// when the section is present.
type MicrosoftOAuth2 struct {
	// TenantID is the Azure AD tenant. Treated as a secret, as the
	// reference does.
	TenantID redact.Secret `yaml:"tenant_id"`
	// ClientID is the Azure AD application (client) id.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the application's client secret.
	ClientSecret redact.Secret `yaml:"client_secret"`
}

// Slack is a repo's slack: channel (Socket Mode).
type Slack struct {
	// BotToken is the bot user OAuth token, "xoxb-…". Required.
	BotToken redact.Secret `yaml:"bot_token"`
	// AppToken is the app-level Socket Mode token, "xapp-…". Required.
	AppToken redact.Secret `yaml:"app_token"`
	// Authorized are the rules, in order, first match wins. Required, at
	// least one.
	Authorized []SlackRule `yaml:"authorized"`
	// AllowedChannels are the channel ids where @-mentions are answered.
	// Default none (every channel the app is in). DMs are not affected.
	AllowedChannels []string `yaml:"allowed_channels"`
	// APIURL is the Web API base, for Slack-compatible servers and egress
	// proxies. Default "" (https://slack.com/api/).
	APIURL string `yaml:"api_url"`
}

// SlackRule is one entry of slack.authorized; exactly one field is set, as
// the file has exactly one key per rule.
type SlackRule struct {
	// WorkspaceMembers matches every full member of the workspace.
	WorkspaceMembers bool `yaml:"workspace_members"`
	// UserGroup matches members of the user group with this handle.
	UserGroup string `yaml:"user_group"`
	// UserID matches one user, "U…".
	UserID string `yaml:"user_id"`
}

// MaskedSecret is one masked_secrets entry.
type MaskedSecret struct {
	// Value is the real credential. Required; an entry whose !env variable
	// is unset is left out, like the reference.
	Value redact.Secret `yaml:"value"`
	// Scopes are the host patterns where the surrogate is swapped. Required.
	Scopes []string `yaml:"scopes"`
	// Headers are the header-name patterns scanned for the surrogate.
	// Required.
	Headers []string `yaml:"headers"`
	// AllowForeignCredentials keeps scoped headers that do not carry the
	// surrogate instead of stripping them. Default false.
	AllowForeignCredentials bool `yaml:"allow_foreign_credentials"`
}

// SigningTypeAWSSigV4 is the only signing_credentials type.
const SigningTypeAWSSigV4 = "aws-sigv4"

// SigningCredential is one signing_credentials entry.
type SigningCredential struct {
	// Type must be "aws-sigv4". Required.
	Type string `yaml:"type"`
	// AccessKeyID is the real access key id. Required.
	AccessKeyID SigningField `yaml:"access_key_id"`
	// SecretAccessKey is the real secret key. Required.
	SecretAccessKey SigningField `yaml:"secret_access_key"`
	// SessionToken is the STS session token. Default nil (none); also nil
	// when its !env variable is unset.
	SessionToken *SigningField `yaml:"session_token"`
	// Scopes are the host patterns where requests are re-signed. Required.
	Scopes []string `yaml:"scopes"`
}

// SigningField is a signing credential field: the environment variable the
// container sees it under and the real value. In the file it is either a
// mapping {name, value} (the reference's form) or a bare value, in which case
// the name defaults to AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or
// AWS_SESSION_TOKEN.
type SigningField struct {
	// Name is the container's environment variable. Default per field, see
	// above.
	Name string `yaml:"name"`
	// Value is the real credential. Required.
	Value redact.Secret `yaml:"value"`
}

// GitHubAppCredential is one github_app_credentials entry.
type GitHubAppCredential struct {
	// AppID is the App's client id ("Iv1…") or numeric id. Required.
	AppID string `yaml:"app_id"`
	// PrivateKey is the App's PEM private key. Required.
	PrivateKey redact.Secret `yaml:"private_key"`
	// InstallationID is the installation's numeric id. Required.
	InstallationID int64 `yaml:"installation_id"`
	// Scopes are the host patterns where the surrogate is swapped. Required.
	Scopes []string `yaml:"scopes"`
	// BaseURL is the GitHub API URL, https only (GHES:
	// https://host/api/v3). Default "https://api.github.com".
	BaseURL string `yaml:"base_url"`
	// Permissions restrict the installation token (e.g. contents: write).
	// Default none (the App's full permissions).
	Permissions map[string]string `yaml:"permissions"`
	// Repositories restrict the token to these repository names. Default
	// none (every repository of the installation).
	Repositories []string `yaml:"repositories"`
	// AllowForeignCredentials keeps Authorization headers that do not carry
	// the surrogate on scoped hosts instead of stripping them. Default false.
	AllowForeignCredentials bool `yaml:"allow_foreign_credentials"`
}

// DefaultGitHubAPI is the default GitHubAppCredential.BaseURL.
const DefaultGitHubAPI = "https://api.github.com"

// Schedule is one schedules entry. Exactly one of Prompt and TriggerCommand
// is set.
type Schedule struct {
	// Cron is a 5-field cron expression. Required.
	Cron string `yaml:"cron"`
	// Timezone is the IANA zone Cron is read in. Default "" (server local).
	Timezone string `yaml:"timezone"`
	// Prompt runs the agent with this prompt (prompt mode).
	Prompt string `yaml:"prompt"`
	// TriggerCommand runs this command in the sandbox first and the agent
	// only if it exits non-zero or prints output (script mode). Also
	// accepted as "trigger".
	TriggerCommand string `yaml:"trigger_command" alias:"trigger"`
	// TriggerTimeout bounds the trigger command, in seconds. Default 0 (the
	// repo's resource_limits.timeout).
	TriggerTimeout int `yaml:"trigger_timeout"`
	// Deliver says where results go. Required.
	Deliver Deliver `yaml:"deliver"`
	// Enable turns the schedule on. Default true.
	Enable bool `yaml:"enable"`
	// Subject is the email subject. Default "" (the schedule's name).
	Subject string `yaml:"subject"`
	// Model overrides the repo's model. Default "" (the repo's).
	Model string `yaml:"model"`
	// Effort overrides the repo's effort. Default "" (the repo's).
	Effort string `yaml:"effort"`
	// OutputLimit caps the trigger output put in the prompt, in bytes.
	// Default 102400.
	OutputLimit int `yaml:"output_limit"`
}

// Deliver is schedules.<name>.deliver.
type Deliver struct {
	// To are the recipients: one address or a list. Required.
	To Recipients `yaml:"to"`
	// Channel is the channel results are sent on. Default "email".
	Channel string `yaml:"channel"`
}

// Recipients is a list of addresses that may be written as a single string.
type Recipients []string

// SetDefaults sets the defaults documented on each field.
func (c *Config) SetDefaults() {
	c.Version = CurrentVersion
	c.Execution = Execution{MaxConcurrent: 3, ShutdownTimeout: 60, ConversationMaxAgeDays: 7, ImagePrune: true}
	c.Dashboard = Dashboard{Enabled: true, Host: "127.0.0.1", Port: 5200, Tasks: true}
	c.ContainerCommand = "podman"
}

// SetDefaults sets the defaults documented on each field.
func (r *Repo) SetDefaults() {
	r.Model = "opus"
	r.ContainerPath = ".airut/container"
	r.Network.SandboxEnabled = true
}

// SetDefaults sets the defaults documented on each field.
func (e *Email) SetDefaults() {
	e.IMAP = IMAP{Port: 993, TLS: true, ConnectRetries: 3, PollInterval: 60, UseIdle: true, IdleReconnectInterval: 1740}
	e.SMTP = SMTP{Port: 587, RequireAuth: true, StartTLS: true}
}

// SetDefaults sets the defaults documented on each field.
func (g *GitHubAppCredential) SetDefaults() { g.BaseURL = DefaultGitHubAPI }

// SetDefaults sets the defaults documented on each field.
func (s *Schedule) SetDefaults() {
	s.Enable = true
	s.OutputLimit = 102400
	s.Deliver.Channel = "email"
}

// RepoChanged reports whether a repo's config differs between two loads, so
// a watcher knows to restart it. A repo present in only one is changed.
func RepoChanged(old, new *Repo) bool {
	return !reflect.DeepEqual(old, new)
}

// GlobalChanged reports whether anything outside repos: differs.
func GlobalChanged(old, new *Config) bool {
	a, b := *old, *new
	a.Repos, b.Repos, a.RepoErrors, b.RepoErrors = nil, nil, nil, nil
	return !reflect.DeepEqual(a, b)
}

// Err returns the repos' validation errors as one Errors value (every repo,
// in file order), or nil when every repo is valid.
func (c *Config) Err() error {
	var all Errors
	for _, err := range c.RepoErrors {
		if es, ok := err.(Errors); ok {
			all = append(all, es...)
		}
	}
	if len(all) == 0 {
		return nil
	}
	return all.Sorted()
}
