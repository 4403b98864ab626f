package config

import (
	"reflect"

	"gopkg.in/yaml.v3"

	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/yamlwalk"
)

// Environ looks up an environment variable, like os.LookupEnv.
type Environ func(name string) (string, bool)

func noEnv(string) (string, bool) { return "", false }

// FieldError is one problem in the config file, located by file, line and
// key path, e.g. "airut.yaml:42: repos.app.email.imap.server: required".
type FieldError = yamlwalk.Error

// Errors is every problem found in one load, in file order. Validation
// collects them all so an operator can fix a file in one pass.
type Errors = yamlwalk.Errors

// walkOptions is how airut.yaml is read: the schema is the structs of
// config.go, decoded by yamlwalk.
func walkOptions(env Environ) yamlwalk.Options {
	return yamlwalk.Options{
		Env:        env,
		VarsKey:    "vars",
		MergeKeys:  true,
		UnknownKey: legacyHint,
		Secret:     func(t reflect.Type) bool { return t == reflect.TypeFor[redact.Secret]() },
	}
}

// legacyKeys gives the new place of keys from older reference schemas, so
// an operator bringing an old file over is told where each key went.
var legacyKeys = map[string]string{
	"email.username":                         "email.account.username",
	"email.password":                         "email.account.password",
	"email.from":                             "email.account.from",
	"email.imap_server":                      "email.imap.server",
	"email.imap_port":                        "email.imap.port",
	"email.smtp_server":                      "email.smtp.server",
	"email.smtp_port":                        "email.smtp.port",
	"email.smtp_require_auth":                "email.smtp.require_auth",
	"email.authorized_senders":               "email.auth.authorized_senders",
	"email.trusted_authserv_id":              "email.auth.trusted_authserv_id",
	"email.microsoft_internal_auth_fallback": "email.auth.microsoft_internal_fallback",
	"repo.authorized_senders":                "email.auth.authorized_senders",
	"repo.trusted_authserv_id":               "email.auth.trusted_authserv_id",
	"repo.imap":                              "email.imap",
	"repo.git":                               "repo_url (git.repo_url moved up)",
	"repo.container":                         "container_path (container.path moved up)",
	"top.resource_limits":                    "repos.<id>.resource_limits (use vars: for shared values)",
}

func legacyHint(t reflect.Type, key string) string {
	section := ""
	switch t {
	case reflect.TypeFor[Email]():
		section = "email."
	case reflect.TypeFor[Repo]():
		section = "repo."
	case reflect.TypeFor[Config]():
		section = "top."
	default:
		return ""
	}
	if to, ok := legacyKeys[section+key]; ok {
		return "older config layout: moved to " + to
	}
	return ""
}

// UnmarshalYAMLNode reads one authorization rule: a mapping with exactly
// one of workspace_members, user_group, user_id.
func (r *SlackRule) UnmarshalYAMLNode(n yamlwalk.Node) {
	if y := n.YAML(); y.Kind != yaml.MappingNode || len(y.Content) != 2 {
		n.Errorf("must be a mapping with exactly one key: workspace_members, user_group or user_id")
		return
	}
	n.DecodeFields(r)
}

// UnmarshalYAMLNode accepts {name, value} or a bare value.
func (f *SigningField) UnmarshalYAMLNode(n yamlwalk.Node) {
	if n.YAML().Kind == yaml.ScalarNode {
		n.Under("value").Decode(&f.Value)
		return
	}
	n.DecodeFields(f)
}

// UnmarshalYAMLNode accepts one address or a list of them.
func (r *Recipients) UnmarshalYAMLNode(n yamlwalk.Node) {
	if n.YAML().Kind == yaml.ScalarNode {
		var s string
		if n.Decode(&s) && s != "" {
			*r = Recipients{s}
		}
		return
	}
	var list []string
	n.Decode(&list)
	*r = list
}
