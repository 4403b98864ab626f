package proxy

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/airut/airut/internal/allowlist"
	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit/githubtest"
)

var testRules = &allowlist.GraphQL{
	Queries:   []string{"viewer", "repository", "node", "nodes", "rateLimit", "user"},
	Mutations: []string{"addComment", "create*"},
}

func newGQLRequest(method, target, body string, rules *allowlist.GraphQL) *Request {
	hr := httptest.NewRequest(method, "https://api.github.com"+target, strings.NewReader(body))
	if body == "" {
		hr = httptest.NewRequest(method, "https://api.github.com"+target, nil)
	}
	return &Request{HTTP: hr, Host: "api.github.com", Path: target, maxBody: DefaultMaxBody,
		Decision: allowlist.Decision{Verdict: allowlist.Allowed, Rule: "url_prefixes[0]", GraphQL: rules}}
}

func jsonQ(q string) string {
	b, _ := jsonMarshal(map[string]any{"query": q})
	return b
}

func TestCheckGraphQL(t *testing.T) {
	tests := []struct {
		name, method, target, body string
		want                       string // "" allowed, else a substring of the refusal
	}{
		{"allowed query", "POST", "/graphql", jsonQ(`{ viewer { login } }`), ""},
		{"named query", "POST", "/graphql", jsonQ(`query Me { viewer { login } rateLimit { remaining } }`), ""},
		{"__typename always", "POST", "/graphql", jsonQ(`{ __typename viewer { login } }`), ""},
		{"field not listed", "POST", "/graphql", jsonQ(`{ organization(login: "x") { name } }`), `query field "organization" is not allowed by url_prefixes[0]`},
		{"alias resolved to the field", "POST", "/graphql", jsonQ(`{ viewer: organization(login: "x") { name } }`), `"organization"`},
		{"alias of an allowed field", "POST", "/graphql", jsonQ(`{ me: viewer { login } }`), ""},
		{"mutation listed", "POST", "/graphql", jsonQ(`mutation { addComment(input: {subjectId: "x", body: "y"}) { clientMutationId } }`), ""},
		{"mutation by pattern", "POST", "/graphql", jsonQ(`mutation { createIssue(input: {}) { clientMutationId } }`), ""},
		{"mutation not listed", "POST", "/graphql", jsonQ(`mutation { deleteRepository(input: {}) { clientMutationId } }`), `mutation field "deleteRepository" is not allowed`},
		{"second field of a mutation", "POST", "/graphql", jsonQ(`mutation { addComment(input: {}) { clientMutationId } mergePullRequest(input: {}) { clientMutationId } }`), `"mergePullRequest"`},
		{"subscriptions none", "POST", "/graphql", jsonQ(`subscription { viewer }`), `allowed subscription fields: none`},
		{"batch", "POST", "/graphql", `[{"query":"{ viewer { login } }"}]`, "batched requests"},
		{"batch after whitespace", "POST", "/graphql", " \n [{\"query\":\"{ viewer { login } }\"}]", "batched requests"},
		{"persisted query", "POST", "/graphql", `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`, "persisted queries"},
		{"persisted beside a query", "POST", "/graphql", `{"query":"{ viewer { login } }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`, "persisted queries"},
		{"no query", "POST", "/graphql", `{"operationName":"X"}`, "no query"},
		{"null query", "POST", "/graphql", `{"query":null}`, "no query"},
		{"query not a string", "POST", "/graphql", `{"query":{"a":1}}`, "query is not a string"},
		{"duplicate query key", "POST", "/graphql", `{"query":"{ viewer { login } }","query":"mutation { deleteRepository(input:{}) { clientMutationId } }"}`, "appears twice"},
		{"not json", "POST", "/graphql", `query { viewer }`, "not a JSON object"},
		{"trailing data", "POST", "/graphql", jsonQ(`{ viewer { login } }`) + `{}`, "not a JSON object"},
		{"unparseable", "POST", "/graphql", jsonQ(`{ viewer { login }`), "unparseable query"},
		{"empty document", "POST", "/graphql", jsonQ(` `), "no operation"},
		{"root fragment spread", "POST", "/graphql", jsonQ(`query { ...F } fragment F on Query { organization(login: "x") { name } }`), "fragment spread ...F at the root"},
		{"root inline fragment looked into", "POST", "/graphql", jsonQ(`query { ... on Query { organization(login: "x") { name } } }`), `"organization"`},
		{"nested fragment fine", "POST", "/graphql", jsonQ(`query { viewer { ...U } } fragment U on User { login }`), ""},
		{"two operations, none named", "POST", "/graphql", jsonQ(`query A { viewer { login } } query B { viewer { login } }`), "operationName names none"},
		{"operationName picks one", "POST", "/graphql", `{"query":"query A { viewer { login } } query B { rateLimit { remaining } }","operationName":"B"}`, ""},
		{"operationName names none", "POST", "/graphql", `{"query":"query A { viewer { login } }","operationName":"B"}`, `operationName "B" names no operation`},
		{"operationName twice", "POST", "/graphql", `{"query":"query A { viewer { login } } query A { viewer { login } }","operationName":"A"}`, "more than one operation"},
		{"every operation checked", "POST", "/graphql", `{"query":"query A { viewer { login } } mutation B { deleteRepository(input:{}) { clientMutationId } }","operationName":"A"}`, `"deleteRepository"`},
		{"operationName not a string", "POST", "/graphql", `{"query":"{ viewer { login } }","operationName":1}`, "operationName is not a string"},
		{"variables not an object", "POST", "/graphql", `{"query":"{ viewer { login } }","variables":[1]}`, "variables is not a JSON object"},
		{"get with query", "GET", "/graphql?query=" + url.QueryEscape(`{ viewer { login } }`), "", ""},
		{"get with a mutation", "GET", "/graphql?query=" + url.QueryEscape(`mutation { deleteRepository(input:{}) { clientMutationId } }`), "", `"deleteRepository"`},
		{"get without query", "GET", "/graphql", "", "no query"},
		{"get query twice", "GET", "/graphql?query=a&query=b", "", `"query" is given 2 times`},
		{"get persisted", "GET", "/graphql?extensions=" + url.QueryEscape(`{"persistedQuery":{"version":1}}`), "", "persisted queries"},
		{"post with query in the URL", "POST", "/graphql?query=" + url.QueryEscape(`{ viewer { login } }`), jsonQ(`{ viewer { login } }`), "in the URL of a POST"},
		{"deep nesting", "POST", "/graphql", jsonQ("{ viewer " + strings.Repeat("{ a ", 100) + strings.Repeat("}", 101)), "nested deeper than"},
		{"oversized", "POST", "/graphql", jsonQ("{ viewer { login } }" + strings.Repeat(" ", MaxGraphQLBody)), "over the 1048576-byte limit"},
		{"too many tokens", "POST", "/graphql", jsonQ("{ viewer { " + strings.Repeat("a ", maxGraphQLTokens) + "} }"), "more than 100000 tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newGQLRequest(tt.method, tt.target, tt.body, testRules)
			err := CheckGraphQL(r)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("blocked: %v; want allowed", err)
			case tt.want != "" && err == nil:
				t.Errorf("allowed; want blocked with %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("blocked with %q; want %q", err, tt.want)
			case tt.want != "" && !errors.Is(err, ErrGraphQL):
				t.Errorf("error %v does not match ErrGraphQL", err)
			}
		})
	}
}

func TestCheckGraphQLContentEncoding(t *testing.T) {
	r := newGQLRequest("POST", "/graphql", jsonQ(`{ viewer { login } }`), testRules)
	r.HTTP.Header.Set("Content-Encoding", "gzip")
	if err := CheckGraphQL(r); err == nil || !strings.Contains(err.Error(), "Content-Encoding") {
		t.Errorf("got %v; want a compressed body refused", err)
	}
}

// Node ids from GitHub's documentation and API: octocat/Hello-World is
// repository 1296269, the octocat user 583231.
func TestDecodeNodeID(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		id   string
		kind nodeKind
		repo int64
	}{
		{"MDEwOlJlcG9zaXRvcnkxMjk2MjY5", nodeRepo, 1296269}, // 010:Repository1296269
		{"R_kgDOABPHjQ", nodeRepo, 1296269},
		{"MDQ6VXNlcjU4MzIzMQ==", nodeOther, 0}, // 04:User583231
		{"MDQ6VXNlcjU4MzIzMQ", nodeOther, 0},   // unpadded
		{githubtest.NodeID("U", 0, 583231), nodeOther, 0},
		{githubtest.NodeID("O", 0, 9919), nodeOther, 0},
		{githubtest.NodeID("I", 0, 1296269, 7), nodeRepo, 1296269},
		{githubtest.NodeID("PR", 0, 1296269, 1<<40), nodeRepo, 1296269},
		{githubtest.NodeID("LA", 0, 1296269, 12), nodeRepo, 1296269},
		{githubtest.NodeID("R", 0, 5), nodeRepo, 5},
		{githubtest.NodeID("R", 0, 300), nodeRepo, 300},
		{githubtest.NodeID("R", 0, 70000), nodeRepo, 70000},
		{githubtest.NodeID("R", 0, 1<<33), nodeRepo, 1 << 33},
		{b64("06:Commit1296269:6dcb09b5b57875f334f61aebed695e2e4193db5e"), nodeRepo, 1296269},
		{b64("03:Ref1296269:refs/heads/main"), nodeRepo, 1296269},
		{b64("05:Issue1347"), nodeUnknown, 0},    // legacy ids of objects in a repository name only themselves
		{b64("09:Repository1"), nodeUnknown, 0},  // length prefix wrong
		{b64("010:Repository0"), nodeUnknown, 0}, // no such id
		{githubtest.NodeID("PVT", 0, 1296269, 3), nodeUnknown, 0},
		{githubtest.NodeID("R", 1, 1296269), nodeUnknown, 0}, // version not 0
		{githubtest.NodeID("R", 0), nodeUnknown, 0},
		{"R_kgDO", nodeUnknown, 0},         // truncated uint32
		{"R_!!!!", nodeUnknown, 0},         // not base64url
		{"R_kgDOABPHjQAA", nodeUnknown, 0}, // trailing bytes
		{"hello", nodeUnknown, 0},
		{"", nodeUnknown, 0},
		{"6dcb09b5b57875f334f61aebed695e2e4193db5e", nodeUnknown, 0},
	}
	for _, tt := range tests {
		kind, repo := decodeNodeID(tt.id)
		if kind != tt.kind || repo != tt.repo {
			t.Errorf("decodeNodeID(%q) = %v, %d; want %v, %d", tt.id, kind, repo, tt.kind, tt.repo)
		}
	}
}

func testScope() *secrets.RepoScope {
	return &secrets.RepoScope{App: "GH_TOKEN", Repos: []secrets.Repository{
		{ID: 1296269, NodeID: "R_kgDOABPHjQ", FullName: "acme/app"},
	}}
}

func TestCheckRepoScope(t *testing.T) {
	app := githubtest.Repo{ID: 1296269, Owner: "acme", Name: "app"}
	other := githubtest.Repo{ID: 555, Owner: "acme", Name: "other"}
	issue := githubtest.NodeID("I", 0, app.ID, 3)
	otherIssue := githubtest.NodeID("I", 0, other.ID, 3)
	user := githubtest.NodeID("U", 0, 583231)
	body := func(q string, vars map[string]any) string {
		b, _ := jsonMarshal(map[string]any{"query": q, "variables": vars})
		return b
	}
	tests := []struct {
		name, body string
		want       string
	}{
		{"configured repository", body(`{ repository(owner: "acme", name: "app") { issues(first: 5) { nodes { title } } } }`, nil), ""},
		{"case-insensitive", body(`{ repository(owner: "ACME", name: "App") { name } }`, nil), ""},
		{"other repository", body(`{ repository(owner: "acme", name: "other") { name } }`, nil), "repository acme/other is not one of the GitHub App's repositories (acme/app)"},
		{"other repository by alias", body(`{ mine: repository(owner: "acme", name: "app") { name } theirs: repository(owner: "evil", name: "x") { name } }`, nil), "evil/x"},
		{"variables", body(`query($o: String!, $n: String!) { repository(owner: $o, name: $n) { name } }`, map[string]any{"o": "acme", "n": "app"}), ""},
		{"variables elsewhere", body(`query($o: String!, $n: String!) { repository(owner: $o, name: $n) { name } }`, map[string]any{"o": "acme", "n": "other"}), "acme/other"},
		{"variable default", body(`query($n: String = "other") { repository(owner: "acme", name: $n) { name } }`, nil), "acme/other"},
		{"unset variable", body(`query($o: String!) { repository(owner: $o, name: "app") { name } }`, nil), "without a known owner"},
		{"owner only", body(`{ repository(owner: "acme") { name } }`, nil), "without a name"},
		{"name under its owner", body(`{ organization(login: "acme") { repository(name: "app") { name } } }`, nil), ""},
		{"other name under its owner", body(`{ user(login: "acme") { repository(name: "other") { name } } }`, nil), "acme/other"},
		{"name without owner", body(`{ viewer { repository(name: "app") { name } } }`, nil), "without a known owner"},
		{"parent's repository", body(`{ node(id: "`+issue+`") { ... on Issue { repository { name } } } }`, nil), ""},
		{"node in scope", body(`{ node(id: "`+app.NodeID()+`") { id } }`, nil), ""},
		{"legacy node in scope", body(`{ node(id: "`+app.LegacyNodeID()+`") { id } }`, nil), ""},
		{"node out of scope", body(`{ node(id: "`+other.NodeID()+`") { id } }`, nil), "belongs to repository id 555"},
		{"legacy node out of scope", body(`{ node(id: "`+other.LegacyNodeID()+`") { id } }`, nil), "belongs to repository id 555"},
		{"nodes, one out", body(`{ nodes(ids: ["`+issue+`", "`+otherIssue+`"]) { id } }`, nil), "belongs to repository id 555"},
		{"undecodable node", body(`{ node(id: "MDU6SXNzdWUxMzQ3") { id } }`, nil), "is not a node id that can be checked"},
		{"user node", body(`{ node(id: "`+user+`") { id } }`, nil), ""},
		{"user node, then cross-repo issues", body(`{ node(id: "`+user+`") { ... on User { issues(first: 1) { nodes { title } } } } }`, nil), `field "issues" outside a repository`},
		{"mutation on an issue in scope", body(`mutation { addComment(input: {subjectId: "`+issue+`", body: "hi", clientMutationId: "x"}) { clientMutationId } }`, nil), ""},
		{"mutation on an issue out of scope", body(`mutation { addComment(input: {subjectId: "`+otherIssue+`", body: "hi"}) { clientMutationId } }`, nil), "subjectId"},
		{"repositoryId in variables", body(`mutation($in: CreateIssueInput!) { createIssue(input: $in) { clientMutationId } }`, map[string]any{"in": map[string]any{"repositoryId": other.NodeID(), "title": "t"}}), "repositoryId"},
		{"repositoryId in scope", body(`mutation($in: CreateIssueInput!) { createIssue(input: $in) { clientMutationId } }`, map[string]any{"in": map[string]any{"repositoryId": app.NodeID(), "title": "t", "labelIds": []any{githubtest.NodeID("LA", 0, app.ID, 1)}}}), ""},
		{"ids list from a variable", body(`mutation($l: [ID!]!) { addLabelsToLabelable(input: {labelableId: "`+issue+`", labelIds: $l}) { clientMutationId } }`, map[string]any{"l": []any{githubtest.NodeID("LA", 0, other.ID, 1)}}), "labelIds"},
		{"repositoryNameWithOwner", body(`mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: "acme/other", branchName: "main"}, expectedHeadOid: "abc", message: {headline: "x"}}) { clientMutationId } }`, nil), "acme/other"},
		{"repositoryNameWithOwner in scope", body(`mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: "acme/app", branchName: "main"}, expectedHeadOid: "abc", message: {headline: "x"}}) { clientMutationId } }`, nil), ""},
		{"search", body(`{ search(query: "org:acme", type: REPOSITORY, first: 5) { repositoryCount } }`, nil), `field "search"`},
		{"resource", body(`{ resource(url: "https://github.com/acme/other") { url } }`, nil), `field "resource"`},
		{"multi-repo connection", body(`{ viewer { repositories(first: 100) { nodes { name } } } }`, nil), `field "repositories"`},
		{"forks of a repository in scope", body(`{ repository(owner: "acme", name: "app") { forks(first: 5) { nodes { name } } } }`, nil), `field "forks"`},
		{"issues of the owner", body(`{ repository(owner: "acme", name: "app") { owner { ... on User { issues(first: 5) { totalCount } } } } }`, nil), `field "issues" outside a repository`},
		{"cross-repo issues of a user", body(`{ user(login: "acme") { pullRequests(first: 5) { totalCount } } }`, nil), `field "pullRequests" outside a repository`},
		{"fragment on Repository", body(`{ repository(owner: "acme", name: "app") { ...R } } fragment R on Repository { issues(first: 1) { totalCount } }`, nil), ""},
		{"fragment on User", body(`{ viewer { ...U } } fragment U on User { issues(first: 1) { totalCount } }`, nil), `field "issues" outside a repository`},
		{"fragment hiding another repository", body(`{ viewer { ...U } } fragment U on User { login } fragment X on Query { repository(owner: "evil", name: "x") { name } }`, nil), "evil/x"},
		{"nothing repository-shaped", body(`{ viewer { login } rateLimit { remaining } }`, nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newGQLRequest("POST", "/graphql", tt.body, nil)
			g, err := r.graphQL()
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			err = checkRepoScope(g, testScope())
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("blocked: %v; want allowed", err)
			case tt.want != "" && err == nil:
				t.Errorf("allowed; want blocked with %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("blocked with %q; want %q", err, tt.want)
			}
		})
	}
}

func jsonMarshal(v any) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return strings.TrimSpace(b.String()), err
}
