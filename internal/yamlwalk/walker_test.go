package yamlwalk

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// schema is a test schema with one field of each kind Decode handles.
type schema struct {
	Name    string            `yaml:"name"`
	Count   int               `yaml:"count"`
	Small   uint8             `yaml:"small"`
	Ratio   float64           `yaml:"ratio"`
	On      bool              `yaml:"on"`
	Tags    []string          `yaml:"tags"`
	Labels  map[string]string `yaml:"labels"`
	Inner   *inner            `yaml:"inner"`
	Items   []inner           `yaml:"items"`
	ByName  map[string]*inner `yaml:"by_name"`
	Secret  password          `yaml:"secret"`
	To      oneOrMany         `yaml:"to"`
	Renamed string            `yaml:"new_name" alias:"old_name"`
	Tree    *tree             `yaml:"tree"`
	//lint:ignore U1000 an unexported field is never a key, tag or not
	skipped string `yaml:"skipped"`
	NoTag   string
}

type inner struct {
	Host string `yaml:"host,required"`
	Port int    `yaml:"port"`
}

func (i *inner) SetDefaults() { i.Port = 443 }

type password string

// oneOrMany is "a value or a list of values", like config's Recipients.
type oneOrMany []string

func (o *oneOrMany) UnmarshalYAMLNode(n Node) {
	if n.YAML().Kind == 8 { // yaml.ScalarNode
		var s string
		if n.Decode(&s) {
			*o = oneOrMany{s}
		}
		return
	}
	var list []string
	n.Decode(&list)
	*o = list
}

// tree is recursive, so a self-referencing alias could walk forever.
type tree struct {
	Kids []tree `yaml:"kids"`
}

var testEnv = map[string]string{"HOST": "env.example", "EMPTY": "", "NUM": "42", "WORD": "abc", "PW": "hunter2-secret"}

func lookup(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

var allTags = Options{Env: lookup, VarsKey: "vars", MergeKeys: true, ListKeys: true}

// decodeString decodes src into a new schema and returns it with the
// errors, one string each.
func decodeString(t *testing.T, src string, opt Options) (*schema, *Walker, []string) {
	t.Helper()
	root, err := Parse("f.yaml", []byte(src))
	if err != nil {
		return nil, nil, strings.Split(err.Error(), "\n")
	}
	w := New("f.yaml", opt)
	var s schema
	w.Root(root).Decode(&s)
	return &s, w, errorStrings(w.Errors())
}

func errorStrings(es Errors) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Error())
	}
	return out
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opt  Options
		want []string
	}{
		// Wrong kinds: never iterated, never coerced.
		{"string where a list belongs", "tags: a,b", allTags, []string{"f.yaml:1: tags: must be a list, got string"}},
		{"list where a string belongs", "name: [a]", allTags, []string{"f.yaml:1: name: must be a string, got list"}},
		{"mapping where a string belongs", "name: {a: 1}", allTags, []string{"f.yaml:1: name: must be a string, got mapping"}},
		{"list where a mapping belongs", "labels: [a]", allTags, []string{"f.yaml:1: labels: must be a mapping, got list"}},
		{"string where a struct belongs", "inner: x", allTags, []string{"f.yaml:1: inner: must be a mapping, got string"}},
		{"number where a list belongs", "tags: 3", allTags, []string{"f.yaml:1: tags: must be a list, got integer"}},
		{"block list on the next line", "labels:\n  - a\n", allTags, []string{"f.yaml:2: labels: must be a mapping, got list"}},
		{"root not a mapping", "- a\n", allTags, []string{"f.yaml:1: must be a mapping, got list"}},
		{"bad bool", "on: maybe", allTags, []string{`f.yaml:1: on: must be true or false, not "maybe"`}},
		{"bad int", "count: many", allTags, []string{`f.yaml:1: count: must be an integer, not "many"`}},
		{"float for an int", "count: 1.5", allTags, []string{`f.yaml:1: count: must be an integer, not "1.5"`}},
		{"negative for a uint", "small: -1", allTags, []string{`f.yaml:1: small: must be a non-negative integer, not "-1"`}},
		{"overflow", "small: 300", allTags, []string{`f.yaml:1: small: must be a non-negative integer, not "300"`}},
		{"bad float", "ratio: lots", allTags, []string{`f.yaml:1: ratio: must be a number, not "lots"`}},
		{"null pointer map entry", "by_name:\n  a:\n", allTags, []string{"f.yaml:2: by_name.a: must be a mapping, got null"}},
		{"null list item for a struct", "items: [{host: a}, ~]", allTags, []string{"f.yaml:1: items[1]: must be a mapping, got null"}},
		{"null list item for a string is kept", "tags: [a, ~]", allTags, nil},

		// Keys.
		{"unknown key", "inner:\n  host: a\n  hots: b\n", allTags, []string{"f.yaml:3: inner.hots: unknown key (expected one of: host, port)"}},
		{"unknown top key lists vars", "nmae: x", allTags, []string{"f.yaml:1: nmae: unknown key (expected one of: name, count, small, ratio, on, tags, labels, inner, items, by_name, secret, to, new_name, tree, vars)"}},
		{"untagged or unexported field is not a key", "NoTag: x\nskipped: y", Options{}, []string{
			"f.yaml:1: NoTag: unknown key",
			"f.yaml:2: skipped: unknown key",
		}},
		{"required key", "inner:\n  port: 1\n", allTags, []string{"f.yaml:2: inner.host: required"}},
		{"required key in flow mapping", "inner: {}", allTags, []string{"f.yaml:1: inner.host: required"}},
		{"duplicate key", "name: a\ncount: 1\nname: b\n", allTags, []string{"f.yaml:3: name: duplicate key (first at line 1)"}},
		{"duplicate map key", "labels:\n  a: 1\n  a: 2\n", allTags, []string{"f.yaml:3: labels.a: duplicate key (first at line 2)"}},
		{"duplicate through alias tag", "old_name: a\nnew_name: b\n", allTags, []string{"f.yaml:2: new_name: duplicate key (first at line 1)"}},
		{"list key", "[a]: 1", allTags, []string{"f.yaml:1: keys must be strings, got list"}},
		{"null key", "labels: {~: 1}", allTags, []string{"f.yaml:1: labels: keys must be strings, got null"}},
		{"tagged key", "!env X: 1", allTags, []string{"f.yaml:1: keys must be strings, got value tagged !env"}},
		{"unknown key without the list", "base: &b {host: a}\n", Options{}, []string{"f.yaml:1: base: unknown key"}},
		{"merge key refused", "x: &b {host: a}\ninner:\n  <<: *b\n", Options{UnknownKey: func(reflect.Type, string) string { return "ignored" }}, []string{
			"f.yaml:1: x: unknown key (ignored)",
			"f.yaml:3: inner.<<: merge keys are not supported; write the keys out",
			"f.yaml:3: inner.host: required",
		}},
		{"merge of a scalar", "inner:\n  <<: x\n  host: a\n", allTags, []string{"f.yaml:2: inner.<<: << must merge a mapping or a list of mappings, got string"}},
		{"merge into a free map", "labels:\n  <<: {a: b}\n", allTags, []string{"f.yaml:2: labels.<<: merge keys are not supported here; write the keys out"}},
		{"unknown key in a merged mapping", "items:\n  - &i {host: a, hots: b}\ninner:\n  <<: *i\n", allTags, []string{
			"f.yaml:2: inner.hots: unknown key (expected one of: host, port)",
			"f.yaml:2: items[0].hots: unknown key (expected one of: host, port)",
		}},

		// Tags.
		{"!env unset, not required", "name: !env NOPE", allTags, nil},
		{"!env unset, required", "name: !env NOPE", Options{Env: lookup, RequireEnv: true}, []string{"f.yaml:1: name: environment variable NOPE is not set"}},
		{"!env without a name", "name: !env", allTags, []string{"f.yaml:1: name: !env needs a variable name"}},
		{"!env on a list", "tags: !env [a]", allTags, []string{"f.yaml:1: tags: !env applies to scalar values only"}},
		{"!env on a list for a string", "name: !env [a]", allTags, []string{"f.yaml:1: name: !env applies to scalar values only"}},
		{"!env where a list belongs", "tags: !env HOST", allTags, []string{"f.yaml:1: tags: must be a list, got value tagged !env"}},
		{"!env value of the wrong type", "count: !env WORD", allTags, []string{"f.yaml:1: count: must be an integer, not the value of environment variable WORD"}},
		{"!var undefined", "vars: {a: 1}\nname: !var b", allTags, []string{"f.yaml:2: name: !var b: undefined variable (not in vars:)"}},
		{"!var inside vars", "vars: {a: 1, b: !var a}", allTags, []string{"f.yaml:1: vars.b: !var inside vars: is not allowed"}},
		{"vars not scalars", "vars:\n  a: [1]\n", allTags, []string{"f.yaml:2: vars.a: variable values must be scalars"}},
		{"vars not a mapping", "vars: [a]", allTags, []string{"f.yaml:1: vars: must be a mapping of names to values, got list"}},
		{"vars twice", "vars: {a: 1}\nvars: {b: 2}\n", allTags, []string{"f.yaml:2: vars: duplicate key (first at line 1)"}},
		{"!var with vars off", "name: !var a", Options{Env: lookup}, []string{"f.yaml:1: name: unknown tag !var (only !env is supported)"}},
		{"unknown tag", "name: !custom a", allTags, []string{"f.yaml:1: name: unknown tag !custom (only !env and !var are supported)"}},
		{"tag in a file without tags", "name: !env HOST", Options{}, []string{"f.yaml:1: name: must be a string, got value tagged !env"}},
		{"unknown tag on a mapping", "inner: !x {host: a}", allTags, []string{"f.yaml:1: inner: unknown tag !x (only !env and !var are supported)"}},
		{"standard tag that is not a scalar type", "name: !!binary aGk=", allTags, nil},

		// Nested paths and lines.
		{"nested list item", "items:\n  - host: a\n  - port: x\n    host: b\n  - {}\n", allTags, []string{
			`f.yaml:3: items[1].port: must be an integer, not "x"`,
			"f.yaml:5: items[2].host: required",
		}},
		{"map of pointers", "by_name:\n  a.b:\n    host: [x]\n", allTags, []string{"f.yaml:3: by_name.a.b.host: must be a string, got list"}},
		{"every error, in file order", "count: x\ntags: y\ninner: {port: z}\nbogus: 1\n", allTags, []string{
			`f.yaml:1: count: must be an integer, not "x"`,
			"f.yaml:2: tags: must be a list, got string",
			"f.yaml:3: inner.host: required",
			`f.yaml:3: inner.port: must be an integer, not "z"`,
			"f.yaml:4: bogus: unknown key (expected one of: name, count, small, ratio, on, tags, labels, inner, items, by_name, secret, to, new_name, tree, vars)",
		}},

		// Aliases.
		{"error inside an alias carries the use's path", "items:\n  - &i {host: a, port: x}\n  - *i\n", allTags, []string{
			`f.yaml:2: items[0].port: must be an integer, not "x"`,
			`f.yaml:2: items[1].port: must be an integer, not "x"`,
		}},
		{"unknown anchor", "name: *nope", allTags, []string{"f.yaml: YAML syntax error: unknown anchor 'nope' referenced"}},
		{"self-referencing alias", "tree: &t {kids: [*t]}", allTags, []string{"f.yaml:1: nested more than 100 levels deep (a self-referencing alias?)"}},

		// The document.
		{"syntax error", "a: [\nb: 1\n", allTags, []string{"f.yaml:2: YAML syntax error: did not find expected ',' or ']'"}},
		{"two documents", "name: a\n---\nname: b\n", allTags, []string{"f.yaml:2: only one YAML document is allowed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, got := decodeString(t, tc.src, tc.opt)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBillionLaughs(t *testing.T) {
	// Nine levels of nine aliases: 9^9 nodes if expanded.
	var b strings.Builder
	b.WriteString("tree:\n  kids:\n")
	b.WriteString("    - &l0 {kids: []}\n")
	for i := 1; i <= 9; i++ {
		b.WriteString("    - &l" + string(rune('0'+i)) + " {kids: [")
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*l" + string(rune('0'+i-1)))
		}
		b.WriteString("]}\n")
	}
	_, w, got := decodeString(t, b.String(), allTags)
	if len(got) != 1 || !strings.Contains(got[0], "aliases expand to more than") {
		t.Fatalf("errors = %q; want one about aliases", got)
	}
	if es := w.Errors(); es[0].Path != nil {
		t.Errorf("budget error has path %v; want none, so the whole file fails", es[0].Path)
	}
	if w.visits > w.budget+1 {
		t.Errorf("walk went on after the budget: %d visits, budget %d", w.visits, w.budget)
	}
}

func TestDecodeValues(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opt  Options
		want schema
	}{
		{"empty file", "", allTags, schema{}},
		{"only comments", "# nothing\n", allTags, schema{}},
		{"nulls keep defaults", "name: ~\ncount:\ninner:\ntags: null\n", allTags, schema{}},
		{"scalars", "name: app\ncount: -3\nsmall: 255\nratio: 2.5\non: true\n", allTags,
			schema{Name: "app", Count: -3, Small: 255, Ratio: 2.5, On: true}},
		{"any scalar is a string", "name: 1234", allTags, schema{Name: "1234"}},
		{"quoted number is a number", `count: "12"`, allTags, schema{Count: 12}},
		{"bool spellings", "on: yes", allTags, schema{On: true}},
		{"bool from string", `on: "off"`, allTags, schema{}},
		{"defaults of new values", "inner: {host: a}\nitems: [{host: b, port: 80}]\nby_name: {x: {host: c}}\n", allTags,
			schema{Inner: &inner{Host: "a", Port: 443}, Items: []inner{{Host: "b", Port: 80}}, ByName: map[string]*inner{"x": {Host: "c", Port: 443}}}},
		{"empty list and map are set", "tags: []\nlabels: {}\n", allTags, schema{Tags: []string{}, Labels: map[string]string{}}},
		{"alias tag", "old_name: x", allTags, schema{Renamed: "x"}},
		{"unmarshaler scalar", "to: a@example.org", allTags, schema{To: oneOrMany{"a@example.org"}}},
		{"unmarshaler list", "to: [a, b]", allTags, schema{To: oneOrMany{"a", "b"}}},
		{"!env", "name: !env HOST\ncount: !env NUM\n", allTags, schema{Name: "env.example", Count: 42}},
		{"!env set but empty: a string is empty, an int keeps its default", "name: !env EMPTY\ncount: !env EMPTY\n", allTags, schema{}},
		{"unset !env items and entries are left out", "tags: [a, !env NOPE, b]\nlabels: {x: !env NOPE, y: z}\n", allTags,
			schema{Tags: []string{"a", "b"}, Labels: map[string]string{"y": "z"}}},
		{"!var, also of !env", "vars:\n  h: !env HOST\n  n: 7\nname: !var h\ncount: !var n\n", allTags, schema{Name: "env.example", Count: 7}},
		{"anchors and aliases", "inner: &i {host: a}\nitems: [*i, *i]\n", allTags,
			schema{Inner: &inner{Host: "a", Port: 443}, Items: []inner{{Host: "a", Port: 443}, {Host: "a", Port: 443}}}},
		{"merge key: explicit keys win, wherever written", "items:\n  - &d {host: a, port: 1}\ninner:\n  host: b\n  <<: *d\n", allTags,
			schema{Items: []inner{{Host: "a", Port: 1}}, Inner: &inner{Host: "b", Port: 1}}},
		{"merge list: earlier mappings win", "items:\n  - &a {host: a}\n  - &b {host: b, port: 2}\ninner:\n  <<: [*a, *b]\n", allTags,
			schema{Items: []inner{{Host: "a", Port: 443}, {Host: "b", Port: 2}}, Inner: &inner{Host: "a", Port: 2}}},
		{"recursive schema", "tree: {kids: [{kids: [{}]}]}", allTags, schema{Tree: &tree{Kids: []tree{{Kids: []tree{{}}}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, errs := decodeString(t, tc.src, tc.opt)
			if errs != nil {
				t.Fatalf("errors: %q", errs)
			}
			if diff := cmp.Diff(tc.want, *got, cmp.AllowUnexported(schema{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestWalkerQueries(t *testing.T) {
	src := `name: !env NOPE
vars:
  pw: !env PW
inner:
  port: 1
items:
  - host: a
  - host: [b]
by_name:
  x:
    host: c
secret: !var pw
labels: {a: !env HOST}
`
	opt := allTags
	opt.Secret = func(t reflect.Type) bool { return t == reflect.TypeFor[password]() }
	_, w, _ := decodeString(t, src, opt)
	var root Path
	lineTests := []struct {
		path Path
		want int
	}{
		{root.Key("name"), 1},
		{root.Key("inner"), 4},
		{root.Key("inner", "port"), 5},
		{root.Key("inner", "host"), 4},              // missing: its section's key
		{root.Key("items").Index(1).Key("host"), 8}, // a list item's key
		{root.Key("items").Index(2), 6},             // missing item: the list's key
		{root.Key("by_name", "x", "host"), 11},
		{root.Key("by_name", "y", "host"), 9}, // missing entry: the map's key
		{root.Key("nothing", "at", "all"), 1}, // the document's first line
		{root.Key("vars", "pw"), 3},
	}
	for _, tc := range lineTests {
		if got := w.Line(tc.path); got != tc.want {
			t.Errorf("Line(%s) = %d; want %d", tc.path, got, tc.want)
		}
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Has present", w.Has(root.Key("inner", "port")), true},
		{"Has missing", w.Has(root.Key("inner", "host")), false},
		{"Failed at the error", w.Failed(root.Key("items").Index(1).Key("host")), true},
		{"Failed below the error", w.Failed(root.Key("items").Index(1).Key("host", "deeper")), true},
		{"not Failed beside it", w.Failed(root.Key("items").Index(0).Key("host")), false},
		{"not Failed above it", w.Failed(root.Key("items")), false},
		{"Source of an unset !env", must(w.Source(root.Key("name"))), Scalar{Tag: "!!str", Line: 1, Env: "NOPE", Unset: true}},
		{"Source through !var", must(w.Source(root.Key("secret"))), Scalar{Value: "hunter2-secret", Tag: "!!str", Line: 12, Env: "PW"}},
		{"no Source for a literal", ok(w.Source(root.Key("by_name", "x", "host"))), false},
		{"Secrets", w.Secrets(), []string{"hunter2-secret"}},
		{"EnvValues", sorted(w.EnvValues()), []string{"env.example", "hunter2-secret", "hunter2-secret"}},
		{"ErrorCount", w.ErrorCount(), 2},
		{"File", w.File(), "f.yaml"},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

func must(s Scalar, _ bool) Scalar { return s }
func ok(_ Scalar, ok bool) bool    { return ok }

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestNodeAPI covers the calls a hand-written schema (the allowlist's)
// makes.
func TestNodeAPI(t *testing.T) {
	src := `hosts: [a.example, 8080, [x], !env HOST]
mode: strict
extra: 1
hosts2: a
`
	root, err := Parse("n.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	w := New("n.yaml", Options{ListKeys: true})
	var hosts []string
	var mode string
	w.Root(root).Fields("a mapping", []string{"hosts", "mode", "hosts2"}, func(name string, v Node) {
		switch name {
		case "hosts", "hosts2":
			for _, item := range v.List("a list of host names") {
				if s, ok := item.String("a string"); ok {
					hosts = append(hosts, s)
				}
			}
		case "mode":
			mode, _ = v.String("a mode")
		}
	})
	want := []string{
		"n.yaml:1: hosts[1]: must be a string, got integer",
		"n.yaml:1: hosts[2]: must be a string, got list",
		"n.yaml:1: hosts[3]: must be a string, got value tagged !env",
		"n.yaml:3: extra: unknown key (expected one of: hosts, mode, hosts2)",
		"n.yaml:4: hosts2: must be a list of host names, got string",
	}
	if diff := cmp.Diff(want, errorStrings(w.Errors())); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if !slicesEqual(hosts, []string{"a.example"}) || mode != "strict" {
		t.Errorf("hosts, mode = %q, %q", hosts, mode)
	}
}

func slicesEqual(a, b []string) bool { return cmp.Equal(a, b) }

func TestErrorFormats(t *testing.T) {
	var root Path
	p := root.Key("repos", "app.v2").Key("email").Index(3).Key("server")
	if got, want := p.String(), "repos.app.v2.email[3].server"; got != want {
		t.Errorf("String = %q; want %q", got, want)
	}
	tests := []struct {
		name string
		err  *Error
		text string
		json string
	}{
		{"full", &Error{File: "airut.yaml", Line: 42, Path: root.Key("repos", "app", "email", "imap", "server"), Message: "required"},
			"airut.yaml:42: repos.app.email.imap.server: required",
			`{"file":"airut.yaml","line":42,"key":"repos.app.email.imap.server","path":["repos","app","email","imap","server"],"message":"required"}`},
		{"index and dotted key", &Error{File: "a.yaml", Line: 3, Path: p, Message: "bad"},
			"a.yaml:3: repos.app.v2.email[3].server: bad",
			`{"file":"a.yaml","line":3,"key":"repos.app.v2.email[3].server","path":["repos","app.v2","email",3,"server"],"message":"bad"}`},
		{"no line", &Error{File: "a.yaml", Path: root.Key("repos"), Message: "bad"}, "a.yaml: repos: bad",
			`{"file":"a.yaml","line":0,"key":"repos","path":["repos"],"message":"bad"}`},
		{"no key", &Error{File: "a.yaml", Line: 3, Message: "YAML syntax error: x"}, "a.yaml:3: YAML syntax error: x",
			`{"file":"a.yaml","line":3,"key":"","path":[],"message":"YAML syntax error: x"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.text {
				t.Errorf("Error() = %q; want %q", got, tc.text)
			}
			got, err := json.Marshal(tc.err)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.json {
				t.Errorf("JSON = %s; want %s", got, tc.json)
			}
		})
	}

	es := Errors{
		{File: "f", Line: 5, Path: root.Key("b"), Message: "x"},
		{File: "f", Line: 2, Path: root.Key("z"), Message: "y"},
		{File: "f", Line: 5, Path: root.Key("a"), Message: "z"},
	}
	if got, want := es.Sorted().Error(), "f:2: z: y\nf:5: a: z\nf:5: b: x"; got != want {
		t.Errorf("Sorted = %q; want %q", got, want)
	}
	if es[0].Line != 5 {
		t.Error("Sorted changed its receiver")
	}
	if Errors(nil).Err() != nil {
		t.Error("Errors(nil).Err() != nil")
	}
	var target Errors
	if err := es.Err(); !errors.As(err, &target) || len(target) != 3 {
		t.Errorf("Err() = %v; want the Errors back", err)
	}
}

func TestPathDoesNotAlias(t *testing.T) {
	base := Path{}.Key("a", "b")
	x := base.Key("x")
	y := base.Key("y")
	if x.String() != "a.b.x" || y.String() != "a.b.y" || base.String() != "a.b" {
		t.Errorf("paths share storage: %s %s %s", x, y, base)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		wantNil  bool
		wantErrs string
	}{
		{"empty", "", true, ""},
		{"comments", "# a\n# b\n", true, ""},
		{"leading document marker", "---\na: 1\n", false, ""},
		{"null document", "~\n", false, ""},
		{"syntax error", "a: 1\nb: c: d\n", true, "p.yaml:2: YAML syntax error: mapping values are not allowed in this context"},
		// yaml.v3 gives no line for some errors on the first line.
		{"syntax error without a line", "a: b: c\n", true, "p.yaml: YAML syntax error: mapping values are not allowed in this context"},
		{"second document", "a: 1\n--- \nb: 2\n", true, "p.yaml:2: only one YAML document is allowed"},
		{"bad second document", "a: 1\n---\n[\n", true, "p.yaml:3: YAML syntax error: did not find expected node content"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, err := Parse("p.yaml", []byte(tc.src))
			got := ""
			if err != nil {
				got = err.Error()
				var es Errors
				if !errors.As(err, &es) || len(es) != 1 {
					t.Errorf("error %T is not one Errors entry", err)
				}
			}
			if got != tc.wantErrs {
				t.Errorf("error = %q; want %q", got, tc.wantErrs)
			}
			if (root == nil) != tc.wantNil {
				t.Errorf("root = %v; want nil: %v", root, tc.wantNil)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"name: a\nitems: [{host: a}]\n", "tree: &t {kids: [*t, *t]}", "vars: {a: !env HOST}\nname: !var a\n",
		"inner: {<<: [{host: a}], port: 1}", "a: &a [*a]\n", "by_name: {x: ~}", "- [[[]]]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		root, err := Parse("f.yaml", []byte(src))
		if err != nil {
			return
		}
		w := New("f.yaml", allTags)
		var s schema
		w.Root(root).Decode(&s)
		if w.visits > w.budget+1 {
			t.Errorf("%d visits over a budget of %d", w.visits, w.budget)
		}
		for _, e := range w.Errors() {
			if e.File != "f.yaml" || e.Message == "" || strings.Contains(e.Message, "\n") {
				t.Errorf("malformed error %q", e)
			}
		}
	})
}
