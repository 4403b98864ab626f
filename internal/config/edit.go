package config

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// ValueKind is how a scalar is written in airut.yaml.
type ValueKind int

const (
	// Literal is the value itself.
	Literal ValueKind = iota
	// EnvRef is !env NAME.
	EnvRef
	// VarRef is !var NAME.
	VarRef
)

// Value is a scalar as the config editor sets it.
type Value struct {
	Kind ValueKind
	// Text is the literal value, or the variable's NAME.
	Text string
}

// yaml renders v as it is written after "key: ".
func (v Value) yaml() (string, error) {
	switch v.Kind {
	case EnvRef, VarRef:
		if !envNameRE.MatchString(v.Text) {
			return "", fmt.Errorf("%q is not a variable name", v.Text)
		}
		tag := "!env"
		if v.Kind == VarRef {
			tag = "!var"
		}
		return tag + " " + v.Text, nil
	}
	if strings.Contains(v.Text, "\n") {
		return "", errors.New("a value must be one line")
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: v.Text}
	// Untagged, so numbers and booleans stay plain and a string that
	// would read as something else is quoted.
	out, err := yaml.Marshal(n)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

// Edit changes airut.yaml's text in place of the lines it touches: every
// other byte — comments, blank lines, key order, tags, quoting — is kept
// as it was. The file is parsed (yaml.Node, for positions) before each
// change, so edits compose. Structs are never re-marshalled.
//
// Paths are key paths from the top, e.g. {"repos", "app", "model"}.
// Block-style mappings are edited line by line; a flow mapping
// ({a: 1, b: 2}) on the path is first rewritten in block style, the only
// case where text outside the edited key changes form.
type Edit struct {
	lines []string
	final bool // the text ended with a newline
}

// NewEdit starts editing data.
func NewEdit(data []byte) (*Edit, error) {
	e := &Edit{}
	e.setText(data)
	if _, err := e.parse(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Edit) setText(data []byte) {
	s := string(data)
	e.final = s == "" || strings.HasSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		e.lines = nil
		return
	}
	e.lines = strings.Split(s, "\n")
}

// Bytes returns the edited text.
func (e *Edit) Bytes() []byte {
	if len(e.lines) == 0 {
		return nil
	}
	s := strings.Join(e.lines, "\n")
	if e.final {
		s += "\n"
	}
	return []byte(s)
}

// parse returns the top-level mapping, or nil for an empty document.
func (e *Edit) parse() (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(e.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("the config must be a mapping")
	}
	return root, nil
}

// lookup finds key in mapping m.
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
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

func indentOf(line string) int { return len(line) - len(strings.TrimLeft(line, " ")) }

func blankOrComment(line string) bool {
	t := strings.TrimSpace(line)
	return t == "" || strings.HasPrefix(t, "#")
}

// entryEnd returns the index of the last line of the mapping entry whose
// key is k (0-based line indexes): the lines below it that are indented
// deeper (or a block sequence at the key's own column), without trailing
// blank and comment lines, which belong to what follows.
func (e *Edit) entryEnd(k, v *yaml.Node) int {
	start := k.Line - 1
	col := k.Column - 1
	end := start
	seqAtKey := v != nil && v.Kind == yaml.SequenceNode && v.Style&yaml.FlowStyle == 0 && v.Column-1 == col
	for i := start + 1; i < len(e.lines); i++ {
		l := e.lines[i]
		if blankOrComment(l) {
			if indentOf(l) > col && strings.TrimSpace(l) != "" {
				end = i // a comment inside the subtree
			}
			continue
		}
		ind := indentOf(l)
		if ind > col || (seqAtKey && ind == col && strings.HasPrefix(strings.TrimSpace(l), "-")) {
			end = i
			continue
		}
		break
	}
	// A block scalar keeps blank lines inside it; they are counted only up
	// to its last text line, which the loop above already did.
	return end
}

// Set writes v at path, creating the mappings on the way that are
// missing.
func (e *Edit) Set(path []string, v Value) error {
	text, err := v.yaml()
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(path, "."), err)
	}
	return e.setText2(path, text, nil)
}

// SetBlock writes a whole section at path, e.g. a new repo: block is YAML
// for the value (a mapping), indented from column 0.
func (e *Edit) SetBlock(path []string, block string) error {
	var probe yaml.Node
	if err := yaml.Unmarshal([]byte(block), &probe); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(path, "."), err)
	}
	lines := strings.Split(strings.TrimRight(block, "\n"), "\n")
	return e.setText2(path, "", lines)
}

// setText2 sets path to the one-line value text, or to the block lines
// (indented below the key) when lines is not nil.
func (e *Edit) setText2(path []string, text string, block []string) error {
	if len(path) == 0 {
		return errors.New("empty path")
	}
	root, err := e.parse()
	if err != nil {
		return err
	}
	entry := func(indent int, key string) []string {
		pad := strings.Repeat(" ", indent)
		if block == nil {
			return []string{pad + keyText(key) + ": " + text}
		}
		out := []string{pad + keyText(key) + ":"}
		for _, l := range block {
			if strings.TrimSpace(l) == "" {
				out = append(out, "")
			} else {
				out = append(out, pad+"  "+l)
			}
		}
		return out
	}
	// nested renders path[i:] as new lines at indent.
	nested := func(i, indent int) []string {
		var out []string
		for j := i; j < len(path)-1; j++ {
			out = append(out, strings.Repeat(" ", indent+2*(j-i))+keyText(path[j])+":")
		}
		return append(out, entry(indent+2*(len(path)-1-i), path[len(path)-1])...)
	}
	if root == nil {
		e.lines = append(e.lines, nested(0, 0)...)
		e.final = true
		return nil
	}
	m, mk := root, (*yaml.Node)(nil)
	for i, key := range path {
		if m.Style&yaml.FlowStyle != 0 {
			if err := e.unflow(mk, m, path[:i]); err != nil {
				return err
			}
			return e.setText2(path, text, block)
		}
		k, v := lookup(m, key)
		if k == nil {
			// Insert after the mapping's last entry, at its keys' column.
			last := m.Content[len(m.Content)-2]
			at := e.entryEnd(last, m.Content[len(m.Content)-1]) + 1
			e.insert(at, nested(i, last.Column-1))
			return nil
		}
		if i == len(path)-1 {
			if block == nil && v.Kind == yaml.ScalarNode && v.Line == k.Line && v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				return e.replaceValue(k, v, text)
			}
			end := e.entryEnd(k, v)
			e.replace(k.Line-1, end, entry(k.Column-1, key))
			return nil
		}
		switch {
		case v.Kind == yaml.MappingNode && len(v.Content) > 0:
			m, mk = v, k
		case v.Kind == yaml.ScalarNode && (v.Tag == "!!null" || v.Value == ""):
			// "repos:" with nothing under it.
			end := e.entryEnd(k, v)
			e.replace(k.Line-1, end, append([]string{strings.Repeat(" ", k.Column-1) + keyText(key) + ":"}, nested(i+1, k.Column+1)...))
			return nil
		default:
			return fmt.Errorf("%s: is not a mapping", strings.Join(path[:i+1], "."))
		}
	}
	return nil
}

// replaceValue rewrites a one-line scalar after its key, keeping the
// line's comment.
func (e *Edit) replaceValue(k, v *yaml.Node, text string) error {
	line := e.lines[k.Line-1]
	start := v.Column - 1
	if start > len(line) {
		return fmt.Errorf("line %d: value position out of range", k.Line)
	}
	rest := ""
	if v.LineComment != "" {
		if i := strings.LastIndex(line, v.LineComment); i >= start {
			// Keep the spacing before the comment as it was.
			j := i
			for j > start && line[j-1] == ' ' {
				j--
			}
			rest = line[j:]
		}
	}
	e.lines[k.Line-1] = line[:start] + text + rest
	return nil
}

// Delete removes the entry at path with the lines under it. A missing
// entry is not an error.
func (e *Edit) Delete(path []string) error {
	root, err := e.parse()
	if err != nil || root == nil {
		return err
	}
	m, mk := root, (*yaml.Node)(nil)
	for i, key := range path {
		if m.Style&yaml.FlowStyle != 0 {
			if err := e.unflow(mk, m, path[:i]); err != nil {
				return err
			}
			return e.Delete(path)
		}
		k, v := lookup(m, key)
		if k == nil {
			return nil
		}
		if i == len(path)-1 {
			if len(m.Content) == 2 && i > 0 {
				// The mapping would be left empty: remove it with its key.
				return e.Delete(path[:i])
			}
			e.replace(k.Line-1, e.entryEnd(k, v), nil)
			return nil
		}
		if v.Kind != yaml.MappingNode {
			return nil
		}
		m, mk = v, k
	}
	return nil
}

// unflow rewrites the flow mapping v ({a: 1, b: 2}) under key k in block
// style, so that line-wise edits can reach its entries; the only edit
// that changes the form of text it was not asked to change.
func (e *Edit) unflow(k, v *yaml.Node, at []string) error {
	if k == nil || k.Line != v.Line {
		return fmt.Errorf("%s: a flow mapping that does not start on its key's line cannot be edited; rewrite it in block style", strings.Join(at, "."))
	}
	var clear func(n *yaml.Node)
	clear = func(n *yaml.Node) {
		n.Style &^= yaml.FlowStyle
		for _, c := range n.Content {
			clear(c)
		}
	}
	clear(v)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(at, "."), err)
	}
	pad := strings.Repeat(" ", k.Column+1)
	lines := []string{strings.Repeat(" ", k.Column-1) + keyText(k.Value) + ":"}
	if k.LineComment != "" {
		lines[0] += " " + k.LineComment
	}
	for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		lines = append(lines, pad+l)
	}
	e.replace(k.Line-1, e.entryEnd(k, v), lines)
	return nil
}

func (e *Edit) replace(from, to int, with []string) {
	e.lines = slices.Concat(e.lines[:from], with, e.lines[to+1:])
}

func (e *Edit) insert(at int, with []string) {
	e.lines = slices.Concat(e.lines[:at], with, e.lines[at:])
}

// keyText quotes a key that YAML would not read back as itself.
func keyText(key string) string {
	out, err := yaml.Marshal(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key})
	if err != nil {
		return key
	}
	return string(bytes.TrimSuffix(out, []byte("\n")))
}
