package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/airut/airut/internal/atomicfile"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		initial string // "" = no file yet
		perm    os.FileMode
	}{
		{"new file", "", 0o600},
		{"replace", "old content that is longer", 0o644},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f.json")
			if tc.initial != "" {
				if err := os.WriteFile(p, []byte(tc.initial), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := atomicfile.Write(p, []byte("new"), tc.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != "new" {
				t.Fatalf("content %q, %v; want new", got, err)
			}
			info, _ := os.Stat(p)
			if info.Mode().Perm() != tc.perm {
				t.Errorf("mode %o; want %o", info.Mode().Perm(), tc.perm)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries; want only the file (no temp files left)", len(entries))
			}
		})
	}
	if err := atomicfile.Write(filepath.Join(t.TempDir(), "missing", "f"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}
