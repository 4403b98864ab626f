package repoconfig

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/airut/airut/internal/fileerr"
	"gopkg.in/yaml.v3"
)

// Sandbox is .airut/sandbox.yaml, used by airut-sandbox (S2, S11).
type Sandbox struct {
	// Env are fixed variables for the command (values may use !env).
	Env map[string]string
	// PassEnv names variables copied from the caller's environment.
	PassEnv []string
	// MaskedSecrets are injected as surrogates (S5.2).
	MaskedSecrets map[string]MaskedSecret
	// SigningCredentials are accepted and validated; re-signing is done by
	// the proxy (S5.3).
	SigningCredentials map[string]SigningCredential
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
	Value                   string
	Scopes                  []string
	Headers                 []string
	AllowForeignCredentials bool
}

// SigningCredential is one signing_credentials entry (type aws-sigv4).
type SigningCredential struct {
	Type            string
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Scopes          []string
}

// Limits are resource_limits; zero means unset.
type Limits struct {
	TimeoutSeconds int
	Memory         string
	CPUs           string
	PidsLimit      int
}

// Error is a configuration error at a position in a file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string { return fileerr.Format(e.File, e.Line, e.Key, e.Msg) }

// Errors is every error found in one file.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// LookupEnv resolves !env tags; os.LookupEnv in production.
type LookupEnv func(name string) (string, bool)

type parser struct {
	file string
	env  LookupEnv
	errs Errors
}

func (p *parser) errorf(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// ParseSandbox parses sandbox.yaml strictly: unknown keys, wrong types and
// unset !env variables are errors naming file, line and key. An empty file
// gives the defaults.
func ParseSandbox(data []byte, file string, env LookupEnv) (*Sandbox, error) {
	s := &Sandbox{NetworkSandbox: true}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: file, Line: yamlErrLine(err), Msg: cleanYAMLErr(err)}
	}
	if len(doc.Content) == 0 {
		return s, nil
	}
	p := &parser{file: file, env: env}
	root := doc.Content[0]
	p.mapping(root, "", map[string]func(*yaml.Node, string){
		"env": func(n *yaml.Node, key string) {
			s.Env = map[string]string{}
			p.mapping(n, key, nil, func(k string, v *yaml.Node) {
				if !validEnvName(k) {
					p.errorf(v, key+"."+k, "not a valid environment variable name")
				}
				s.Env[k] = p.str(v, key+"."+k, false)
			})
		},
		"pass_env": func(n *yaml.Node, key string) {
			s.PassEnv = p.strList(n, key)
			for _, name := range s.PassEnv {
				if !validEnvName(name) {
					p.errorf(n, key, "%q is not a valid environment variable name", name)
				}
			}
		},
		"masked_secrets": func(n *yaml.Node, key string) {
			s.MaskedSecrets = map[string]MaskedSecret{}
			p.mapping(n, key, nil, func(name string, v *yaml.Node) {
				var m MaskedSecret
				k := key + "." + name
				p.mapping(v, k, map[string]func(*yaml.Node, string){
					"value":                     func(n *yaml.Node, key string) { m.Value = p.str(n, key, true) },
					"scopes":                    func(n *yaml.Node, key string) { m.Scopes = p.strList(n, key) },
					"headers":                   func(n *yaml.Node, key string) { m.Headers = p.strList(n, key) },
					"allow_foreign_credentials": func(n *yaml.Node, key string) { m.AllowForeignCredentials = p.boolean(n, key) },
				}, nil)
				p.required(v, k, "value", "scopes", "headers")
				s.MaskedSecrets[name] = m
			})
		},
		"signing_credentials": func(n *yaml.Node, key string) {
			s.SigningCredentials = map[string]SigningCredential{}
			p.mapping(n, key, nil, func(name string, v *yaml.Node) {
				var c SigningCredential
				k := key + "." + name
				p.mapping(v, k, map[string]func(*yaml.Node, string){
					"type": func(n *yaml.Node, key string) {
						c.Type = p.str(n, key, false)
						if c.Type != "aws-sigv4" {
							p.errorf(n, key, "must be aws-sigv4, got %q", c.Type)
						}
					},
					"access_key_id":     func(n *yaml.Node, key string) { c.AccessKeyID = p.str(n, key, true) },
					"secret_access_key": func(n *yaml.Node, key string) { c.SecretAccessKey = p.str(n, key, true) },
					"session_token":     func(n *yaml.Node, key string) { c.SessionToken = p.str(n, key, true) },
					"scopes":            func(n *yaml.Node, key string) { c.Scopes = p.strList(n, key) },
				}, nil)
				p.required(v, k, "type", "access_key_id", "secret_access_key", "scopes")
				s.SigningCredentials[name] = c
			})
		},
		"network_sandbox": func(n *yaml.Node, key string) { s.NetworkSandbox = p.boolean(n, key) },
		"resource_limits": func(n *yaml.Node, key string) { s.Limits = p.limits(n, key) },
		"network": func(n *yaml.Node, key string) {
			p.mapping(n, key, map[string]func(*yaml.Node, string){
				"resolve": func(n *yaml.Node, key string) {
					s.Resolve = map[string]string{}
					p.mapping(n, key, nil, func(host string, v *yaml.Node) {
						s.Resolve[strings.ToLower(host)] = p.str(v, key+"."+host, false)
					})
				},
				"upstream_ca": func(n *yaml.Node, key string) { s.UpstreamCA = p.str(n, key, false) },
			}, nil)
		},
	}, nil)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return s, nil
}

// mapping walks a mapping node. With fields, only those keys are accepted;
// otherwise each entry goes to each (a free-form map).
func (p *parser) mapping(n *yaml.Node, key string, fields map[string]func(*yaml.Node, string), each func(string, *yaml.Node)) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, orRoot(key), "must be a mapping, got %s", kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		full := k.Value
		if key != "" {
			full = key + "." + k.Value
		}
		if seen[k.Value] {
			p.errorf(k, full, "duplicate key")
			continue
		}
		seen[k.Value] = true
		if fields == nil {
			each(k.Value, v)
			continue
		}
		f, ok := fields[k.Value]
		if !ok {
			p.errorf(k, full, "unknown key")
			continue
		}
		f(v, full)
	}
}

// required reports keys missing from a mapping; present but empty values
// are reported where they are parsed.
func (p *parser) required(n *yaml.Node, key string, keys ...string) {
	if n.Kind != yaml.MappingNode {
		return
	}
	present := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		present[n.Content[i].Value] = true
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !present[k] {
			p.errorf(n, key+"."+k, "required")
		}
	}
}

func (p *parser) str(n *yaml.Node, key string, secret bool) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, key, "must be a string, got %s", kindName(n))
		return ""
	}
	if n.Tag == "!env" {
		v, ok := p.env(n.Value)
		if !ok {
			p.errorf(n, key, "environment variable %s is not set", n.Value)
		} else if v == "" && secret {
			p.errorf(n, key, "environment variable %s is empty", n.Value)
		}
		return v
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		p.errorf(n, key, "unknown tag %s (only !env is supported here)", n.Tag)
	}
	if secret && n.Value == "" {
		p.errorf(n, key, "must not be empty")
	}
	return n.Value
}

func (p *parser) strList(n *yaml.Node, key string) []string {
	if n.Kind != yaml.SequenceNode {
		// A string here is an error, never iterated character by character.
		p.errorf(n, key, "must be a list, got %s", kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		out = append(out, p.str(item, fmt.Sprintf("%s[%d]", key, i), false))
	}
	return out
}

func (p *parser) boolean(n *yaml.Node, key string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		p.errorf(n, key, "must be true or false, got %q", n.Value)
	}
	return b
}

func (p *parser) integer(n *yaml.Node, key string) int {
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil || v < 0 {
		p.errorf(n, key, "must be a non-negative integer, got %q", n.Value)
	}
	return v
}

var memoryRe = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?[bkmgBKMG]?$`)

func (p *parser) limits(n *yaml.Node, key string) Limits {
	var l Limits
	p.mapping(n, key, map[string]func(*yaml.Node, string){
		"timeout":    func(n *yaml.Node, key string) { l.TimeoutSeconds = p.integer(n, key) },
		"pids_limit": func(n *yaml.Node, key string) { l.PidsLimit = p.integer(n, key) },
		"memory": func(n *yaml.Node, key string) {
			l.Memory = p.str(n, key, false)
			if !memoryRe.MatchString(l.Memory) {
				p.errorf(n, key, "must be a size like 512m or 8g, got %q", l.Memory)
			}
		},
		"cpus": func(n *yaml.Node, key string) {
			l.CPUs = p.str(n, key, false)
			if f, err := strconv.ParseFloat(l.CPUs, 64); err != nil || f <= 0 {
				p.errorf(n, key, "must be a positive number, got %q", l.CPUs)
			}
		},
	}, nil)
	return l
}

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func validEnvName(s string) bool { return envNameRe.MatchString(s) }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return strings.TrimPrefix(n.Tag, "!!") + " " + strconv.Quote(n.Value)
}

func orRoot(key string) string {
	if key == "" {
		return "(top level)"
	}
	return key
}

var yamlLineRe = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func cleanYAMLErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = yamlLineRe.ReplaceAllString(s, "")
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), ":"))
	return "invalid YAML: " + s
}
