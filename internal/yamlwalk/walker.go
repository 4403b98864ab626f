// Package yamlwalk walks a YAML document against a schema and reports every
// problem it finds as an Error located by file, line and key path:
// "airut.yaml:42: repos.app.email.imap.server: required".
//
// It is the one decoder under Airut's config files (airut.yaml,
// .airut/network-allowlist.yaml, .airut/sandbox.yaml). A schema is either a
// Go struct with yaml tags, read by Node.Decode, or a few calls on Node
// (Fields, Map, List, String) where a file needs its own rules. Either
// way:
//
//   - every node's key path and line are known (Walker.Line), also for
//     keys that are missing, which are placed where their section starts;
//   - !env NAME and !var NAME are resolved in one place (Node.Scalar),
//     only where Options enable them, and their origin is kept
//     (Walker.Source) so messages can name the variable and never repeat
//     its value;
//   - unknown, duplicate and non-string keys are errors; so are merge keys
//     ("<<") unless Options.MergeKeys;
//   - a value of the wrong kind is an error ("must be a list, got string"):
//     a string is never iterated as if it were a list;
//   - every error is collected, not just the first (Walker.Errors).
//
// Anchors and aliases are allowed: an alias reads as the node it refers
// to, errors inside it carry the path where it is used. Expanding aliases
// is bounded (a "billion laughs" or a self-referencing alias is one
// error, not a hang), see maxVisits.
package yamlwalk

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options say which tags and forms a file accepts. The zero value accepts
// no tags and no merge keys.
type Options struct {
	// Env resolves "!env NAME"; nil means the file has no !env tag.
	Env func(name string) (string, bool)
	// RequireEnv makes an !env of an unset variable an error where it is
	// read. Without it the value is left out (the field keeps its default)
	// and Walker.Source lets the schema decide, e.g. name the variable in
	// a "required" message.
	RequireEnv bool
	// VarsKey names the top-level mapping whose scalars "!var NAME" refers
	// to ("vars" in airut.yaml); "" means the file has no !var tag. The
	// mapping is read before the rest of the document; its values may use
	// !env but not !var.
	VarsKey string
	// MergeKeys accepts YAML merge keys ("<<: *anchor") in schema
	// mappings. Keys written out win over merged ones, as YAML says.
	MergeKeys bool
	// UnknownKey may give a hint for an unknown key of struct type t (t is
	// nil for Node.Fields), e.g. where an older layout moved it. "" falls
	// back to listing the expected keys.
	UnknownKey func(t reflect.Type, key string) string
	// Secret reports whether string values decoded into type t are
	// secrets; they are collected in Walker.Secrets.
	Secret func(t reflect.Type) bool
}

// Scalar is a scalar's value after !env and !var are resolved.
type Scalar struct {
	Value string
	Tag   string // YAML short tag of the value: !!str, !!int, !!bool, !!float, !!null…
	Line  int    // where it is used (for !var, the !var, not the definition)
	Env   string // the environment variable it came from, "" if none
	Unset bool   // Env names a variable that is not set; Value is ""
}

// Walker walks one document and collects its errors. Create one with New
// per file and walk it from Root.
type Walker struct {
	file string
	opt  Options
	vars map[string]Scalar

	errs    Errors
	nodes   map[string]lines // by Path.id, every node visited
	sources map[string]Scalar
	failed  map[string]bool
	secrets []string

	visits, budget int
	exhausted      bool
}

type lines struct{ key, value int }

// New returns a Walker for the file named file (used in errors).
func New(file string, opt Options) *Walker {
	return &Walker{
		file:    file,
		opt:     opt,
		vars:    map[string]Scalar{},
		nodes:   map[string]lines{},
		sources: map[string]Scalar{},
		failed:  map[string]bool{},
	}
}

// Root returns the document's root node (nil, as Parse returns for an
// empty file, reads as null) and reads Options.VarsKey.
func (w *Walker) Root(root *yaml.Node) Node {
	w.budget = maxVisits(root)
	n := Node{w: w, y: deref(root)}
	if root != nil {
		w.nodes[Path{}.id()] = lines{root.Line, root.Line}
	}
	if w.opt.VarsKey != "" {
		w.readVars(n)
	}
	return n
}

// maxDepth bounds how deep a walk may go. No schema comes close; an alias
// to an enclosing node would otherwise go on until the budget is spent,
// on ever longer paths.
const maxDepth = 100

// maxVisits bounds how many nodes a walk may visit: every node of the file
// a few times over, plus room for ordinary anchors. Aliases can make a
// small file describe an exponential (or, through a self-reference,
// infinite) tree; such a file is refused instead.
func maxVisits(root *yaml.Node) int {
	count := 0
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil {
			return
		}
		count++
		for _, c := range n.Content { // an alias's target is counted where it is defined
			walk(c)
		}
	}
	walk(root)
	return 10_000 + 10*count
}

// Errors returns every error found so far, in file order.
func (w *Walker) Errors() Errors { return w.errs.Sorted() }

// ErrorCount is how many errors were found so far: a schema can tell
// whether a part it just read was clean.
func (w *Walker) ErrorCount() int { return len(w.errs) }

// Secrets returns the non-empty values decoded into secret types
// (Options.Secret), in the order read.
func (w *Walker) Secrets() []string { return w.secrets }

// EnvValues returns every value read from the environment, so a caller
// can keep them out of its own messages.
func (w *Walker) EnvValues() []string {
	out := make([]string, 0, len(w.sources))
	for _, s := range w.sources {
		if s.Value != "" {
			out = append(out, s.Value)
		}
	}
	return out
}

// File is the file name errors carry.
func (w *Walker) File() string { return w.file }

// Report records a problem found after the walk (a validation rule) at
// line and path. Unlike Node.Errorf it does not mark path as failed.
func (w *Walker) Report(line int, path Path, format string, args ...any) {
	if w.exhausted {
		return // what follows a cut-short walk is noise
	}
	w.errs = append(w.errs, &Error{File: w.file, Line: line, Path: path, Message: fmt.Sprintf(format, args...)})
}

func (w *Walker) errorf(line int, path Path, format string, args ...any) {
	w.failed[path.id()] = true
	w.Report(line, path, format, args...)
}

// Line returns the line of path's key. For a path that is not in the file
// it returns where the closest enclosing section that is starts, which is
// where the missing key belongs.
func (w *Walker) Line(path Path) int {
	if l, ok := w.nodes[path.id()]; ok {
		return l.key
	}
	for i := len(path) - 1; i >= 0; i-- {
		if l, ok := w.nodes[path[:i].id()]; ok {
			return l.value
		}
	}
	return 0
}

// Has reports whether path is in the file (its key was read).
func (w *Walker) Has(path Path) bool {
	_, ok := w.nodes[path.id()]
	return ok
}

// Failed reports whether reading path, or a section containing it, gave
// an error: a broken section need not also have each key reported
// missing.
func (w *Walker) Failed(path Path) bool {
	for i := len(path); i >= 0; i-- {
		if w.failed[path[:i].id()] {
			return true
		}
	}
	return false
}

// Source returns the scalar at path if it came from an environment
// variable (directly or through !var).
func (w *Walker) Source(path Path) (Scalar, bool) {
	s, ok := w.sources[path.id()]
	return s, ok
}

// tagNames lists the tags the file accepts, for "unknown tag" messages.
func (w *Walker) tagNames() []string {
	var tags []string
	if w.opt.Env != nil {
		tags = append(tags, "!env")
	}
	if w.opt.VarsKey != "" {
		tags = append(tags, "!var")
	}
	return tags
}

func (w *Walker) tagEnabled(tag string) bool {
	return tag == "!env" && w.opt.Env != nil || tag == "!var" && w.opt.VarsKey != ""
}

// child returns the node for a mapping value or list item, recording its
// lines. It returns false once the walk has visited too many nodes.
func (w *Walker) child(path Path, key, val *yaml.Node) (Node, bool) {
	if w.exhausted {
		return Node{}, false
	}
	w.visits++
	// No path on these errors: such a file fails as a whole, rather than
	// leave the sections after this one silently empty.
	switch {
	case w.visits > w.budget:
		w.Report(val.Line, nil, "aliases expand to more than %d nodes; write the file out or use fewer aliases", w.budget)
		w.exhausted = true
		return Node{}, false
	case len(path) > maxDepth:
		w.Report(val.Line, nil, "nested more than %d levels deep (a self-referencing alias?)", maxDepth)
		w.exhausted = true
		return Node{}, false
	}
	l := lines{val.Line, val.Line}
	if key != nil {
		l.key = key.Line
	}
	w.nodes[path.id()] = l
	return Node{w: w, y: deref(val), path: path}, true
}

func deref(n *yaml.Node) *yaml.Node {
	// yaml.v3 does not make an alias point at an alias, but be safe.
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isCustomTag(tag string) bool {
	return strings.HasPrefix(tag, "!") && !strings.HasPrefix(tag, "!!")
}

// Node is one node of the document with its key path. The zero Node is
// absent and reads as null.
type Node struct {
	w    *Walker
	y    *yaml.Node // aliases followed; nil when absent
	path Path
}

// Path is the node's key path.
func (n Node) Path() Path { return n.path }

// YAML is the node itself (aliases followed), nil when absent.
func (n Node) YAML() *yaml.Node { return n.y }

// Walker is the walker the node belongs to.
func (n Node) Walker() *Walker { return n.w }

// Line is the node's line; for an absent node, where it belongs.
func (n Node) Line() int {
	if n.y != nil && n.y.Line > 0 {
		return n.y.Line
	}
	if n.w == nil {
		return 0
	}
	return n.w.Line(n.path)
}

// Under returns the same YAML node at path+key: a scalar written as
// shorthand for a mapping's one field is read as that field.
func (n Node) Under(key string) Node {
	n.path = n.path.Key(key)
	return n
}

// IsNull reports whether the node is absent or a plain null (~, null, or
// nothing after the colon). A tagged value (!env X) is not null.
func (n Node) IsNull() bool {
	return n.y == nil || n.y.Kind == yaml.ScalarNode && n.y.ShortTag() == "!!null"
}

// Errorf records a problem with this node, at its line and path, and
// marks the path as failed (see Walker.Failed).
func (n Node) Errorf(format string, args ...any) {
	n.w.errorf(n.Line(), n.path, format, args...)
}

// Describe names the node's kind for "got …" messages: mapping, list,
// string, integer, boolean, number, null, or "value tagged !x".
func (n Node) Describe() string { return describe(n.y) }

func describe(y *yaml.Node) string {
	if y == nil {
		return "null"
	}
	if isCustomTag(y.Tag) {
		return "value tagged " + y.Tag
	}
	switch y.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		switch t := y.ShortTag(); t {
		case "!!str":
			return "string"
		case "!!int":
			return "integer"
		case "!!bool":
			return "boolean"
		case "!!float":
			return "number"
		case "!!null":
			return "null"
		default:
			return "value tagged " + t
		}
	}
	return "unexpected YAML node"
}

// badTag reports a custom tag where it cannot be used. what is what the
// schema wanted there ("a string").
func (n Node) badTag(what string) {
	tag := n.y.Tag
	tags := n.w.tagNames()
	switch {
	case n.w.tagEnabled(tag):
		n.Errorf("%s applies to scalar values only", tag)
	case len(tags) == 0:
		n.Errorf("must be %s, got %s", what, n.Describe())
	case len(tags) == 1:
		n.Errorf("unknown tag %s (only %s is supported)", tag, tags[0])
	default:
		n.Errorf("unknown tag %s (only %s are supported)", tag, strings.Join(tags, " and "))
	}
}

// expect reports whether the node is of kind, and an error if not.
func (n Node) expect(kind yaml.Kind, what string) bool {
	switch {
	case n.y != nil && isCustomTag(n.y.Tag) && (n.y.Kind != yaml.ScalarNode || !n.w.tagEnabled(n.y.Tag)):
		n.badTag(what)
		return false
	case n.y == nil || n.y.Kind != kind || isCustomTag(n.y.Tag):
		n.Errorf("must be %s, got %s", what, n.Describe())
		return false
	}
	return true
}

// Scalar resolves a scalar node, following !env and !var where the file
// accepts them. A node that is not a scalar, an unknown tag, an !var of an
// undefined variable, and (with Options.RequireEnv) an !env of an unset one
// are errors, and ok is false; what says what was wanted there, for the
// message ("a string"). A null is a Scalar with Tag !!null.
func (n Node) Scalar(what string) (s Scalar, ok bool) {
	y := n.y
	if y == nil || y.Kind != yaml.ScalarNode {
		if y != nil && isCustomTag(y.Tag) {
			n.badTag(what)
		} else {
			n.Errorf("must be %s, got %s", what, n.Describe())
		}
		return Scalar{}, false
	}
	s = Scalar{Value: y.Value, Tag: y.ShortTag(), Line: y.Line}
	switch {
	case !isCustomTag(y.Tag):
		return s, true
	case !n.w.tagEnabled(y.Tag):
		n.badTag(what)
		return s, false
	case y.Tag == "!env":
		name := strings.TrimSpace(y.Value)
		if name == "" {
			n.Errorf("!env needs a variable name")
			return s, false
		}
		v, set := n.w.opt.Env(name)
		s = Scalar{Value: v, Tag: "!!str", Line: y.Line, Env: name, Unset: !set}
		n.w.sources[n.path.id()] = s
		if !set && n.w.opt.RequireEnv {
			n.Errorf("environment variable %s is not set", name)
			return s, false
		}
		return s, true
	default: // !var
		name := strings.TrimSpace(y.Value)
		v, defined := n.w.vars[name]
		if !defined {
			n.Errorf("!var %s: undefined variable (not in %s:)", name, n.w.opt.VarsKey)
			return s, false
		}
		v.Line = y.Line
		if v.Env != "" {
			n.w.sources[n.path.id()] = v
		}
		return v, true
	}
}

// String is Scalar for a value that must be a YAML string (or a tag that
// resolves to one): 8080 or true is an error, not "8080" or "true".
func (n Node) String(what string) (string, bool) {
	s, ok := n.Scalar(what)
	if !ok {
		return "", false
	}
	if s.Tag != "!!str" {
		n.Errorf("must be %s, got %s", what, n.Describe())
		return "", false
	}
	return s.Value, true
}

// List returns the items of a list node, or reports "must be <what>, got
// …" and returns nil. A null is an error too: where null means "none",
// check IsNull first.
func (n Node) List(what string) []Node {
	if !n.expect(yaml.SequenceNode, what) {
		return nil
	}
	items := make([]Node, 0, len(n.y.Content))
	for i, item := range n.y.Content {
		c, ok := n.w.child(n.path.Index(i), nil, item)
		if !ok {
			return items
		}
		items = append(items, c)
	}
	return items
}

// Map calls fn for each entry of a mapping whose keys are free (names,
// hosts, ids), or reports "must be <what>, got …". Keys must be strings
// and unique; merge keys are not accepted here.
func (n Node) Map(what string, fn func(key string, v Node)) bool {
	if !n.expect(yaml.MappingNode, what) {
		return false
	}
	seen := map[string]int{}
	c := n.y.Content
	for i := 0; i+1 < len(c); i += 2 {
		k := deref(c[i])
		if k.ShortTag() == "!!merge" {
			n.w.errorf(k.Line, n.path.Key("<<"), "merge keys are not supported here; write the keys out")
			continue
		}
		key, ok := n.key(k)
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			n.w.errorf(k.Line, n.path.Key(key), "duplicate key (first at line %d)", first)
			continue
		}
		seen[key] = k.Line
		v, ok := n.w.child(n.path.Key(key), k, c[i+1])
		if !ok {
			return true
		}
		fn(key, v)
	}
	return true
}

// key returns a mapping key's text, or reports a key that is not a plain
// string.
func (n Node) key(k *yaml.Node) (string, bool) {
	if k.Kind != yaml.ScalarNode || isCustomTag(k.Tag) || k.ShortTag() == "!!null" {
		n.w.errorf(k.Line, n.path, "keys must be strings, got %s", describe(k))
		return "", false
	}
	return k.Value, true
}

// keySet is the keys a schema mapping accepts.
type keySet struct {
	names []string          // canonical names, in schema order
	alias map[string]string // another accepted spelling -> canonical name
	t     reflect.Type      // the struct, for Options.UnknownKey; nil for Fields
}

func (ks *keySet) lookup(key string) (string, bool) {
	for _, name := range ks.names {
		if name == key {
			return name, true
		}
	}
	name, ok := ks.alias[key]
	return name, ok
}

// Fields calls fn for each key of a schema mapping, which may hold only
// the keys in known; unknown, duplicate and non-string keys are reported.
// It reports "must be <what>, got …" for a node that is not a mapping.
func (n Node) Fields(what string, known []string, fn func(name string, v Node)) bool {
	_, ok := n.fields(what, &keySet{names: known}, fn)
	return ok
}

// fields walks a schema mapping and returns the keys it had, with their
// lines (merged keys included).
func (n Node) fields(what string, ks *keySet, fn func(name string, v Node)) (map[string]int, bool) {
	if !n.expect(yaml.MappingNode, what) {
		return nil, false
	}
	seen := map[string]int{}
	var merges []*yaml.Node
	c := n.y.Content
	for i := 0; i+1 < len(c); i += 2 {
		k := deref(c[i])
		if k.ShortTag() == "!!merge" {
			if !n.w.opt.MergeKeys {
				n.w.errorf(k.Line, n.path.Key("<<"), "merge keys are not supported; write the keys out")
				continue
			}
			merges = append(merges, c[i+1])
			continue
		}
		key, ok := n.key(k)
		if !ok {
			continue
		}
		if len(n.path) == 0 && n.w.opt.VarsKey != "" && key == n.w.opt.VarsKey {
			if first, dup := seen[key]; dup {
				n.w.errorf(k.Line, n.path.Key(key), "duplicate key (first at line %d)", first)
			}
			seen[key] = k.Line // read by Root
			continue
		}
		name, known := ks.lookup(key)
		if !known {
			n.unknownKey(k, ks)
			continue
		}
		if first, dup := seen[name]; dup {
			n.w.errorf(k.Line, n.path.Key(name), "duplicate key (first at line %d)", first)
			continue
		}
		seen[name] = k.Line
		v, ok := n.w.child(n.path.Key(name), k, c[i+1])
		if !ok {
			return seen, true
		}
		fn(name, v)
	}
	for _, m := range merges {
		if !n.merge(m, ks, seen, fn) {
			break
		}
	}
	return seen, true
}

// merge applies the mapping (or list of mappings) of a merge key to keys
// not set yet: keys written out, and earlier merged mappings, win.
func (n Node) merge(val *yaml.Node, ks *keySet, seen map[string]int, fn func(string, Node)) bool {
	m := deref(val)
	switch {
	case m.Kind == yaml.SequenceNode && val.Kind != yaml.AliasNode:
		for _, item := range m.Content {
			if !n.merge(item, ks, seen, fn) {
				return false
			}
		}
		return true
	case m.Kind != yaml.MappingNode:
		n.w.errorf(val.Line, n.path.Key("<<"), "<< must merge a mapping or a list of mappings, got %s", describe(m))
		return true
	}
	merged := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := deref(m.Content[i])
		if k.ShortTag() == "!!merge" {
			n.w.errorf(k.Line, n.path.Key("<<"), "a merged mapping cannot merge again; write the keys out")
			continue
		}
		key, ok := n.key(k)
		if !ok {
			continue
		}
		name, known := ks.lookup(key)
		if !known {
			n.unknownKey(k, ks)
			continue
		}
		if first, dup := merged[name]; dup {
			n.w.errorf(k.Line, n.path.Key(name), "duplicate key (first at line %d)", first)
			continue
		}
		merged[name] = k.Line
		if _, set := seen[name]; set {
			continue
		}
		seen[name] = k.Line
		v, ok := n.w.child(n.path.Key(name), k, m.Content[i+1])
		if !ok {
			return false
		}
		fn(name, v)
	}
	return true
}

func (n Node) unknownKey(k *yaml.Node, ks *keySet) {
	if n.w.opt.UnknownKey != nil {
		if hint := n.w.opt.UnknownKey(ks.t, k.Value); hint != "" {
			n.w.errorf(k.Line, n.path.Key(k.Value), "unknown key (%s)", hint)
			return
		}
	}
	names := ks.names
	if len(n.path) == 0 && n.w.opt.VarsKey != "" {
		names = append(names[:len(names):len(names)], n.w.opt.VarsKey)
	}
	n.w.errorf(k.Line, n.path.Key(k.Value), "unknown key (expected one of: %s)", strings.Join(names, ", "))
}

// readVars reads the top-level Options.VarsKey mapping into w.vars.
func (w *Walker) readVars(root Node) {
	if root.y == nil || root.y.Kind != yaml.MappingNode {
		return
	}
	c := root.y.Content
	for i := 0; i+1 < len(c); i += 2 {
		if k := deref(c[i]); k.Kind != yaml.ScalarNode || k.Value != w.opt.VarsKey {
			continue
		}
		vars, ok := w.child(Path{}.Key(w.opt.VarsKey), c[i], c[i+1])
		if !ok || vars.IsNull() {
			return
		}
		vars.Map("a mapping of names to values", func(name string, v Node) {
			switch {
			case v.y.Kind != yaml.ScalarNode:
				v.Errorf("variable values must be scalars")
			case v.y.Tag == "!var":
				v.Errorf("!var inside %s: is not allowed", w.opt.VarsKey)
			default:
				if s, ok := v.Scalar("a scalar"); ok {
					w.vars[name] = s
				}
			}
		})
		return // a second one is reported as a duplicate key
	}
}
