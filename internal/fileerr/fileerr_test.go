package fileerr_test

import (
	"testing"

	"github.com/airut/airut/internal/fileerr"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name, file string
		line       int
		key, msg   string
		want       string
	}{
		{"full", "airut.yaml", 42, "repos.app.email.imap.server", "required", "airut.yaml:42: repos.app.email.imap.server: required"},
		{"no line", "airut.yaml", 0, "repos", "bad", "airut.yaml: repos: bad"},
		{"no key", "a.yaml", 3, "", "invalid YAML", "a.yaml:3: invalid YAML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fileerr.Format(tc.file, tc.line, tc.key, tc.msg); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}
