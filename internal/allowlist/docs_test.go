package allowlist

import (
	"os"
	"regexp"
	"testing"
)

// TestDocsAllowlists: every allowlist example in docs/airut-folder.md
// parses, and lets through the requests its stack makes (and not others).
func TestDocsAllowlists(t *testing.T) {
	data, err := os.ReadFile("../../docs/airut-folder.md")
	if err != nil {
		t.Fatal(err)
	}
	type req struct{ host, path, method string }
	allowed := map[string][]req{
		"anthropic": {{"api.anthropic.com", "/v1/messages?beta=true", "POST"}},
		"github": {{"github.com", "/acme/app.git/info/refs?service=git-upload-pack", "GET"},
			{"github.com", "/acme/app.git/git-receive-pack", "POST"},
			{"api.github.com", "/repos/acme/app/pulls", "POST"}, {"api.github.com", "/graphql", "POST"}},
		"npm": {{"registry.npmjs.org", "/left-pad", "GET"}},
		"pypi": {{"pypi.org", "/simple/requests/", "GET"},
			{"files.pythonhosted.org", "/packages/ab/cd/requests-2.32.0-py3-none-any.whl", "GET"}},
		"go": {{"proxy.golang.org", "/github.com/google/go-cmp/@v/list", "GET"},
			{"sum.golang.org", "/lookup/github.com/google/go-cmp@v0.7.0", "GET"}},
	}
	blocked := map[string][]req{
		"anthropic": {{"api.anthropic.com", "/v1/files", "GET"}},
		"github":    {{"github.com", "/other/repo.git/info/refs", "GET"}, {"gist.github.com", "/", "POST"}},
		"npm":       {{"registry.npmjs.org", "/-/user/org.couchdb.user:x", "PUT"}},
		"pypi":      {{"upload.pypi.org", "/legacy/", "POST"}},
		"go":        {{"github.com", "/google/go-cmp", "GET"}},
	}
	blocks := regexp.MustCompile("(?s)<!-- allowlist ([a-z]+) -->\n```yaml\n(.*?)```").FindAllSubmatch(data, -1)
	if len(blocks) != len(allowed) {
		t.Fatalf("found %d allowlist examples; want %d", len(blocks), len(allowed))
	}
	for _, b := range blocks {
		name := string(b[1])
		a, err := Parse(b[2], "airut-folder.md:"+name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, r := range allowed[name] {
			if d := a.Match(r.host, r.path, r.method); d.Verdict != Allowed {
				t.Errorf("%s: %s %s%s: %v; want allowed", name, r.method, r.host, r.path, d.Verdict)
			}
		}
		for _, r := range blocked[name] {
			if d := a.Match(r.host, r.path, r.method); d.Verdict == Allowed {
				t.Errorf("%s: %s %s%s allowed; want blocked", name, r.method, r.host, r.path)
			}
		}
	}
}
