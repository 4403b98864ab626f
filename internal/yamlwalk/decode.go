package yamlwalk

import (
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Unmarshaler is implemented by schema types whose YAML form is not a
// plain mapping, list or scalar ("one address or a list of them"). It is
// called with a node that is not null; DecodeFields and Decode on parts
// of the node do the rest.
type Unmarshaler interface {
	UnmarshalYAMLNode(n Node)
}

// Defaulter is implemented by schema types with defaults: Decode calls
// SetDefaults on every new value of the type (a map entry, a list item, a
// pointer's target) before reading it from the file.
type Defaulter interface {
	SetDefaults()
}

// Decode reads the node into the value ptr points to, by the value's Go
// type: a struct from a mapping whose keys are the fields' yaml tags, a
// map from a mapping, a slice from a list, a string from any scalar, a
// bool from true/false/yes/no/on/off/1/0, an integer or a float from a
// number. Errors are recorded, not returned.
//
// Struct tags: `yaml:"name"` names the key (fields without one are not
// read), `yaml:"name,required"` makes a missing key an error, and
// `alias:"other"` accepts a second spelling of the key.
//
// It reports whether the value was set: a null, or an !env of an unset
// variable, leaves it (and its default) alone.
func (n Node) Decode(ptr any) bool {
	return n.decode(reflect.ValueOf(ptr).Elem())
}

// DecodeFields reads a mapping into the struct ptr points to like Decode,
// without calling the struct's own UnmarshalYAMLNode: for use inside it.
func (n Node) DecodeFields(ptr any) bool {
	if n.IsNull() {
		return false
	}
	return n.decodeStruct(reflect.ValueOf(ptr).Elem())
}

func (n Node) decode(v reflect.Value) bool {
	if n.IsNull() {
		return false
	}
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(Unmarshaler); ok {
			u.UnmarshalYAMLNode(n)
			return true
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := newValue(v.Type().Elem())
		if n.decode(elem.Elem()) {
			v.Set(elem)
			return true
		}
		return false
	case reflect.Struct:
		return n.decodeStruct(v)
	case reflect.Map:
		return n.decodeMap(v)
	case reflect.Slice:
		return n.decodeSlice(v)
	}
	s, ok := n.Scalar(typeName(v.Type()))
	if !ok {
		return false
	}
	// An unset variable leaves the default; so does an empty one where an
	// empty string is not a value of the type.
	if s.Unset || s.Env != "" && s.Value == "" && v.Kind() != reflect.String {
		return false
	}
	return n.setScalar(s, v)
}

// newValue returns a pointer to a new value of t with its defaults.
func newValue(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if d, ok := p.Interface().(Defaulter); ok {
		d.SetDefaults()
	}
	return p
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list"
	case reflect.Pointer:
		return typeName(t.Elem())
	default:
		return "a mapping"
	}
}

func (n Node) setScalar(s Scalar, v reflect.Value) bool {
	text := strings.TrimSpace(s.Value)
	switch v.Kind() {
	case reflect.String:
		v.SetString(s.Value)
		if s.Value != "" && n.w.opt.Secret != nil && n.w.opt.Secret(v.Type()) {
			n.w.secrets = append(n.w.secrets, s.Value)
		}
		return true
	case reflect.Bool:
		switch strings.ToLower(text) {
		case "true", "yes", "on", "1":
			v.SetBool(true)
			return true
		case "false", "no", "off", "0":
			v.SetBool(false)
			return true
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(text, 10, v.Type().Bits())
		if err == nil && s.Tag != "!!float" {
			v.SetInt(i)
			return true
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(text, 10, v.Type().Bits())
		if err == nil && s.Tag != "!!float" {
			v.SetUint(u)
			return true
		}
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(text, v.Type().Bits())
		if err == nil {
			v.SetFloat(f)
			return true
		}
	}
	n.Errorf("must be %s, not %s", typeName(v.Type()), shown(s))
	return false
}

// shown quotes a bad value for a message. One read from the environment is
// not repeated: it may be a secret put in the wrong place.
func shown(s Scalar) string {
	if s.Env == "" {
		return strconv.Quote(s.Value)
	}
	return "the value of environment variable " + s.Env
}

func (n Node) decodeStruct(v reflect.Value) bool {
	sf := structFields(v.Type())
	seen, ok := n.fields("a mapping", &sf.keys, func(name string, c Node) {
		c.decode(v.Field(sf.index[name]))
	})
	if !ok {
		return false
	}
	// A missing key is reported where the mapping starts, among the keys
	// it sits beside.
	for _, name := range sf.required {
		if _, ok := seen[name]; !ok {
			n.w.errorf(n.Line(), n.path.Key(name), "required")
		}
	}
	return true
}

func (n Node) decodeMap(v reflect.Value) bool {
	if !n.expect(yaml.MappingNode, "a mapping") {
		return false
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	et := v.Type().Elem()
	n.Map("a mapping", func(key string, c Node) {
		if c.nullSection(et) {
			return
		}
		elem := newValue(et)
		if !c.decode(elem.Elem()) && et.Kind() != reflect.Struct {
			return // a scalar whose !env is unset, or a pointer left nil: the entry is left out
		}
		v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem.Elem())
	})
	return true
}

func (n Node) decodeSlice(v reflect.Value) bool {
	if !n.expect(yaml.SequenceNode, "a list") {
		return false
	}
	items := n.List("a list")
	et := v.Type().Elem()
	out := reflect.MakeSlice(v.Type(), 0, len(items))
	for _, item := range items {
		if item.nullSection(et) {
			continue
		}
		elem := newValue(et)
		if !item.decode(elem.Elem()) && et.Kind() == reflect.String {
			if s, ok := n.w.Source(item.path); ok && s.Unset {
				continue // an unset !env item is left out
			}
		}
		out = reflect.Append(out, elem.Elem())
	}
	v.Set(out)
	return true
}

// nullSection reports, as an error, a null map entry or list item where
// a struct belongs: an entry with nothing in it is a mistake (every such
// section has a required key), not a request for the defaults.
func (n Node) nullSection(t reflect.Type) bool {
	if !n.IsNull() {
		return false
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	n.Errorf("must be %s, got null", typeName(t))
	return true
}

// fieldSet is what Decode needs to know of a struct type.
type fieldSet struct {
	keys     keySet
	index    map[string]int // canonical key -> field index
	required []string
}

var fieldSets sync.Map // reflect.Type -> *fieldSet

func structFields(t reflect.Type) *fieldSet {
	if fs, ok := fieldSets.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{keys: keySet{t: t}, index: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fs.keys.names = append(fs.keys.names, name)
		fs.index[name] = i
		if alias := f.Tag.Get("alias"); alias != "" {
			if fs.keys.alias == nil {
				fs.keys.alias = map[string]string{}
			}
			fs.keys.alias[alias] = name
		}
		for _, o := range strings.Split(opts, ",") {
			if o == "required" {
				fs.required = append(fs.required, name)
			}
		}
	}
	actual, _ := fieldSets.LoadOrStore(t, fs)
	return actual.(*fieldSet)
}
