package repoconfig

import (
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/airut/airut/internal/yamlwalk"
)

// Sandbox is .airut/sandbox.yaml, used by airut-sandbox (S2, S11).
type Sandbox struct {
	// Env are fixed variables for the command (values may use !env).
	Env map[string]string
	// PassEnv names variables copied from the caller's environment.
	PassEnv []string
	// MaskedSecrets are injected as surrogates (S5.2).
	MaskedSecrets map[string]MaskedSecret
	// SigningCredentials are AWS keys the container sees only as
	// surrogates; the proxy re-signs requests with the real ones (S5.3).
	SigningCredentials map[string]SigningCredential
	// GitHubAppCredentials are GitHub Apps the proxy mints installation
	// tokens for (S5.4).
	GitHubAppCredentials map[string]GitHubAppCredential
	// NetworkSandbox defaults to true; false runs on an open network and
	// says so loudly.
	NetworkSandbox bool
	Limits         Limits
	// Resolve pins host names to addresses in the proxy (network.resolve).
	Resolve map[string]string
	// UpstreamCA is a PEM file trusted for upstream TLS (network.upstream_ca).
	UpstreamCA string
}

// MaskedSecret is one masked_secrets entry.
type MaskedSecret struct {
	Value                   string   `yaml:"value,required"`
	Scopes                  []string `yaml:"scopes,required"`
	Headers                 []string `yaml:"headers,required"`
	AllowForeignCredentials bool     `yaml:"allow_foreign_credentials"`
}

// SigningCredential is one signing_credentials entry (type aws-sigv4).
type SigningCredential struct {
	Type            string        `yaml:"type,required"`
	AccessKeyID     SigningField  `yaml:"access_key_id,required"`
	SecretAccessKey SigningField  `yaml:"secret_access_key,required"`
	SessionToken    *SigningField `yaml:"session_token"` // nil: long-term keys
	Scopes          []string      `yaml:"scopes,required"`
}

// SigningField is one key of a signing credential: the container variable
// its surrogate goes into, and the real value. sandbox.yaml writes it the
// reference's short way, "access_key_id: !env AWS_ACCESS_KEY_ID" (the
// variable is named after the !env variable; a plain string gets
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN), or as
// airut.yaml does, {name, value} (name defaulting the same way).
type SigningField struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value,required"`
}

// signingDefaults are the container variables of the key fields.
var signingDefaults = map[string]string{
	"access_key_id":     "AWS_ACCESS_KEY_ID",
	"secret_access_key": "AWS_SECRET_ACCESS_KEY",
	"session_token":     "AWS_SESSION_TOKEN",
}

// UnmarshalYAMLNode reads the short form (a scalar) or {name, value}.
func (f *SigningField) UnmarshalYAMLNode(n yamlwalk.Node) {
	path := n.Path()
	def := signingDefaults[path[len(path)-1].Key]
	if n.YAML().Kind == yaml.ScalarNode {
		n.Decode(&f.Value)
		f.Name = def
		if src, ok := n.Walker().Source(path); ok {
			f.Name = src.Env
		}
		return
	}
	n.DecodeFields(f)
	if f.Name == "" {
		f.Name = def
	}
}

// Limits are resource_limits; zero means unset.
type Limits struct {
	TimeoutSeconds int
	Memory         string
	CPUs           string
	PidsLimit      int
}

// LookupEnv resolves !env tags; os.LookupEnv in production.
type LookupEnv func(name string) (string, bool)

// sandboxFile is sandbox.yaml as written: the schema yamlwalk decodes.
type sandboxFile struct {
	Env                map[string]string              `yaml:"env"`
	PassEnv            []string                       `yaml:"pass_env"`
	MaskedSecrets      map[string]MaskedSecret        `yaml:"masked_secrets"`
	SigningCredentials map[string]SigningCredential   `yaml:"signing_credentials"`
	GitHubApps         map[string]GitHubAppCredential `yaml:"github_app_credentials"`
	NetworkSandbox     bool                           `yaml:"network_sandbox"`
	ResourceLimits     struct {
		Timeout   uint32 `yaml:"timeout"`
		Memory    string `yaml:"memory"`
		CPUs      string `yaml:"cpus"`
		PidsLimit uint32 `yaml:"pids_limit"`
	} `yaml:"resource_limits"`
	Network struct {
		Resolve    map[string]string `yaml:"resolve"`
		UpstreamCA string            `yaml:"upstream_ca"`
	} `yaml:"network"`
}

// ParseSandbox parses sandbox.yaml strictly: unknown keys, wrong types and
// unset !env variables are errors naming file, line and key, returned as
// yamlwalk.Errors. An empty file gives the defaults.
func ParseSandbox(data []byte, file string, env LookupEnv) (*Sandbox, error) {
	root, err := yamlwalk.Parse(file, data)
	if err != nil {
		return nil, err
	}
	w := yamlwalk.New(file, yamlwalk.Options{Env: env, RequireEnv: true, ListKeys: true})
	f := sandboxFile{NetworkSandbox: true}
	w.Root(root).Decode(&f)
	checkSandbox(w, &f)
	if errs := w.Errors(); len(errs) > 0 {
		return nil, errs
	}
	s := &Sandbox{
		Env:                  f.Env,
		PassEnv:              f.PassEnv,
		MaskedSecrets:        f.MaskedSecrets,
		SigningCredentials:   f.SigningCredentials,
		GitHubAppCredentials: f.GitHubApps,
		NetworkSandbox:       f.NetworkSandbox,
		Limits: Limits{
			TimeoutSeconds: int(f.ResourceLimits.Timeout),
			Memory:         f.ResourceLimits.Memory,
			CPUs:           f.ResourceLimits.CPUs,
			PidsLimit:      int(f.ResourceLimits.PidsLimit),
		},
		UpstreamCA: f.Network.UpstreamCA,
	}
	if f.Network.Resolve != nil {
		s.Resolve = make(map[string]string, len(f.Network.Resolve))
		for host, addr := range f.Network.Resolve {
			s.Resolve[strings.ToLower(host)] = addr
		}
	}
	return s, nil
}

var (
	envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	memoryRe  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?[bkmgBKMG]?$`)
)

// checkSandbox applies the rules the schema's types cannot say.
func checkSandbox(w *yamlwalk.Walker, f *sandboxFile) {
	var root yamlwalk.Path
	report := func(p yamlwalk.Path, format string, args ...any) { w.Report(w.Line(p), p, format, args...) }
	// checked reports whether p was read without an error: only then do
	// its value's own rules apply.
	checked := func(p yamlwalk.Path) bool { return w.Has(p) && !w.Failed(p) }
	// secret reports an empty credential, naming the variable it came from.
	secret := func(p yamlwalk.Path, value string) {
		if value != "" || !checked(p) {
			return
		}
		if s, ok := w.Source(p); ok {
			report(p, "environment variable %s is empty", s.Env)
		} else {
			report(p, "must not be empty")
		}
	}
	for name := range f.Env {
		if !envNameRe.MatchString(name) {
			report(root.Key("env", name), "not a valid environment variable name")
		}
	}
	for i, name := range f.PassEnv {
		if !envNameRe.MatchString(name) {
			report(root.Key("pass_env").Index(i), "%q is not a valid environment variable name", name)
		}
	}
	for name, m := range f.MaskedSecrets {
		secret(root.Key("masked_secrets", name, "value"), m.Value)
	}
	for name, c := range f.SigningCredentials {
		p := root.Key("signing_credentials", name)
		if checked(p.Key("type")) && c.Type != "aws-sigv4" {
			report(p.Key("type"), "must be aws-sigv4, got %q", c.Type)
		}
		fields := map[string]*SigningField{"access_key_id": &c.AccessKeyID, "secret_access_key": &c.SecretAccessKey, "session_token": c.SessionToken}
		names := map[string]string{}
		for _, key := range []string{"access_key_id", "secret_access_key", "session_token"} {
			field := fields[key]
			fp := p.Key(key)
			if field == nil || !checked(fp) {
				continue
			}
			vp := fp
			if w.Has(fp.Key("value")) || w.Failed(fp.Key("value")) {
				vp = fp.Key("value")
			}
			secret(vp, field.Value)
			switch {
			case !envNameRe.MatchString(field.Name):
				report(fp, "container variable %q is not a valid environment variable name", field.Name)
			case names[field.Name] != "":
				report(fp, "container variable %s is %s's too", field.Name, names[field.Name])
			}
			names[field.Name] = key
		}
	}
	checkGitHubApps(f.GitHubApps, report, checked, secret)
	rl, p := f.ResourceLimits, root.Key("resource_limits")
	if checked(p.Key("memory")) && !memoryRe.MatchString(rl.Memory) {
		report(p.Key("memory"), "must be a size like 512m or 8g, got %q", rl.Memory)
	}
	if checked(p.Key("cpus")) {
		if c, err := strconv.ParseFloat(rl.CPUs, 64); err != nil || c <= 0 {
			report(p.Key("cpus"), "must be a positive number, got %q", rl.CPUs)
		}
	}
}
