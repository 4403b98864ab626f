package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestWarmSandboxes(t *testing.T) {
	tests := []struct {
		name, exec string
		want       int
		wantErr    string
	}{
		{"default is max_concurrent", "{max_concurrent: 4}", 4, ""},
		{"set", "{max_concurrent: 4, warm_sandboxes: 2}", 2, ""},
		{"zero disables", "{max_concurrent: 4, warm_sandboxes: 0}", 0, ""},
		{"capped at max_concurrent", "{max_concurrent: 2, warm_sandboxes: 9}", 2, ""},
		{"negative", "{max_concurrent: 2, warm_sandboxes: -1}", 0, "airut.yaml:2: execution.warm_sandboxes: must be 0 or more"},
		{"wrong type", "{max_concurrent: 2, warm_sandboxes: lots}", 0, "warm_sandboxes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("airut.yaml", []byte(fmt.Sprintf("\nexecution: %s\nrepos: {}\n", tc.exec)), MapEnv(nil), nil)
			if err == nil {
				err = cfg.Err()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Execution.WarmSandboxCount(); got != tc.want {
				t.Errorf("WarmSandboxCount() = %d; want %d", got, tc.want)
			}
		})
	}
}
