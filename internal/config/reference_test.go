package config

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/airut/airut/internal/redact"
)

var updateReference = flag.Bool("update-reference", false, "rewrite the generated part of docs/configuration.md")

const (
	referenceDoc   = "../../docs/configuration.md"
	referenceBegin = "<!-- BEGIN GENERATED: go test ./internal/config -run TestConfigReference -update-reference -->\n"
	referenceEnd   = "<!-- END GENERATED -->\n"
)

// fieldDocs reads the doc comment of every struct field in config.go, by
// "Type.Field".
func fieldDocs(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return true
		}
		for _, fld := range st.Fields.List {
			for _, name := range fld.Names {
				docs[ts.Name.Name+"."+name.Name] = strings.Join(strings.Fields(fld.Doc.Text()), " ")
			}
		}
		return true
	})
	return docs
}

// defaultOf returns the text after "Default" in doc up to the end of its
// sentence: a period followed by a space or the end, outside quotes and
// parentheses (so "registry.npmjs.org" and ".airut/container" stay whole).
func defaultOf(doc string) (string, bool) {
	i := strings.Index(doc, "Default")
	if i < 0 {
		return "", false
	}
	rest := strings.TrimLeft(strings.TrimPrefix(strings.TrimPrefix(doc[i+len("Default"):], " per field"), ":"), " ")
	depth, quoted := 0, false
	for j := 0; j < len(rest); j++ {
		switch c := rest[j]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '.' && depth == 0 && (j+1 == len(rest) || rest[j+1] == ' '):
			return rest[:j], true
		}
	}
	return rest, true
}

// meaning drops the Go field name that starts a doc comment.
func meaning(field, doc string) string {
	for _, p := range []string{field + " is ", field + " are ", field + " "} {
		if rest, ok := strings.CutPrefix(doc, p); ok {
			return strings.ToUpper(rest[:1]) + rest[1:]
		}
	}
	return doc
}

// reference renders every airut.yaml key: its path, type, default and
// what it is, from the structs and their doc comments.
func reference(t *testing.T) string {
	docs := fieldDocs(t)
	var b strings.Builder
	b.WriteString("| key | type | default | meaning |\n| --- | --- | --- | --- |\n")
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if key == "" || key == "-" {
				continue
			}
			path := prefix + key
			doc := docs[typ.Name()+"."+f.Name]
			def := "—"
			if d, ok := defaultOf(doc); ok {
				def = d
			} else if strings.Contains(doc, "Required") {
				def = "required"
			}
			ft := f.Type
			kind := typeName(ft)
			if alias := f.Tag.Get("alias"); alias != "" {
				doc += " (Also accepted as `" + alias + "`.)"
			}
			doc = meaning(f.Name, doc)
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", path, kind, strings.ReplaceAll(def, "|", `\|`), strings.ReplaceAll(doc, "|", `\|`))
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Struct:
				walk(path+".", ft)
			case ft.Kind() == reflect.Map && elem(ft).Kind() == reflect.Struct:
				walk(path+".<"+mapKeyName(key)+">.", elem(ft))
			case ft.Kind() == reflect.Slice && elem(ft).Kind() == reflect.Struct:
				walk(path+"[].", elem(ft))
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return b.String()
}

func elem(t reflect.Type) reflect.Type {
	e := t.Elem()
	for e.Kind() == reflect.Pointer {
		e = e.Elem()
	}
	return e
}

func mapKeyName(key string) string {
	switch key {
	case "repos":
		return "id"
	case "schedules":
		return "name"
	}
	return "NAME"
}

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[redact.Secret]():
		return "secret"
	case t == reflect.TypeFor[Recipients]():
		return "string or list"
	case t.Kind() == reflect.Struct:
		return "mapping"
	case t.Kind() == reflect.Map:
		if elem(t).Kind() == reflect.Struct {
			return "map of mappings"
		}
		return "map of " + typeName(t.Elem())
	case t.Kind() == reflect.Slice:
		if elem(t).Kind() == reflect.Struct {
			return "list of mappings"
		}
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "integer"
	}
	return t.Kind().String()
}

// TestConfigReference: docs/configuration.md lists every airut.yaml key
// with its default, as the structs define them; a key added, removed or
// re-documented without the doc fails here (-update-reference rewrites it).
func TestConfigReference(t *testing.T) {
	data, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, referenceBegin), strings.Index(doc, referenceEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the generated section markers", referenceDoc)
	}
	want := reference(t)
	got := doc[i+len(referenceBegin) : j]
	if got == want {
		return
	}
	if *updateReference {
		if err := os.WriteFile(referenceDoc, []byte(doc[:i+len(referenceBegin)]+want+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s is out of date with config.go: run go test ./internal/config -run TestConfigReference -update-reference", referenceDoc)
}
