package configui

import (
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/airut/airut/internal/config"
	"github.com/airut/airut/internal/redact"
)

// field is one scalar (or list of scalars) of the form. A secret's value
// is never put in a field: only how it is written (!env NAME) and whether
// it is set.
type field struct {
	Key    string // the path joined with "/", the form's name
	Label  string // the path as airut.yaml writes it
	Kind   string // "literal", "env" or "var"
	Value  string // the literal, or the variable's NAME
	Secret bool
	Set    bool // secret: its value is known (environment or .env)
	Inline bool // secret: written literally in airut.yaml
	List   bool // a list of scalars, comma-separated here
	Bool   bool
	Error  string
}

type section struct {
	Title  string
	Fields []field
}

var secretType = reflect.TypeFor[redact.Secret]()

// formSections lists every scalar key the schema has at the places the
// file has sections for: the globals, and per repo its own keys, its
// channels and each credential and schedule entry present. Lists of
// mappings (slack.authorized) are edited in the YAML mode.
func (u *UI) formSections(data []byte, probs config.Errors) []section {
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc)
	var root *yaml.Node
	if len(doc.Content) > 0 && doc.Content[0].Kind == yaml.MappingNode {
		root = doc.Content[0]
	}
	errs := map[string]string{}
	for _, e := range probs {
		errs[strings.Join(pathKeys(e.Path.String()), "/")] = e.Message
	}
	b := &formBuilder{u: u, errs: errs}
	global := section{Title: "Global settings"}
	b.walk(&global, nil, reflect.TypeFor[config.Config](), root, map[string]bool{"repos": true, "vars": true})
	out := []section{global}
	_, repos := lookupNode(root, "repos")
	if repos != nil && repos.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(repos.Content); i += 2 {
			id := repos.Content[i].Value
			s := section{Title: "Repository " + id}
			b.walk(&s, []string{"repos", id}, reflect.TypeFor[config.Repo](), repos.Content[i+1], nil)
			out = append(out, s)
		}
	}
	return out
}

type formBuilder struct {
	u    *UI
	errs map[string]string
}

// pathKeys splits "repos.app.email.imap.server" (an error's key) into its
// keys; list indexes are dropped.
func pathKeys(key string) []string {
	key = regexp.MustCompile(`\[[0-9]+\]`).ReplaceAllString(key, "")
	return strings.Split(key, ".")
}

func lookupNode(m *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func yamlKey(f reflect.StructField) string { return strings.Split(f.Tag.Get("yaml"), ",")[0] }

func (b *formBuilder) walk(s *section, prefix []string, typ reflect.Type, node *yaml.Node, skip map[string]bool) {
	for i := range typ.NumField() {
		sf := typ.Field(i)
		key := yamlKey(sf)
		if key == "" || key == "-" || skip[key] {
			continue
		}
		path := append(append([]string{}, prefix...), key)
		_, v := lookupNode(node, key)
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == secretType || ft.Kind() == reflect.String || ft.Kind() == reflect.Int || ft.Kind() == reflect.Int64 ||
			ft.Kind() == reflect.Float64 || ft.Kind() == reflect.Bool:
			s.Fields = append(s.Fields, b.scalar(path, v, ft))
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
			s.Fields = append(s.Fields, b.list(path, v))
		case ft.Kind() == reflect.Struct:
			if sf.Type.Kind() == reflect.Pointer && v == nil {
				continue // an optional section the file does not have
			}
			b.walk(s, path, ft, v, nil)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct && v != nil && v.Kind == yaml.MappingNode:
			for j := 0; j+1 < len(v.Content); j += 2 {
				b.walk(s, append(append([]string{}, path...), v.Content[j].Value), ft.Elem(), v.Content[j+1], nil)
			}
		}
	}
}

func (b *formBuilder) scalar(path []string, v *yaml.Node, t reflect.Type) field {
	f := field{Key: strings.Join(path, "/"), Label: strings.Join(path, "."), Kind: "literal",
		Secret: t == secretType, Bool: t.Kind() == reflect.Bool, Error: b.errs[strings.Join(path, "/")]}
	if v != nil && v.Kind == yaml.ScalarNode {
		switch v.Tag {
		case "!env":
			f.Kind, f.Value = "env", v.Value
		case "!var":
			f.Kind, f.Value = "var", v.Value
		default:
			f.Value = v.Value
		}
	}
	if f.Secret {
		switch f.Kind {
		case "env":
			f.Set = b.u.o.Store.SecretSet(f.Value)
		case "literal":
			f.Inline, f.Set = f.Value != "", f.Value != ""
			f.Value = "" // never sent to the browser
		}
	}
	return f
}

func (b *formBuilder) list(path []string, v *yaml.Node) field {
	f := field{Key: strings.Join(path, "/"), Label: strings.Join(path, "."), Kind: "literal", List: true,
		Error: b.errs[strings.Join(path, "/")]}
	if v != nil && v.Kind == yaml.SequenceNode {
		var items []string
		for _, c := range v.Content {
			items = append(items, c.Value)
		}
		f.Value = strings.Join(items, ", ")
	}
	return f
}

// envNameFor makes the .env variable name of a secret typed into the
// form for a key that has none yet, e.g. AIRUT_APP_EMAIL_ACCOUNT_PASSWORD.
func envNameFor(path []string) string {
	name := strings.ToUpper(strings.Join(append([]string{"airut"}, path[1:]...), "_"))
	if len(path) > 0 && path[0] != "repos" {
		name = strings.ToUpper(strings.Join(append([]string{"airut"}, path...), "_"))
	}
	return regexp.MustCompile(`[^A-Z0-9_]`).ReplaceAllString(name, "_")
}

// applyForm turns the posted fields into edits of yaml: only fields whose
// value or kind changed are touched (so every other byte stays), a secret
// typed in goes to .env and is referenced as !env. It returns the new
// text.
func (u *UI) applyForm(yamlText string, form url.Values) (string, error) {
	e, err := config.NewEdit([]byte(yamlText))
	if err != nil {
		return "", err
	}
	for name, vals := range form {
		key, ok := strings.CutPrefix(name, "f:")
		if !ok || len(vals) == 0 {
			continue
		}
		path := strings.Split(key, "/")
		val, kind := strings.TrimSpace(vals[0]), form.Get("k:"+key)
		if val == form.Get("o:"+key) && kind == form.Get("ok:"+key) {
			continue
		}
		switch {
		case val == "" && form.Has("o:"+key) && form.Get("o:"+key) != "":
			err = e.Delete(path)
		case val == "":
			continue
		case form.Get("list:"+key) == "1":
			var items []string
			for _, it := range strings.Split(val, ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, "- "+quoteItem(it))
				}
			}
			err = e.SetBlock(path, strings.Join(items, "\n")+"\n")
		default:
			vk := map[string]config.ValueKind{"env": config.EnvRef, "var": config.VarRef}[kind]
			err = e.Set(path, config.Value{Kind: vk, Text: val})
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", strings.Join(path, "."), err)
		}
	}
	for name, vals := range form {
		key, ok := strings.CutPrefix(name, "s:")
		if !ok || len(vals) == 0 || vals[0] == "" {
			continue
		}
		path := strings.Split(key, "/")
		env := form.Get("f:" + key)
		if form.Get("k:"+key) != "env" || !secretNameRE.MatchString(env) {
			env = envNameFor(path)
		}
		if err := u.o.Store.SetSecret(env, vals[0]); err != nil {
			return "", err
		}
		if err := e.Set(path, config.Value{Kind: config.EnvRef, Text: env}); err != nil {
			return "", fmt.Errorf("%s: %w", strings.Join(path, "."), err)
		}
	}
	return string(e.Bytes()), nil
}

func quoteItem(s string) string {
	out, err := yaml.Marshal(&yaml.Node{Kind: yaml.ScalarNode, Value: s})
	if err != nil {
		return s
	}
	return strings.TrimSuffix(string(out), "\n")
}

// newRepoBlock is the section the Add repository form writes: the repo
// and its channel, with every secret as !env NAME (the values go to .env).
func newRepoBlock(form url.Values, id string) (string, map[string]string, error) {
	g := func(k string) string { return strings.TrimSpace(form.Get(k)) }
	if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`).MatchString(id) {
		return "", nil, fmt.Errorf("repo id %q: letters, digits, '.', '_' or '-'", id)
	}
	q := quoteItem
	secrets := map[string]string{}
	envName := func(suffix string) string {
		return regexp.MustCompile(`[^A-Z0-9_]`).ReplaceAllString(strings.ToUpper("AIRUT_"+id+"_"+suffix), "_")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "repo_url: %s\n", q(g("repo_url")))
	switch g("channel") {
	case "email":
		pw := envName("EMAIL_PASSWORD")
		secrets[pw] = form.Get("password")
		fmt.Fprintf(&b, "email:\n  account:\n    username: %s\n    from: %s\n    password: !env %s\n", q(g("username")), q(g("from")), pw)
		fmt.Fprintf(&b, "  imap:\n    server: %s\n", q(g("imap_server")))
		if p := g("imap_port"); p != "" {
			fmt.Fprintf(&b, "    port: %s\n", q(p))
		}
		fmt.Fprintf(&b, "  smtp:\n    server: %s\n", q(g("smtp_server")))
		if p := g("smtp_port"); p != "" {
			fmt.Fprintf(&b, "    port: %s\n", q(p))
		}
		b.WriteString("  auth:\n    authorized_senders:\n")
		for _, s := range strings.Split(g("authorized_senders"), ",") {
			if s = strings.TrimSpace(s); s != "" {
				fmt.Fprintf(&b, "      - %s\n", q(s))
			}
		}
		fmt.Fprintf(&b, "    trusted_authserv_id: %s\n", q(g("trusted_authserv_id")))
	case "slack":
		bot, app := envName("SLACK_BOT_TOKEN"), envName("SLACK_APP_TOKEN")
		secrets[bot], secrets[app] = form.Get("bot_token"), form.Get("app_token")
		fmt.Fprintf(&b, "slack:\n  bot_token: !env %s\n  app_token: !env %s\n  authorized:\n    - workspace_members: true\n", bot, app)
	case "":
	default:
		return "", nil, fmt.Errorf("channel %q: email or slack", g("channel"))
	}
	for k, v := range secrets {
		if v == "" {
			delete(secrets, k)
		}
	}
	return b.String(), secrets, nil
}
