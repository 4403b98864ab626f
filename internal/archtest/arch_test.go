package archtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/airut/airut/internal/testkit"
)

const module = "github.com/airut/airut/"

// allowed lists, per package, the internal packages it may import. A
// package missing from the table fails the test, so a new package has to
// take its place in the architecture deliberately. "*" allows anything
// (test support). Main packages are in the table too: main stays thin, and
// calls one package.
var allowed = map[string][]string{
	"cmd/airut":           {"internal/cli"},
	"cmd/airut-sandbox":   {"internal/sandboxcli"},
	"cmd/airut-proxy":     {"internal/proxy"},
	"internal/allowlist":  {"internal/yamlwalk"},
	"internal/yamlwalk":   {},
	"internal/atomicfile": {},
	"internal/redact":     {},
	"internal/config":     {"internal/yamlwalk", "internal/redact", "internal/atomicfile"}, // the editor's saves
	"internal/repoconfig": {"internal/allowlist", "internal/yamlwalk"},
	// secrets matches scopes and header names with the allowlist's
	// Python-fnmatch host rules: one matcher for both, by design.
	"internal/secrets":       {"internal/allowlist", "internal/atomicfile"},
	"internal/proxy":         {"internal/allowlist", "internal/secrets", "internal/atomicfile"}, // the CA file, written atomically
	"internal/sandbox":       {"internal/allowlist", "internal/secrets"},
	"internal/agent":         {},
	"internal/claudecli":     {"internal/atomicfile"},
	"internal/conversation":  {"internal/atomicfile"},
	"internal/gitmirror":     {},
	"internal/channel":       {},
	"internal/markdown":      {},
	"internal/channel/email": {"internal/channel", "internal/markdown"},
	"internal/channel/slack": {"internal/channel", "internal/markdown"},
	"internal/channel/web":   {"internal/channel", "internal/markdown"},
	// The gateway imports the channel contract only: channels are
	// registered with it from cli.
	"internal/gateway": {"internal/atomicfile", "internal/config", "internal/redact", "internal/repoconfig", "internal/allowlist", "internal/claudecli",
		"internal/secrets", "internal/sandbox", "internal/agent", "internal/conversation", "internal/gitmirror",
		"internal/channel"},
	// The dashboard reads the gateway (views, bus) and acts only through
	// Submit and Cancel; agent and channel for their types, web for the
	// replies its channel keeps.
	"internal/dashboard": {"internal/gateway", "internal/config", "internal/redact", "internal/markdown",
		"internal/agent", "internal/channel", "internal/channel/web"},
	"internal/scheduler":  {"internal/gateway", "internal/config"},
	"internal/sandboxcli": {"internal/repoconfig", "internal/sandbox", "internal/secrets", "internal/allowlist", "internal/gitmirror"},
	// The config editor: the config's store and edits, nothing of the
	// gateway or the dashboard's own server.
	"internal/dashboard/configui": {"internal/config", "internal/redact"},
	"internal/cli":                {"*"},
	"internal/archtest":           {"*"},
}

// forbidden lists arrows DESIGN.md rules out however indirect: a package
// (or every package under a prefix ending in "/") must not depend, through
// any chain of imports, on these.
var forbidden = map[string][]string{
	// The proxy knows nothing of Podman, conversations or channels.
	"internal/proxy":     {"internal/sandbox", "internal/gateway", "internal/conversation", "internal/channel", "internal/config"},
	"cmd/airut-proxy":    {"internal/sandbox", "internal/gateway", "internal/conversation", "internal/channel", "internal/config"},
	"internal/allowlist": {"internal/sandbox", "internal/proxy", "internal/secrets"},
	"internal/secrets":   {"internal/sandbox", "internal/proxy"},
	// The sandbox knows nothing of email, Slack or conversations.
	"internal/sandbox": {"internal/conversation", "internal/channel", "internal/gateway", "internal/config", "internal/agent"},
	// Channels know nothing of containers, the gateway or the config.
	"internal/channel/":     {"internal/sandbox", "internal/gateway", "internal/config", "internal/conversation", "internal/proxy"},
	"internal/channel":      {"internal/sandbox", "internal/gateway", "internal/config", "internal/conversation"},
	"internal/agent":        {"internal/"},
	"internal/gitmirror":    {"internal/"},
	"internal/markdown":     {"internal/"},
	"internal/conversation": {"internal/sandbox", "internal/gateway", "internal/channel", "internal/config"},
	"internal/gateway":      {"internal/channel/", "internal/proxy", "internal/cli"},
	"cmd/airut-sandbox":     {"internal/gateway", "internal/channel", "internal/conversation"},
}

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = testkit.ModuleRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportDirections(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module)
		if strings.HasPrefix(rel, "internal/testkit") {
			continue // test support may use anything
		}
		rules, ok := allowed[rel]
		if !ok {
			t.Errorf("%s is not in the architecture table of archtest: add it deliberately", rel)
			continue
		}
		if len(rules) == 1 && rules[0] == "*" {
			continue
		}
		ok2 := map[string]bool{}
		for _, r := range rules {
			ok2[r] = true
		}
		var bad []string
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			irel := strings.TrimPrefix(imp, module)
			if !ok2[irel] {
				bad = append(bad, irel)
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%s imports %s: not allowed by DESIGN.md's package table", rel, strings.Join(bad, ", "))
		}
	}
}

func TestPackagesHaveDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", strings.TrimPrefix(p.ImportPath, module))
		}
	}
}

// TestIndirectDependencies checks the forbidden table against every
// package's transitive dependencies (go list -deps), so a forbidden arrow
// cannot sneak in through a package in between.
func TestIndirectDependencies(t *testing.T) {
	for _, v := range indirectViolations(listPackages(t)) {
		t.Error(v)
	}
}

// TestIndirectViolationsDetected proves the check bites: a proxy that
// reaches the sandbox through a package in between is reported, with the
// chain.
func TestIndirectViolationsDetected(t *testing.T) {
	pkgs := []pkg{
		{ImportPath: module + "internal/proxy", Imports: []string{module + "internal/allowlist"},
			Deps: []string{module + "internal/allowlist", module + "internal/sandbox"}},
		{ImportPath: module + "internal/allowlist", Imports: []string{module + "internal/sandbox"},
			Deps: []string{module + "internal/sandbox"}},
		{ImportPath: module + "internal/sandbox"},
	}
	got := indirectViolations(pkgs)
	want := "internal/proxy depends on internal/sandbox (through internal/proxy → internal/allowlist → internal/sandbox)"
	if !slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, want) }) {
		t.Errorf("violations: %q; want %q", got, want)
	}
}

func matches(rule, rel string) bool {
	return rel == rule || (strings.HasSuffix(rule, "/") && strings.HasPrefix(rel, rule))
}

func indirectViolations(pkgs []pkg) []string {
	imports := map[string][]string{}
	for _, p := range pkgs {
		imports[p.ImportPath] = p.Imports
	}
	var out []string
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, module)
		for owner, bans := range forbidden {
			if !matches(owner, rel) {
				continue
			}
			for _, dep := range p.Deps {
				drel, ok := strings.CutPrefix(dep, module)
				if !ok {
					continue
				}
				for _, ban := range bans {
					if matches(ban, drel) {
						out = append(out, fmt.Sprintf("%s depends on %s (through %s): DESIGN.md forbids it",
							rel, drel, chain(imports, p.ImportPath, dep)))
					}
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// chain finds one import path from one package to another.
func chain(imports map[string][]string, from, to string) string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for n := to; n != ""; n = prev[n] {
				path = append([]string{strings.TrimPrefix(n, module)}, path...)
			}
			return strings.Join(path, " → ")
		}
		for _, next := range imports[cur] {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return "?"
}
