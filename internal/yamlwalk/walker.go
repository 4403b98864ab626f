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
//     keys that are missing, which are placed at the closest enclosing
//     key that is there;
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
	// ListKeys makes "unknown key" messages list the keys the mapping
	// accepts. Worth it where mappings are short.
	ListKeys bool
	// UnknownKey may give a hint for an unknown key of struct type t (t is
	// nil for Node.Fields), e.g. where an older layout moved it; "" for
	// none.
	UnknownKey func(t reflect.Type, key string) string
	// Secret reports whether string values decoded into type t are
	// secrets; they are collected in Walker.Secrets.
	Secret func(t reflect.Type) bool
}

// Walker walks one document and collects its errors. Create one with New
// per file and walk it from Root.
type Walker struct {
	file string
	opt  Options
	vars map[string]Scalar

	errs    Errors
	lines   map[string]int // by Path.id, the key line of every node visited
	sources map[string]Scalar
	failed  map[string]bool
	secrets []string

	visits, budget int
	exhausted      bool
}

// New returns a Walker for the file named file (used in errors).
func New(file string, opt Options) *Walker {
	return &Walker{
		file:    file,
		opt:     opt,
		vars:    map[string]Scalar{},
		lines:   map[string]int{},
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
		w.lines[Path{}.id()] = root.Line
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

// Line returns the line of path's key (of the item, in a list). For a
// path that is not in the file it returns the line of the closest
// enclosing key that is: the section the missing key belongs in.
func (w *Walker) Line(path Path) int {
	for i := len(path); i >= 0; i-- {
		if l, ok := w.lines[path[:i].id()]; ok {
			return l
		}
	}
	return 0
}

// Has reports whether path is in the file (its key was read).
func (w *Walker) Has(path Path) bool {
	_, ok := w.lines[path.id()]
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
	line := val.Line
	if key != nil {
		line = key.Line
	}
	w.lines[path.id()] = line
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
