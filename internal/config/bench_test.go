package config

import (
	"os"
	"testing"
)

// BenchmarkParse measures one load of the full example config, the work a
// hot reload or an editor's validation does per change.
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/valid/full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	env := MapEnv(testEnv)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("full.yaml", data, env, nil); err != nil {
			b.Fatal(err)
		}
	}
}
