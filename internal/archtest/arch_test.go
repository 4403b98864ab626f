package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/airut/airut/internal/testkit"
)

const module = "github.com/airut/airut/"

// allowed lists, per package, the internal packages it may import. A
// package missing from the table fails the test, so a new package has to
// take its place in the architecture deliberately. "*" allows anything
// (main packages and test support).
var allowed = map[string][]string{
	"internal/allowlist":  {"internal/yamlwalk"},
	"internal/yamlwalk":   {},
	"internal/atomicfile": {},
	"internal/redact":     {},
	"internal/config":     {"internal/yamlwalk", "internal/redact"},
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
	"internal/gateway": {"internal/atomicfile", "internal/config", "internal/redact", "internal/repoconfig", "internal/allowlist", "internal/claudecli",
		"internal/secrets", "internal/sandbox", "internal/agent", "internal/conversation", "internal/gitmirror",
		"internal/channel", "internal/channel/email", "internal/channel/slack", "internal/markdown"},
	"internal/sandboxcli": {"internal/repoconfig", "internal/sandbox", "internal/secrets", "internal/allowlist", "internal/gitmirror"},
	"internal/cli":        {"*"},
	"internal/archtest":   {"*"},
}

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
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
		if strings.HasPrefix(rel, "cmd/") || strings.HasPrefix(rel, "internal/testkit") {
			continue // main packages and test support may use anything
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
