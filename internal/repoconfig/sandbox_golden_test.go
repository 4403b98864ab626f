package repoconfig_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/repoconfig"
	"github.com/airut/airut/internal/testkit/golden"
)

// TestParseSandboxGolden parses each testdata/sandbox/*.yaml and compares
// the whole error output with the .err file beside it (-update rewrites).
func TestParseSandboxGolden(t *testing.T) {
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"TOKEN": "ghp_real_token_value", "EMPTY": ""}[name]
		return v, ok
	}
	files, err := filepath.Glob(filepath.Join("testdata", "sandbox", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/sandbox/*.yaml: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			s, err := repoconfig.ParseSandbox(data, filepath.Base(file), env)
			if err == nil {
				t.Fatalf("ParseSandbox succeeded with %+v; want errors", s)
			}
			got := err.Error() + "\n"
			if strings.Contains(got, "ghp_real_token_value") {
				t.Errorf("errors show a secret:\n%s", got)
			}
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".err", []byte(got))
		})
	}
}
