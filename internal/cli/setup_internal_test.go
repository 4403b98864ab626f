package cli

import (
	"errors"
	"testing"

	"github.com/airut/airut/internal/config"
)

// TestSetupFindings: the first-run checklist names what is missing when
// `airut check` has no repository to report on.
func TestSetupFindings(t *testing.T) {
	noClaude := func(string) (string, error) { return "", errors.New("not found") }
	onPath := func(string) (string, error) { return "/usr/bin/claude", nil }
	withRepo := func(r config.Repo) *config.Config { return &config.Config{Repos: map[string]*config.Repo{"app": &r}} }
	tests := []struct {
		name string
		cfg  *config.Config
		look func(string) (string, error)
		want map[string]bool // title -> OK
	}{
		{"empty, no claude", &config.Config{}, noClaude,
			map[string]bool{"Claude Code": false, "Claude credential": false, "First repository": false}},
		{"empty, claude on PATH", &config.Config{}, onPath,
			map[string]bool{"Claude Code": true, "Claude credential": false, "First repository": false}},
		{"empty, execution.claude_binary", &config.Config{Execution: config.Execution{ClaudeBinary: "/opt/claude"}}, noClaude,
			map[string]bool{"Claude Code": true, "Claude credential": false, "First repository": false}},
		{"repo with a masked key", withRepo(config.Repo{MaskedSecrets: map[string]config.MaskedSecret{"ANTHROPIC_API_KEY": {}}}), noClaude,
			map[string]bool{"Claude credential": true, "First repository": true}},
		{"repo without a credential", withRepo(config.Repo{}), noClaude,
			map[string]bool{"Claude credential": false, "First repository": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]bool{}
			for _, f := range setupFindings(tt.cfg, tt.look) {
				got[f.Title] = f.OK
				if !f.OK && f.Fix == "" {
					t.Errorf("%s: not OK and no fix", f.Title)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("findings %v; want %v", got, tt.want)
			}
			for title, ok := range tt.want {
				if g, found := got[title]; !found || g != ok {
					t.Errorf("%s: ok=%v (found %v); want ok=%v", title, g, found, ok)
				}
			}
		})
	}
}
