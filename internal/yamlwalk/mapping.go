package yamlwalk

import (
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Map calls fn for each entry of a mapping whose keys are free (names,
// hosts, ids), or reports "must be <what>, got …". Keys must be strings
// and unique; merge keys are not accepted here.
func (n Node) Map(what string, fn func(key string, v Node)) bool {
	if !n.expect(yaml.MappingNode, what) {
		return false
	}
	refuseMerge := func(k, _ *yaml.Node) {
		n.w.errorf(k.Line, n.path.Key("<<"), "merge keys are not supported here; write the keys out")
	}
	n.eachKey(n.y, nil, false, refuseMerge, func(key string, k, v *yaml.Node) bool {
		c, ok := n.w.child(n.path.Key(key), k, v)
		if ok {
			fn(key, c)
		}
		return ok
	})
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

// eachKey iterates the entries of mapping m, reporting keys that are not
// strings, not in ks (nil: any key goes) or given twice, and calls fn with
// each good key's canonical name until fn returns false. Merge keys go to
// onMerge. At the root, allowVars accepts Options.VarsKey.
func (n Node) eachKey(m *yaml.Node, ks *keySet, allowVars bool, onMerge func(k, v *yaml.Node), fn func(name string, k, v *yaml.Node) bool) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := deref(m.Content[i])
		if k.ShortTag() == "!!merge" {
			onMerge(k, m.Content[i+1])
			continue
		}
		key, ok := n.key(k)
		if !ok {
			continue
		}
		name := key
		if ks != nil && !(allowVars && n.isVarsKey(key)) {
			if name, ok = ks.lookup(key); !ok {
				n.unknownKey(k, ks)
				continue
			}
		}
		if first, dup := seen[name]; dup {
			n.w.errorf(k.Line, n.path.Key(name), "duplicate key (first at line %d)", first)
			continue
		}
		seen[name] = k.Line
		if !fn(name, k, m.Content[i+1]) {
			return
		}
	}
}

func (n Node) isVarsKey(key string) bool {
	return len(n.path) == 0 && n.w.opt.VarsKey != "" && key == n.w.opt.VarsKey
}

// fields walks a schema mapping and returns the keys it had, with their
// lines (merged keys included).
func (n Node) fields(what string, ks *keySet, fn func(name string, v Node)) (map[string]int, bool) {
	if !n.expect(yaml.MappingNode, what) {
		return nil, false
	}
	seen := map[string]int{}
	var merges []*yaml.Node
	onMerge := func(k, v *yaml.Node) {
		if n.w.opt.MergeKeys {
			merges = append(merges, v)
		} else {
			n.w.errorf(k.Line, n.path.Key("<<"), "merge keys are not supported; write the keys out")
		}
	}
	n.eachKey(n.y, ks, true, onMerge, func(name string, k, v *yaml.Node) bool {
		seen[name] = k.Line
		if n.isVarsKey(name) {
			return true // read by Root
		}
		return n.field(name, k, v, fn)
	})
	for _, m := range merges {
		if !n.merge(m, ks, seen, fn) {
			break
		}
	}
	return seen, true
}

func (n Node) field(name string, k, v *yaml.Node, fn func(string, Node)) bool {
	c, ok := n.w.child(n.path.Key(name), k, v)
	if ok {
		fn(name, c)
	}
	return ok
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
	refuseMerge := func(k, _ *yaml.Node) {
		n.w.errorf(k.Line, n.path.Key("<<"), "a merged mapping cannot merge again; write the keys out")
	}
	ok := true
	n.eachKey(m, ks, false, refuseMerge, func(name string, k, v *yaml.Node) bool {
		if _, set := seen[name]; set {
			return true
		}
		seen[name] = k.Line
		ok = n.field(name, k, v, fn)
		return ok
	})
	return ok
}

func (n Node) unknownKey(k *yaml.Node, ks *keySet) {
	p := n.path.Key(k.Value)
	if n.w.opt.UnknownKey != nil {
		if hint := n.w.opt.UnknownKey(ks.t, k.Value); hint != "" {
			n.w.errorf(k.Line, p, "unknown key (%s)", hint)
			return
		}
	}
	if !n.w.opt.ListKeys {
		n.w.errorf(k.Line, p, "unknown key")
		return
	}
	names := ks.names
	if len(n.path) == 0 && n.w.opt.VarsKey != "" {
		names = append(names[:len(names):len(names)], n.w.opt.VarsKey)
	}
	n.w.errorf(k.Line, p, "unknown key (expected one of: %s)", strings.Join(names, ", "))
}
