package allowlist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/testkit/golden"
)

// TestParseInvalidFiles parses every testdata/invalid/*.yaml; each states
// the error text it expects in "# want: <substring>" comment lines, and
// the whole output is in the .err file beside it (-update rewrites them),
// so a change to any message is seen in review.
func TestParseInvalidFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/invalid/*.yaml files")
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for line := range strings.Lines(string(data)) {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					wants = append(wants, strings.TrimSpace(w))
				}
			}
			if len(wants) == 0 {
				t.Fatalf("%s has no '# want:' line", file)
			}
			al, err := Parse(data, name)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v; want an error", al)
			}
			if al != nil {
				t.Errorf("Parse returned %+v with its error; want nil", al)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false; want true", err)
			}
			for _, w := range wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not contain %q", err, w)
				}
			}
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *Allowlist
	}{
		{"empty file", "", &Allowlist{}},
		{"only comments", "# nothing allowed yet\n", &Allowlist{}},
		{"empty mapping", "{}", &Allowlist{}},
		{"null document", "~\n", &Allowlist{}},
		{"null lists mean none", "domains:\nurl_prefixes:\n", &Allowlist{}},
		{"empty lists", "domains: []\nurl_prefixes: []\n", &Allowlist{}},
		{
			name: "spec example",
			src: `
domains:            # host patterns: every path and method allowed
  - pypi.org
  - "*.pythonhosted.org"
url_prefixes:       # host + path pattern, optional methods
  - host: api.github.com
    path: /repos/acme/app*
    methods: [GET, POST]
  - host: statsig.anthropic.com
    path: ""          # empty path = any path
    methods: [POST]
`,
			want: &Allowlist{
				Domains: []string{"pypi.org", "*.pythonhosted.org"},
				URLPrefixes: []URLPrefix{
					{Host: "api.github.com", Path: "/repos/acme/app*", Methods: []string{"GET", "POST"}},
					{Host: "statsig.anthropic.com", Methods: []string{"POST"}},
				},
			},
		},
		{
			name: "normalised hosts and methods",
			src: `
domains: [PyPI.org., "[2001:DB8::1]", "*.Example.COM"]
url_prefixes:
  - {host: API.GitHub.com., methods: [get, Patch, propfind], path: /Keep/Case}
  - {host: x.example.com, methods: []}
`,
			want: &Allowlist{
				Domains: []string{"pypi.org", "2001:db8::1", "*.example.com"},
				URLPrefixes: []URLPrefix{
					{Host: "api.github.com", Path: "/Keep/Case", Methods: []string{"GET", "PATCH", "PROPFIND"}},
					{Host: "x.example.com"},
				},
			},
		},
		{
			name: "graphql",
			src: `
url_prefixes:
  - host: api.github.com
    path: /graphql
    methods: [POST]
    graphql:
      queries: [repository, "viewer*"]
      mutations: [createPullRequest]
      subscriptions:
  - host: api.github.com
    path: /api/graphql
    graphql: {}
`,
			want: &Allowlist{
				URLPrefixes: []URLPrefix{
					{
						Host: "api.github.com", Path: "/graphql", Methods: []string{"POST"},
						GraphQL: &GraphQL{Queries: []string{"repository", "viewer*"}, Mutations: []string{"createPullRequest"}},
					},
					{Host: "api.github.com", Path: "/api/graphql", GraphQL: &GraphQL{}},
				},
			},
		},
		{
			name: "aliases between entries",
			src: `
url_prefixes:
  - {host: a.example.com, methods: &ro [GET, HEAD]}
  - {host: b.example.com, methods: *ro}
`,
			want: &Allowlist{
				URLPrefixes: []URLPrefix{
					{Host: "a.example.com", Methods: []string{"GET", "HEAD"}},
					{Host: "b.example.com", Methods: []string{"GET", "HEAD"}},
				},
			},
		},
		{
			name: "wildcard host patterns",
			src:  `domains: ["*", "api?.example.com", "*.[ab].example.com", "2001:db8::*"]`,
			want: &Allowlist{Domains: []string{"*", "api?.example.com", "*.[ab].example.com", "2001:db8::*"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.src), "network-allowlist.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	src := "domains: x\nurl_prefixes:\n  - host: ''\n    methods: GET\n    paths: /x\n"
	_, err := Parse([]byte(src), "f.yaml")
	if err == nil {
		t.Fatal("Parse succeeded; want an error")
	}
	want := strings.Join([]string{
		"f.yaml:1: domains: must be a list of host patterns, got string",
		"f.yaml:3: url_prefixes[0].host: host pattern must not be empty",
		"f.yaml:4: url_prefixes[0].methods: must be a list of HTTP methods, got string",
		"f.yaml:5: url_prefixes[0].paths: unknown key (expected one of: host, path, methods, graphql)",
	}, "\n")
	if got := err.Error(); got != want {
		t.Errorf("error =\n%s\nwant\n%s", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "network-allowlist.yaml")
	if err := os.WriteFile(good, []byte("domains: [pypi.org]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("domains: pypi.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")

	al, err := Load(good)
	if err != nil {
		t.Fatalf("Load(%s): %v", good, err)
	}
	if diff := cmp.Diff(&Allowlist{Domains: []string{"pypi.org"}}, al); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}

	_, err = Load(bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":1: domains:") {
		t.Errorf("Load(bad) error = %v; want one starting with %q", err, bad+":1: domains:")
	}

	_, err = Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) error = %v; want a not-exist error naming %s", err, missing)
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("domains: [\"*\"]\nurl_prefixes: [{host: '*', path: '/*', methods: [GET]}]\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		al, err := Parse(data, "f.yaml")
		if err != nil {
			if al != nil {
				t.Errorf("Parse returned an allowlist with error %v", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			return
		}
		for _, d := range al.Domains {
			if d == "" || d != strings.ToLower(d) || strings.HasSuffix(d, ".") {
				t.Errorf("domain %q is not a normalised non-empty pattern", d)
			}
		}
		for _, e := range al.URLPrefixes {
			if e.Host == "" || e.Host != strings.ToLower(e.Host) {
				t.Errorf("host %q is not a normalised non-empty pattern", e.Host)
			}
			for _, m := range e.Methods {
				if !contains(knownMethods, m) {
					t.Errorf("method %q is not a known upper-case method", m)
				}
			}
		}
		al.Match("api.github.com", "/graphql?x=1", "POST")
		al.AllowsGET("pypi.org")
	})
}
