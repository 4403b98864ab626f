package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/lexer"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/airut/airut/internal/allowlist"
)

// GraphQL limits (S5.5): a body over MaxGraphQLBody, a document nested
// deeper than maxGraphQLDepth or longer than maxGraphQLTokens is blocked
// before it is parsed, so no request can make the parser's work (or its
// recursion) large.
const (
	MaxGraphQLBody   = 1 << 20
	maxGraphQLDepth  = 64
	maxGraphQLTokens = 100_000
)

// ErrGraphQL is matched by every GraphQL refusal.
var ErrGraphQL = errors.New("graphql")

func gqlErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrGraphQL, fmt.Sprintf(format, args...))
}

// gqlRequest is one GraphQL request as sent: its document without a
// schema (no type information: checks go by field and argument names),
// the operation it names and its variables.
type gqlRequest struct {
	doc       *ast.QueryDocument
	opName    string
	variables map[string]any // JSON values, numbers as json.Number
}

// graphQL parses the request once for every check that needs it.
func (r *Request) graphQL() (*gqlRequest, error) {
	if r.gql == nil && r.gqlErr == nil {
		r.gql, r.gqlErr = r.parseGraphQL()
	}
	return r.gql, r.gqlErr
}

// graphQLParams are the names under which a request carries GraphQL, in a
// JSON body or a GET query string.
var graphQLParams = []string{"query", "operationName", "variables", "extensions"}

func (r *Request) parseGraphQL() (*gqlRequest, error) {
	hr := r.HTTP
	params, err := url.ParseQuery(hr.URL.RawQuery)
	if err != nil {
		return nil, gqlErr("unparseable query string: %v", err)
	}
	if ce := strings.TrimSpace(hr.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, gqlErr("a request body with Content-Encoding %q cannot be checked", ce)
	}
	if hr.Method == http.MethodGet || hr.Method == http.MethodHead {
		if hr.ContentLength > 0 || (hr.Body != nil && hr.Body != http.NoBody && hr.ContentLength != 0) {
			return nil, gqlErr("a GET request with a body is ambiguous")
		}
		return fromParams(params)
	}
	for _, p := range graphQLParams {
		if params.Has(p) {
			return nil, gqlErr("GraphQL parameter %q in the URL of a %s request is ambiguous: send it in the body", p, hr.Method)
		}
	}
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	if len(body) > MaxGraphQLBody {
		return nil, gqlErr("body of %d bytes is over the %d-byte limit for GraphQL", len(body), MaxGraphQLBody)
	}
	return fromJSON(body)
}

// fromParams reads a GraphQL GET request.
func fromParams(params url.Values) (*gqlRequest, error) {
	one := func(name string) (string, bool, error) {
		vs := params[name]
		switch len(vs) {
		case 0:
			return "", false, nil
		case 1:
			return vs[0], true, nil
		}
		return "", false, gqlErr("parameter %q is given %d times", name, len(vs))
	}
	q, hasQ, err := one("query")
	if err != nil {
		return nil, err
	}
	ext, hasExt, err := one("extensions")
	if err != nil {
		return nil, err
	}
	if hasExt {
		if err := checkExtensions([]byte(ext)); err != nil {
			return nil, err
		}
	}
	if !hasQ {
		return nil, gqlErr("no query: persisted or stored queries cannot be checked")
	}
	op, _, err := one("operationName")
	if err != nil {
		return nil, err
	}
	g := &gqlRequest{opName: op}
	if v, ok, err := one("variables"); err != nil {
		return nil, err
	} else if ok {
		if g.variables, err = decodeVariables([]byte(v)); err != nil {
			return nil, err
		}
	}
	if g.doc, err = parseDocument(q); err != nil {
		return nil, err
	}
	return g, nil
}

// fromJSON reads a GraphQL POST body: one JSON object. Its top-level keys
// are read exactly as written, each once: a server that took the first of
// two "query" keys would run what this check did not see.
func fromJSON(body []byte) (*gqlRequest, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return nil, gqlErr("batched requests (a JSON array) are not allowed")
	}
	fields, err := jsonObject(body)
	if err != nil {
		return nil, gqlErr("body is not a JSON object: %v", err)
	}
	g := &gqlRequest{}
	if raw, ok := fields["extensions"]; ok {
		if err := checkExtensions(raw); err != nil {
			return nil, err
		}
	}
	raw, ok := fields["query"]
	if !ok || isNull(raw) {
		return nil, gqlErr("no query: persisted or stored queries cannot be checked")
	}
	var q string
	if err := json.Unmarshal(raw, &q); err != nil {
		return nil, gqlErr("query is not a string")
	}
	if raw, ok := fields["operationName"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &g.opName); err != nil {
			return nil, gqlErr("operationName is not a string")
		}
	}
	if raw, ok := fields["variables"]; ok {
		if g.variables, err = decodeVariables(raw); err != nil {
			return nil, err
		}
	}
	if g.doc, err = parseDocument(q); err != nil {
		return nil, err
	}
	return g, nil
}

// jsonObject reads one JSON object's top-level members, refusing
// duplicate keys and trailing data.
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	items, err := members(data)
	if err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(items))
	for _, m := range items {
		if _, dup := out[m.key]; dup {
			return nil, fmt.Errorf("key %q appears twice", m.key)
		}
		out[m.key] = m.val
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// checkExtensions refuses automatic persisted queries: the server would
// run a document by hash that this check never sees.
func checkExtensions(raw []byte) error {
	if isNull(raw) {
		return nil
	}
	ext, err := jsonObject(raw)
	if err != nil {
		return gqlErr("extensions is not a JSON object")
	}
	if _, ok := ext["persistedQuery"]; ok {
		return gqlErr("persisted queries (extensions.persistedQuery) are not allowed")
	}
	return nil
}

func decodeVariables(raw []byte) (map[string]any, error) {
	if isNull(raw) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, gqlErr("variables is not a JSON object")
	}
	return v, nil
}

// parseDocument parses a query document without a schema, after a lexer
// pass that bounds its nesting and length.
func parseDocument(q string) (*ast.QueryDocument, error) {
	src := &ast.Source{Name: "query", Input: q}
	lx := lexer.New(src)
	depth, tokens := 0, 0
	for {
		tok, err := lx.ReadToken()
		if err != nil {
			return nil, gqlErr("unparseable query: %v", err)
		}
		if tok.Kind == lexer.EOF {
			break
		}
		if tokens++; tokens > maxGraphQLTokens {
			return nil, gqlErr("query has more than %d tokens", maxGraphQLTokens)
		}
		switch tok.Kind {
		case lexer.BraceL, lexer.BracketL, lexer.ParenL:
			if depth++; depth > maxGraphQLDepth {
				return nil, gqlErr("query is nested deeper than %d", maxGraphQLDepth)
			}
		case lexer.BraceR, lexer.BracketR, lexer.ParenR:
			depth--
		}
	}
	doc, err := parser.ParseQuery(src)
	if err != nil {
		return nil, gqlErr("unparseable query: %v", err)
	}
	return doc, nil
}

// CheckGraphQL is the proxy's GraphQL operation check (S5.5), the default
// Config.GraphQL: it runs on requests allowed by a url_prefixes entry with
// graphql rules and blocks unless the request is one GraphQL operation
// (operationName selecting exactly one of the document's, every one of
// which is checked) whose top-level fields, aliases resolved to their
// field names, all match the entry's patterns for the operation's type.
// A fragment spread at the root is refused, since it hides the fields it
// selects; inline fragments at the root are looked into.
func CheckGraphQL(r *Request) error {
	rules := r.Decision.GraphQL
	if rules == nil {
		return nil
	}
	g, err := r.graphQL()
	if err != nil {
		return err
	}
	if _, err := g.operation(); err != nil {
		return err
	}
	for _, op := range g.doc.Operations {
		patterns, kind := rules.Queries, "query"
		switch op.Operation {
		case ast.Mutation:
			patterns, kind = rules.Mutations, "mutation"
		case ast.Subscription:
			patterns, kind = rules.Subscriptions, "subscription"
		}
		fields, err := rootFields(op.SelectionSet, nil)
		if err != nil {
			return err
		}
		for _, f := range fields {
			if f == "__typename" || matchesAny(patterns, f) {
				continue
			}
			allowed := "none"
			if len(patterns) > 0 {
				allowed = strings.Join(patterns, ", ")
			}
			return gqlErr("%s field %q is not allowed by %s (allowed %s fields: %s)", kind, f, r.Decision.Rule, kind, allowed)
		}
	}
	return nil
}

// operation is the operation the request runs: the one operationName
// names, or the document's only one.
func (g *gqlRequest) operation() (*ast.OperationDefinition, error) {
	ops := g.doc.Operations
	if len(ops) == 0 {
		return nil, gqlErr("the document has no operation")
	}
	if g.opName == "" {
		if len(ops) > 1 {
			return nil, gqlErr("the document has %d operations and operationName names none", len(ops))
		}
		return ops[0], nil
	}
	var found *ast.OperationDefinition
	for _, op := range ops {
		if op.Name == g.opName {
			if found != nil {
				return nil, gqlErr("operationName %q names more than one operation", g.opName)
			}
			found = op
		}
	}
	if found == nil {
		return nil, gqlErr("operationName %q names no operation of the document", g.opName)
	}
	return found, nil
}

// rootFields lists the field names an operation selects at its root.
func rootFields(set ast.SelectionSet, out []string) ([]string, error) {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			out = append(out, s.Name)
		case *ast.InlineFragment:
			var err error
			if out, err = rootFields(s.SelectionSet, out); err != nil {
				return nil, err
			}
		case *ast.FragmentSpread:
			return nil, gqlErr("fragment spread ...%s at the root of an operation is not allowed: select the fields directly", s.Name)
		}
	}
	return out, nil
}

// matchesAny matches a field name against allowlist patterns: fnmatch
// for a pattern with wildcards, exact otherwise; GraphQL names are
// case-sensitive.
func matchesAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if strings.ContainsAny(p, "*?[") {
			if allowlist.Fnmatch(p, name) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}
