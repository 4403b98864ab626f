package yamlwalk

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// Step is one step of a Path: a mapping key, or a list index.
type Step struct {
	Key   string // the mapping key, when Index < 0
	Index int    // the list index; -1 for a mapping key
}

// Path locates a node by the keys and list indices leading to it from the
// document's root. The zero Path is the root.
type Path []Step

// Key returns p extended by mapping keys, one step each. p itself is not
// changed.
func (p Path) Key(keys ...string) Path {
	q := make(Path, len(p), len(p)+len(keys))
	copy(q, p)
	for _, k := range keys {
		q = append(q, Step{Key: k, Index: -1})
	}
	return q
}

// Index returns p extended by a list index. p itself is not changed.
func (p Path) Index(i int) Path {
	q := make(Path, len(p), len(p)+1)
	copy(q, p)
	return append(q, Step{Index: i})
}

// String renders p the way errors show it: keys joined by dots, indices in
// brackets ("repos.app.email.auth.authorized_senders[2]").
func (p Path) String() string {
	var b strings.Builder
	for i, s := range p {
		if s.Index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.Index))
			b.WriteByte(']')
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.Key)
	}
	return b.String()
}

// MarshalJSON renders p as a list of keys (strings) and indices (numbers),
// so a client can find the node even when a key contains a dot.
func (p Path) MarshalJSON() ([]byte, error) {
	out := make([]any, len(p))
	for i, s := range p {
		if s.Index >= 0 {
			out[i] = s.Index
		} else {
			out[i] = s.Key
		}
	}
	return json.Marshal(out)
}

// id is an unambiguous map key for p (String is not: keys may hold dots).
func (p Path) id() string {
	var b strings.Builder
	for _, s := range p {
		if s.Index >= 0 {
			b.WriteString("\x01")
			b.WriteString(strconv.Itoa(s.Index))
		} else {
			b.WriteString("\x00")
			b.WriteString(s.Key)
		}
	}
	return b.String()
}

// Error is one problem in a config file, located by file, line and key
// path. It prints as "airut.yaml:42: repos.app.email.imap.server: required";
// a zero line or the root path is left out.
type Error struct {
	File    string // the file name as the operator knows it
	Line    int    // 1-based; 0 when unknown
	Path    Path   // the key path; nil for the document itself
	Message string // lower-case, no trailing period, never a secret value
}

// Key is the key path as text, "" for the document itself.
func (e *Error) Key() string { return e.Path.String() }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if key := e.Key(); key != "" {
		b.WriteString(key)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// MarshalJSON gives the form an editor shows at a field:
// {"file", "line", "key", "path", "message"}.
func (e *Error) MarshalJSON() ([]byte, error) {
	path := e.Path
	if path == nil {
		path = Path{}
	}
	return json.Marshal(struct {
		File    string `json:"file"`
		Line    int    `json:"line"`
		Key     string `json:"key"`
		Path    Path   `json:"path"`
		Message string `json:"message"`
	}{e.File, e.Line, e.Key(), path, e.Message})
}

// Errors is every problem found in one file. Its text is one error per
// line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sorted returns a copy in file order: by line, then by key.
func (es Errors) Sorted() Errors {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b *Error) int {
		if c := cmp.Compare(a.Line, b.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.Key(), b.Key())
	})
	return out
}

// Err returns es as an error, or nil when there is none, so that a nil
// Errors never becomes a non-nil error interface.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}
