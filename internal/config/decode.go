package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/airut/airut/internal/redact"
)

// Environ looks up an environment variable, like os.LookupEnv.
type Environ func(name string) (string, bool)

func noEnv(string) (string, bool) { return "", false }

// scalar is a scalar after !env and !var are resolved.
type scalar struct {
	value string
	tag   string // YAML short tag: !!str, !!int, !!bool, !!float, !!null
	line  int
	env   string // the variable it came from, if any
	unset bool   // env named a variable that is not set
}

// decoder turns the yaml.Node tree into the schema structs by reflection,
// collecting every error instead of stopping at the first.
type decoder struct {
	file string
	env  Environ
	vars map[string]scalar

	errs    Errors
	repo    string         // repo being decoded, "" outside repos:
	lines   map[string]int // key path -> line, for every key present
	sources map[string]scalar
	bad     map[string]bool // paths whose value could not be decoded
	// validating is set once decoding is done: validation errors do not
	// hide missing keys the way decoding errors do.
	validating bool
	secrets    []string
}

func newDecoder(file string, env Environ) *decoder {
	if env == nil {
		env = noEnv
	}
	return &decoder{
		file:    file,
		env:     env,
		vars:    map[string]scalar{},
		lines:   map[string]int{},
		sources: map[string]scalar{},
		bad:     map[string]bool{},
	}
}

func (d *decoder) errorf(line int, path, format string, args ...any) {
	if !d.validating {
		d.bad[path] = true
	}
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...), repo: d.repo})
}

// lineOf returns the line of path's key, or of its closest present parent:
// a missing key is reported where its section starts.
func (d *decoder) lineOf(path string) int {
	for p := path; p != ""; {
		if l, ok := d.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// resolve turns a scalar node into its value, following !env and !var.
func (d *decoder) resolve(n *yaml.Node, path string) (scalar, bool) {
	s := scalar{value: n.Value, tag: n.ShortTag(), line: n.Line}
	switch n.Tag {
	case "!env":
		name := strings.TrimSpace(n.Value)
		if name == "" {
			d.errorf(n.Line, path, "!env needs a variable name")
			return s, false
		}
		v, ok := d.env(name)
		return scalar{value: v, tag: "!!str", line: n.Line, env: name, unset: !ok}, true
	case "!var":
		name := strings.TrimSpace(n.Value)
		v, ok := d.vars[name]
		if !ok {
			d.errorf(n.Line, path, "!var %s: undefined variable (not in vars:)", name)
			return s, false
		}
		v.line = n.Line
		return v, true
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		d.errorf(n.Line, path, "unknown tag %s (only !env and !var are supported)", n.Tag)
		return s, false
	}
	return s, true
}

// readVars fills d.vars from the top-level vars: mapping.
func (d *decoder) readVars(n *yaml.Node) {
	n = deref(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, "vars", "must be a mapping of names to values")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		path := "vars." + k.Value
		switch {
		case v.Kind != yaml.ScalarNode:
			d.errorf(v.Line, path, "variable values must be scalars")
			continue
		case v.Tag == "!var":
			d.errorf(v.Line, path, "!var inside vars: is not allowed")
			continue
		}
		if s, ok := d.resolve(v, path); ok {
			d.vars[k.Value] = s
		}
	}
}

type defaulter interface{ setDefaults() }

// nodeUnmarshaler is implemented by schema types whose YAML form is not a
// plain mapping.
type nodeUnmarshaler interface {
	unmarshalNode(d *decoder, n *yaml.Node, path string)
}

var (
	secretType = reflect.TypeFor[redact.Secret]()
)

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Tag != "!env" && n.Tag != "!var")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode stores n into v. It reports whether v was set; a null node or an
// !env variable that is unset leaves v (and its default) alone.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) bool {
	n = deref(n)
	if isNull(n) {
		return false
	}
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(nodeUnmarshaler); ok {
			u.unmarshalNode(d, n, path)
			return true
		}
	}
	if n.Kind != yaml.ScalarNode && n.Tag != "" && strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		d.errorf(n.Line, path, "%s applies to scalar values only", n.Tag)
		return false
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		if df, ok := elem.Interface().(defaulter); ok {
			df.setDefaults()
		}
		if d.decode(n, elem.Elem(), path) {
			v.Set(elem)
			return true
		}
		return false
	case reflect.Struct:
		return d.decodeStruct(n, v, path)
	case reflect.Map:
		return d.decodeMap(n, v, path)
	case reflect.Slice:
		return d.decodeSlice(n, v, path)
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n.Line, path, "must be %s, not %s", typeName(v.Type()), kindName(n))
		return false
	}
	s, ok := d.resolve(n, path)
	if !ok {
		return false
	}
	if s.env != "" {
		d.sources[path] = s
	}
	if s.unset || (s.env != "" && s.value == "" && v.Kind() != reflect.String) {
		return false
	}
	return d.setScalar(s, v, path)
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list"
	default:
		return "a mapping"
	}
}

func (d *decoder) setScalar(s scalar, v reflect.Value, path string) bool {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s.value)
		if v.Type() == secretType && s.value != "" {
			d.secrets = append(d.secrets, s.value)
		}
	case reflect.Bool:
		switch strings.ToLower(strings.TrimSpace(s.value)) {
		case "true", "yes", "on", "1":
			v.SetBool(true)
		case "false", "no", "off", "0":
			v.SetBool(false)
		default:
			d.errorf(s.line, path, "must be true or false, not %s", shown(s))
			return false
		}
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(strings.TrimSpace(s.value), 10, 64)
		if err != nil || s.tag == "!!float" {
			d.errorf(s.line, path, "must be an integer, not %s", shown(s))
			return false
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s.value), 64)
		if err != nil {
			d.errorf(s.line, path, "must be a number, not %s", shown(s))
			return false
		}
		v.SetFloat(f)
	default:
		d.errorf(s.line, path, "must be %s", typeName(v.Type()))
		return false
	}
	return true
}

// shown describes a bad value for an error message. A value read from the
// environment is not repeated: it may be a secret put in the wrong place.
func shown(s scalar) string {
	if s.env == "" {
		return strconv.Quote(s.value)
	}
	return "the value of environment variable " + s.env
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

func (d *decoder) unknownKey(k *yaml.Node, path string, t reflect.Type) {
	section := ""
	switch t {
	case reflect.TypeFor[Email]():
		section = "email."
	case reflect.TypeFor[Repo]():
		section = "repo."
	case reflect.TypeFor[Config]():
		section = "top."
	}
	if to, ok := legacyKeys[section+k.Value]; ok && section != "" {
		d.errorf(k.Line, join(path, k.Value), "unknown key (older config layout: moved to %s)", to)
		return
	}
	d.errorf(k.Line, join(path, k.Value), "unknown key")
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) bool {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "must be a mapping, not %s", kindName(n))
		return false
	}
	t := v.Type()
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			d.decodeMerge(val, v, path)
			continue
		}
		if k.Kind != yaml.ScalarNode || (strings.HasPrefix(k.Tag, "!") && !strings.HasPrefix(k.Tag, "!!")) {
			d.errorf(k.Line, path, "keys must be plain strings")
			continue
		}
		idx, canonical := fieldIndex(t, k.Value)
		if path == "" && k.Value == "vars" {
			continue // read before decoding, see readVars
		}
		if idx < 0 {
			d.unknownKey(k, path, t)
			continue
		}
		p := join(path, canonical)
		if first, dup := seen[canonical]; dup {
			d.errorf(k.Line, p, "set twice (first on line %d)", first)
			continue
		}
		seen[canonical] = k.Line
		d.lines[p] = k.Line
		d.decode(val, v.Field(idx), p)
	}
	return true
}

// decodeMerge applies a YAML merge key (<<: *anchor) to the same struct.
func (d *decoder) decodeMerge(val *yaml.Node, v reflect.Value, path string) {
	val = deref(val)
	switch val.Kind {
	case yaml.MappingNode:
		d.decodeStruct(val, v, path)
	case yaml.SequenceNode:
		for _, m := range val.Content {
			d.decodeMerge(m, v, path)
		}
	default:
		d.errorf(val.Line, path, "<< must merge a mapping")
	}
}

// fieldIndex finds the struct field for a YAML key, by its yaml tag or its
// alias tag, and returns the canonical key.
func fieldIndex(t reflect.Type, key string) (int, string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if name == key || (f.Tag.Get("alias") != "" && f.Tag.Get("alias") == key) {
			return i, name
		}
	}
	return -1, ""
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) bool {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "must be a mapping, not %s", kindName(n))
		return false
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	elemType := v.Type().Elem()
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (strings.HasPrefix(k.Tag, "!") && !strings.HasPrefix(k.Tag, "!!")) || k.ShortTag() == "!!merge" {
			d.errorf(k.Line, path, "keys must be plain strings")
			continue
		}
		p := join(path, k.Value)
		if _, dup := d.lines[p]; dup {
			d.errorf(k.Line, p, "set twice (first on line %d)", d.lines[p])
			continue
		}
		d.lines[p] = k.Line
		if path == "repos" {
			d.repo = k.Value
		}
		elem := reflect.New(elemType)
		if df, ok := elem.Interface().(defaulter); ok {
			df.setDefaults()
		}
		set := d.decode(val, elem.Elem(), p)
		if path == "repos" {
			d.repo = ""
		}
		if elemType.Kind() == reflect.Pointer && elem.Elem().IsNil() {
			if path == "repos" {
				d.repo = k.Value
			}
			if isNull(deref(val)) {
				d.errorf(k.Line, p, "must be a mapping, not empty")
			}
			d.repo = ""
			continue
		}
		if !set && elemType.Kind() != reflect.Struct {
			continue // a scalar whose !env is unset: leave the entry out
		}
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem.Elem())
	}
	return true
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) bool {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, path, "must be a list, not %s", kindName(n))
		return false
	}
	out := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, item := range n.Content {
		elem := reflect.New(v.Type().Elem())
		p := fmt.Sprintf("%s[%d]", path, i)
		d.lines[p] = item.Line
		if !d.decode(item, elem.Elem(), p) && v.Type().Elem().Kind() == reflect.String {
			if s, ok := d.sources[p]; ok && s.unset {
				continue // an unset !env item is left out, like the reference
			}
		}
		out = reflect.Append(out, elem.Elem())
	}
	v.Set(out)
	return true
}

// unmarshalNode reads one authorization rule: a mapping with exactly one of
// workspace_members, user_group, user_id.
func (r *SlackRule) unmarshalNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		d.errorf(n.Line, path, "must be a mapping with exactly one key: workspace_members, user_group or user_id")
		return
	}
	d.decodeStruct(n, reflect.ValueOf(r).Elem(), path)
}

// unmarshalNode accepts {name, value} or a bare value.
func (f *SigningField) unmarshalNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode {
		d.decode(n, reflect.ValueOf(&f.Value).Elem(), path+".value")
		return
	}
	d.decodeStruct(n, reflect.ValueOf(f).Elem(), path)
}

// unmarshalNode accepts one address or a list of them.
func (r *Recipients) unmarshalNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode {
		var s string
		if d.decode(n, reflect.ValueOf(&s).Elem(), path) && s != "" {
			*r = Recipients{s}
		}
		return
	}
	var list []string
	d.decodeSlice(n, reflect.ValueOf(&list).Elem(), path)
	*r = list
}
