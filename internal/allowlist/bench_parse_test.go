package allowlist

import "testing"

// benchAllowlist is a typical repository allowlist: GitHub, PyPI, npm, Go
// modules and Anthropic.
const benchAllowlist = `
domains:
  - pypi.org
  - "*.pythonhosted.org"
  - registry.npmjs.org
  - proxy.golang.org
  - sum.golang.org
url_prefixes:
  - {host: api.github.com, path: "/repos/acme/app*", methods: [GET, POST, PATCH]}
  - {host: github.com, path: "/acme/app.git/*", methods: [GET, POST]}
  - host: api.github.com
    path: /graphql
    methods: [POST]
    graphql:
      queries: [repository, viewer]
      mutations: [createPullRequest, addComment]
  - {host: api.anthropic.com, path: "/v1/messages*", methods: [POST]}
  - {host: statsig.anthropic.com, methods: [POST]}
`

// BenchmarkParse parses one allowlist, as the gateway does once per task.
func BenchmarkParse(b *testing.B) {
	data := []byte(benchAllowlist)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, "network-allowlist.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}
