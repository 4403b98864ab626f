package proxy

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// The GraphQL filter's cost per request, beside the plain masked-secret
// path, in one run and interleaved: the same POST body with the masked
// Authorization swapped, once to a REST path (no GraphQL check) and once
// to /graphql under a rule with graphql patterns (parse and check).

const benchGraphQLAllowlist = `
url_prefixes:
  - host: api.example.com
    path: /graphql
    methods: [POST]
    graphql:
      queries: [repository, viewer]
      mutations: [addComment]
  - host: api.example.com
    path: /rest*
`

// benchQuery is what gh sends for `gh pr list`, roughly.
var benchQuery = func() string {
	b, _ := jsonMarshal(map[string]any{
		"query": `query PullRequestList($owner: String!, $repo: String!, $limit: Int!, $endCursor: String) {
  repository(owner: $owner, name: $repo) {
    pullRequests(first: $limit, after: $endCursor, states: [OPEN], orderBy: {field: CREATED_AT, direction: DESC}) {
      totalCount
      nodes { number title state url headRefName isDraft author { login } labels(first: 20) { nodes { name color } } createdAt updatedAt }
      pageInfo { hasNextPage endCursor }
    }
  }
}`,
		"variables": map[string]any{"owner": "acme", "repo": "app", "limit": 30},
	})
	return b
}()

func BenchmarkGraphQLFilter(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Allowlist = mustAllowlist(b, benchGraphQLAllowlist) })
	c := e.px.client(false)
	post := func(path string) time.Duration {
		req, _ := http.NewRequest("POST", "https://api.example.com"+path, strings.NewReader(benchQuery))
		req.Header.Set("Authorization", "Bearer "+e.token)
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		return time.Since(start)
	}
	sides := []string{"/rest", "/graphql"}
	names := []string{"masked", "graphql"}
	lat := make([][]time.Duration, len(sides))
	const perIter = 200
	for b.Loop() {
		for range perIter {
			for i, p := range sides {
				lat[i] = append(lat[i], post(p))
			}
		}
		e.px.log.take()
		e.tlsUp.take()
	}
	b.StopTimer()
	p50 := make([]float64, len(sides))
	for i, name := range names {
		l := lat[i]
		slices.Sort(l)
		pct := func(p float64) float64 { return float64(l[int(float64(len(l)-1)*p)].Microseconds()) }
		p50[i] = pct(0.50)
		b.ReportMetric(p50[i], "p50-µs-"+name)
		b.ReportMetric(pct(0.99), "p99-µs-"+name)
	}
	b.ReportMetric(p50[1]/p50[0], "graphql/masked-p50")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkGraphQLCheck is the filter alone on benchQuery: parse, the
// operation check and the repository check.
func BenchmarkGraphQLCheck(b *testing.B) {
	scope := testScope()
	b.SetBytes(int64(len(benchQuery)))
	for b.Loop() {
		r := newGQLRequest("POST", "/graphql", benchQuery, testRules)
		if err := CheckGraphQL(r); err != nil {
			b.Fatal(err)
		}
		g, _ := r.graphQL()
		if err := checkRepoScope(g, scope); err != nil {
			b.Fatal(err)
		}
	}
}
