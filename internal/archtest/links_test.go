package archtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/airut/airut/internal/testkit"
)

// TestDocLinks: every relative link in README.md and docs/ resolves to a
// file inside the repository. A user has the repository and nothing
// beside it (the README once linked ../shared/DESIGN.md).
func TestDocLinks(t *testing.T) {
	root := testkit.ModuleRoot()
	files, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	files = append(files, filepath.Join(root, "README.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			abs := filepath.Clean(filepath.Join(filepath.Dir(file), target))
			rel, err := filepath.Rel(root, abs)
			checked++
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				t.Errorf("%s: link %s leaves the repository", filepath.Base(file), m[1])
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s: link %s: %s does not exist", filepath.Base(file), m[1], rel)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no links found: the pattern is broken")
	}
}
