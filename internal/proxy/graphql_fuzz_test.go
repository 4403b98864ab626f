package proxy

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/airut/airut/internal/testkit/githubtest"
)

var graphQLSeeds = []string{
	`{"query":"{ viewer { login } }"}`,
	`{"query":"query($o:String!){ repository(owner:$o, name:\"app\") { issues(first:1){ totalCount } } }","variables":{"o":"acme"}}`,
	`{"query":"mutation { addComment(input:{subjectId:\"I_kwDOABPHjc4AAAAB\", body:\"x\"}) { clientMutationId } }"}`,
	`{"query":"query A { viewer { login } } query B { ...F } fragment F on Query { search(query:\"x\", type:REPOSITORY, first:1) { repositoryCount } }","operationName":"A"}`,
	`[{"query":"{ viewer { login } }"}]`,
	`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"00"}}}`,
	`{"query":"{ node(id:\"MDEwOlJlcG9zaXRvcnkxMjk2MjY5\") { ... on Repository { name } } }"}`,
	`{"query":"{ a: viewer { b: repository(name:\"x\") { c: forks { totalCount } } } }"}`,
	`{"query":"{ viewer { login } }","query":"mutation { x }"}`,
	`{"query":"{ \u0076iewer { login } }"}`,
	`{"query":"{{{{{{{{"}`,
}

// FuzzGraphQLFilter runs the operation check and the repository check on
// arbitrary bodies. Neither may panic, and what the operation check
// allows must be one JSON object whose every operation selects only
// allowed fields at its root.
func FuzzGraphQLFilter(f *testing.F) {
	for _, s := range graphQLSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := newGQLRequest("POST", "/graphql", body, testRules)
		err := CheckGraphQL(r)
		g, perr := r.graphQL()
		if perr == nil {
			_ = checkRepoScope(g, testScope())
		}
		if err != nil {
			return
		}
		if perr != nil {
			t.Fatalf("allowed although unparsed: %v", perr)
		}
		trimmed := bytes.TrimSpace([]byte(body))
		var obj map[string]json.RawMessage
		if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(trimmed, &obj) != nil {
			t.Fatalf("allowed a body that is not one JSON object: %q", body)
		}
		if ext, ok := obj["extensions"]; ok && bytes.Contains(ext, []byte("persistedQuery")) {
			t.Fatalf("allowed a persisted query: %q", body)
		}
		for _, op := range g.doc.Operations {
			fields, err := rootFields(op.SelectionSet, nil)
			if err != nil {
				t.Fatalf("allowed an operation with a root fragment spread: %q", body)
			}
			patterns := testRules.Queries
			switch op.Operation {
			case "mutation":
				patterns = testRules.Mutations
			case "subscription":
				patterns = testRules.Subscriptions
			}
			for _, name := range fields {
				if name != "__typename" && !matchesAny(patterns, name) {
					t.Fatalf("allowed %s field %q: %q", op.Operation, name, body)
				}
			}
		}
	})
}

// FuzzNodeID decodes arbitrary ids without panicking, and reads back the
// repository of every id encoded the way GitHub does.
func FuzzNodeID(f *testing.F) {
	f.Add("R_kgDOABPHjQ", int64(1296269), int64(7))
	f.Add("MDEwOlJlcG9zaXRvcnkxMjk2MjY5", int64(1), int64(0))
	f.Add("I_kwDOABPHjc4AAAAB", int64(1<<40), int64(1<<62))
	f.Fuzz(func(t *testing.T, id string, repo, n int64) {
		decodeNodeID(id)
		if repo <= 0 || n < 0 || repo > 1<<62 || n > 1<<62 {
			return
		}
		for _, p := range []string{"R", "I", "PR"} {
			enc := githubtest.NodeID(p, 0, repo, n)
			if kind, got := decodeNodeID(enc); kind != nodeRepo || got != repo {
				t.Fatalf("decodeNodeID(%s) = %v, %d; want repository %d", enc, kind, got, repo)
			}
		}
	})
}
