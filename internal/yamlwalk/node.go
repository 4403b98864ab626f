package yamlwalk

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// Scalar is a scalar's value after !env and !var are resolved.
type Scalar struct {
	Value string
	Tag   string // YAML short tag of the value: !!str, !!int, !!bool, !!float, !!null…
	Line  int    // where it is used (for !var, the !var, not the definition)
	Env   string // the environment variable it came from, "" if none
	Unset bool   // Env names a variable that is not set; Value is ""
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
