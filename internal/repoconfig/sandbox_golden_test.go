package repoconfig_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airut/airut/internal/repoconfig"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

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
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", golden, diff)
			}
		})
	}
}
