package allowlist

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// matchFile is one testdata/match/*.yaml: an allowlist and requests.
type matchFile struct {
	Allowlist yaml.Node   `yaml:"allowlist"`
	Cases     []matchCase `yaml:"cases"`
}

type matchCase struct {
	Name string `yaml:"name"`
	// Host is passed to Match as is; RawHost goes through NormalizeHost
	// first (want "bad_host" when it fails).
	Host    string `yaml:"host"`
	RawHost string `yaml:"raw_host"`
	// Path is passed to Match as is; RawPath goes through CleanPath first
	// (want "bad_path" when it fails).
	Path    string   `yaml:"path"`
	RawPath string   `yaml:"raw_path"`
	Method  string   `yaml:"method"`
	Want    string   `yaml:"want"`
	Rule    string   `yaml:"rule"`
	GraphQL *GraphQL `yaml:"graphql"`
}

func TestMatchFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "match", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/match/*.yaml files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			mf := readMatchFile(t, file)
			raw, err := yaml.Marshal(&mf.Allowlist)
			if err != nil {
				t.Fatal(err)
			}
			al, err := Parse(raw, filepath.Base(file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, c := range mf.Cases {
				t.Run(c.Name, func(t *testing.T) {
					got, gotRule, gotGraphQL := runMatchCase(al, c)
					if got != c.Want || gotRule != c.Rule {
						t.Errorf("Match(%q, %q, %q) = %s %q; want %s %q", c.Host+c.RawHost, c.Path+c.RawPath, c.Method, got, gotRule, c.Want, c.Rule)
					}
					if diff := cmp.Diff(c.GraphQL, gotGraphQL); diff != "" {
						t.Errorf("Decision.GraphQL mismatch (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

func readMatchFile(t *testing.T, file string) matchFile {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var mf matchFile
	if err := dec.Decode(&mf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(mf.Cases) == 0 {
		t.Fatalf("%s: no cases", file)
	}
	return mf
}

func runMatchCase(al *Allowlist, c matchCase) (verdict, rule string, graphQL *GraphQL) {
	host, path := c.Host, c.Path
	if c.RawHost != "" {
		h, err := NormalizeHost(c.RawHost)
		if err != nil {
			return "bad_host", "", nil
		}
		host = h
	}
	if c.RawPath != "" {
		p, err := CleanPath(c.RawPath)
		if err != nil {
			return "bad_path", "", nil
		}
		path = p
	}
	d := al.Match(host, path, c.Method)
	return d.Verdict.String(), d.Rule, d.GraphQL
}

func TestMatchNilAndEmpty(t *testing.T) {
	tests := []struct {
		name string
		al   *Allowlist
	}{
		{"nil allowlist", nil},
		{"zero allowlist", &Allowlist{}},
		{"parsed empty file", mustParse(t, "")},
		{"parsed empty mapping", mustParse(t, "{}")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.al.Match("example.com", "/", "GET")
			if want := (Decision{Verdict: BlockedHost}); got != want {
				t.Errorf("Match = %+v; want %+v", got, want)
			}
			if tt.al.AllowsGET("example.com") {
				t.Errorf("AllowsGET = true; want false")
			}
		})
	}
}

func TestZeroVerdictBlocks(t *testing.T) {
	var d Decision
	if d.Verdict == Allowed {
		t.Errorf("zero Decision is %s; want a blocking verdict", d.Verdict)
	}
}

func TestVerdictString(t *testing.T) {
	tests := []struct {
		v    Verdict
		want string
	}{
		{Allowed, "allowed"},
		{BlockedHost, "blocked_host"},
		{BlockedMethod, "blocked_method"},
		{Verdict(42), "Verdict(42)"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("Verdict(%d).String() = %q; want %q", int(tt.v), got, tt.want)
		}
	}
}

func TestMatchHost(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"*.github.com", "api.github.com", true},
		{"*.github.com", "github.com", false},
		{"*.GitHub.com", "API.github.COM.", true},
		{"github.com.", "github.com", true},
		{"github.com", "github.com..", false},
		{"*", "anything", true},
		{"[ab].com", "a.com", false}, // no '*' or '?': compared exactly
		{"[ab].com", "[ab].com", true},
		{"*[ab].com", "xa.com", true},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.host, func(t *testing.T) {
			if got := MatchHost(tt.pattern, tt.host); got != tt.want {
				t.Errorf("MatchHost(%q, %q) = %v; want %v", tt.pattern, tt.host, got, tt.want)
			}
		})
	}
}

func TestAllowsGET(t *testing.T) {
	al := mustParse(t, `
domains: ["*.pythonhosted.org"]
url_prefixes:
  - {host: docs.example.com, methods: [GET, HEAD]}
  - {host: any.example.com}
  - {host: post.example.com, methods: [POST]}
  - {host: path.example.com, path: /docs*, methods: [GET]}
  - {host: "*.wild.example.com", path: "", methods: [get]}
`)
	tests := []struct {
		host string
		want bool
	}{
		{"files.pythonhosted.org", true},
		{"docs.example.com", true},
		{"DOCS.example.com.", true},
		{"any.example.com", true},
		{"post.example.com", false},
		{"path.example.com", false},
		{"a.wild.example.com", true},
		{"other.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := al.AllowsGET(tt.host); got != tt.want {
				t.Errorf("AllowsGET(%q) = %v; want %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestEmptyHostNeverMatches(t *testing.T) {
	al := mustParse(t, "domains: [\"*\"]\nurl_prefixes: [{host: \"*\"}]\n")
	for _, host := range []string{"", "."} {
		if d := al.Match(host, "/", "GET"); d.Verdict != BlockedHost {
			t.Errorf("Match(%q) = %s; want blocked_host", host, d.Verdict)
		}
		if al.AllowsGET(host) {
			t.Errorf("AllowsGET(%q) = true; want false", host)
		}
	}
	if d := al.Match("x", "/", "GET"); d.Verdict != Allowed {
		t.Errorf("Match(%q) = %s; want allowed", "x", d.Verdict)
	}
}

func mustParse(t testing.TB, src string) *Allowlist {
	t.Helper()
	al, err := Parse([]byte(src), "network-allowlist.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return al
}

// BenchmarkMatch matches against a 50-entry allowlist shaped like a real
// one: wildcard and exact domains, path patterns with method lists, and a
// request that falls through to the last entry.
func BenchmarkMatch(b *testing.B) {
	var src strings.Builder
	src.WriteString("domains:\n")
	for i := range 20 {
		if i%2 == 0 {
			fmt.Fprintf(&src, "  - \"*.svc%d.example.com\"\n", i)
		} else {
			fmt.Fprintf(&src, "  - host%d.example.org\n", i)
		}
	}
	src.WriteString("url_prefixes:\n")
	for i := range 29 {
		fmt.Fprintf(&src, "  - {host: api.github.com, path: \"/repos/acme/app%d/*\", methods: [GET, POST]}\n", i)
	}
	src.WriteString("  - {host: api.github.com, path: /graphql, methods: [POST]}\n")
	al := mustParse(b, src.String())
	if n := len(al.Domains) + len(al.URLPrefixes); n != 50 {
		b.Fatalf("allowlist has %d entries; want 50", n)
	}
	requests := []struct{ host, path, method string }{
		{"api.github.com", "/graphql", "POST"},
		{"x.svc18.example.com", "/", "GET"},
		{"api.github.com", "/repos/acme/app28/pulls?state=open&per_page=100", "GET"},
		{"evil.example.net", "/exfiltrate", "PUT"},
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range requests {
			al.Match(r.host, r.path, r.method)
		}
	}
}
