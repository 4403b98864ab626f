package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airut/airut/internal/testkit/golden"
)

var editEnv = map[string]string{"MAIL_PASSWORD": "pw", "DOCS_BOT": "xoxb-1", "DOCS_APP": "xapp-1", "APP_KEY": "k"}

const newRepoBlock = `repo_url: https://github.com/example/new.git
email:
  account:
    username: new@example.com
    from: "New <new@example.com>"
    password: !env NEW_PASSWORD
  imap:
    server: imap.example.com
  smtp:
    server: smtp.example.com
  auth:
    authorized_senders: [alice@example.com]
    trusted_authserv_id: mx.example.com
`

// TestEditGolden: each edit changes only the lines of the key it edits;
// everything else in testdata/edit/input.yaml — comments, blank lines,
// indentation, quoting, tags, key order — stays byte for byte (the golden
// files show the whole result).
func TestEditGolden(t *testing.T) {
	input, err := os.ReadFile("testdata/edit/input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := func(s string) []string { return strings.Split(s, ".") }
	tests := []struct {
		name  string
		edit  func(e *Edit) error
		check func(t *testing.T, c *Config)
	}{
		{"set-literal", func(e *Edit) error { return e.Set(p("repos.app.model"), Value{Text: "sonnet"}) },
			func(t *testing.T, c *Config) { want(t, c.Repos["app"].Model, "sonnet") }},
		{"set-keeps-comment", func(e *Edit) error { return e.Set(p("execution.max_concurrent"), Value{Text: "4"}) },
			func(t *testing.T, c *Config) { want(t, c.Execution.MaxConcurrent, 4) }},
		{"set-env", func(e *Edit) error {
			return e.Set(p("repos.app.email.account.username"), Value{Kind: EnvRef, Text: "APP_KEY"})
		}, func(t *testing.T, c *Config) { want(t, c.Repos["app"].Email.Account.Username, "k") }},
		{"set-var", func(e *Edit) error { return e.Set(p("repos.docs.repo_url"), Value{Kind: VarRef, Text: "mail_host"}) },
			func(t *testing.T, c *Config) { want(t, c.Repos["docs"].RepoURL, "mail.example.com") }},
		{"env-to-literal", func(e *Edit) error {
			return e.Set(p("repos.app.email.imap.server"), Value{Text: "imap.example.org"})
		}, func(t *testing.T, c *Config) { want(t, c.Repos["app"].Email.IMAP.Server, "imap.example.org") }},
		{"quoted-string", func(e *Edit) error { return e.Set(p("repos.app.effort"), Value{Text: "high"}) },
			func(t *testing.T, c *Config) { want(t, c.Repos["app"].Effort, "high") }},
		{"add-nested", func(e *Edit) error { return e.Set(p("repos.docs.resource_limits.memory"), Value{Text: "8g"}) },
			func(t *testing.T, c *Config) { want(t, c.Repos["docs"].ResourceLimits.Memory, "8g") }},
		{"add-top-level", func(e *Edit) error { return e.Set(p("network.upstream_dns"), Value{Text: "1.1.1.1"}) },
			func(t *testing.T, c *Config) { want(t, c.Network.UpstreamDNS, "1.1.1.1") }},
		{"replace-block-scalar", func(e *Edit) error {
			return e.Set(p("repos.app.schedules.nightly.prompt"), Value{Text: "One line now."})
		}, func(t *testing.T, c *Config) { want(t, c.Repos["app"].Schedules["nightly"].Prompt, "One line now.") }},
		{"add-repo", func(e *Edit) error { return e.SetBlock(p("repos.new"), newRepoBlock) },
			func(t *testing.T, c *Config) {
				if c.Repos["new"] == nil {
					t.Errorf("new repo missing; errors %v", c.RepoErrors)
				}
			}},
		{"remove-repo-middle", func(e *Edit) error { return e.Delete(p("repos.app")) },
			func(t *testing.T, c *Config) {
				if c.Repos["app"] != nil || c.Repos["docs"] == nil {
					t.Errorf("repos: %v", c.Repos)
				}
			}},
		{"remove-repo-last", func(e *Edit) error { return e.Delete(p("repos.docs")) },
			func(t *testing.T, c *Config) {
				if c.Repos["docs"] != nil || c.Repos["app"] == nil {
					t.Errorf("repos: %v", c.Repos)
				}
			}},
		{"flow-to-block", func(e *Edit) error { return e.Set(p("dashboard.port"), Value{Text: "5300"}) },
			func(t *testing.T, c *Config) { want(t, c.Dashboard.Port, 5300) }},
		{"flow-delete", func(e *Edit) error { return e.Delete(p("repos.app.schedules.nightly.deliver.to")) },
			func(t *testing.T, c *Config) {
				if c.Repos["app"] != nil {
					t.Error("a schedule without deliver.to validated")
				}
			}},
		{"remove-list", func(e *Edit) error { return e.Delete(p("repos.app.resource_limits")) },
			func(t *testing.T, c *Config) { want(t, c.Repos["app"].ResourceLimits.Timeout, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewEdit(input)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.edit(e); err != nil {
				t.Fatal(err)
			}
			out := e.Bytes()
			golden.Check(t, filepath.Join("testdata", "edit", tt.name+".yaml"), out)
			env := map[string]string{"NEW_PASSWORD": "np"}
			for k, v := range editEnv {
				env[k] = v
			}
			c, err := Parse("airut.yaml", out, MapEnv(env), nil)
			if err != nil {
				t.Fatalf("the edited file does not load: %v\n%s", err, out)
			}
			tt.check(t, c)
			// Every line of the input outside the edit is still there, in order.
			assertSubsequence(t, string(input), string(out), tt.name)
		})
	}
}

func want[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v; want %v", got, want)
	}
}

// assertSubsequence checks that out keeps every line of in, in order,
// but for the lines the edit named name replaces or removes.
func assertSubsequence(t *testing.T, in, out, name string) {
	t.Helper()
	lost := strings.Count("\n"+Diff([]byte(in), []byte(out), nil), "\n-")
	wantLost := map[string]int{
		"replace-block-scalar": 4, "remove-repo-middle": 27, "remove-repo-last": 7, "remove-list": 2,
		"add-repo": 0, "add-nested": 0, "add-top-level": 0, "quoted-string": 0, "flow-to-block": 1, "flow-delete": 1,
	}
	w, ok := wantLost[name]
	if !ok {
		w = 1 // a one-line value
	}
	if lost != w {
		t.Errorf("%d input lines changed or lost; want %d", lost, w)
	}
}

func TestEditErrors(t *testing.T) {
	input, _ := os.ReadFile("testdata/edit/input.yaml")
	e, err := NewEdit(input)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Set([]string{"repos", "app", "model"}, Value{Kind: EnvRef, Text: "not a name"}); err == nil {
		t.Error("!env with a bad name accepted")
	}
	if err := e.Set([]string{"repos", "app", "model"}, Value{Text: "two\nlines"}); err == nil {
		t.Error("a multi-line literal accepted")
	}
	if _, err := NewEdit([]byte("a: [")); err == nil {
		t.Error("unparsable input accepted")
	}
	if string(e.Bytes()) != string(input) {
		t.Error("a failed edit changed the text")
	}
}

func TestEditEmpty(t *testing.T) {
	e, err := NewEdit(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Set([]string{"config_version"}, Value{Text: "5"}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetBlock([]string{"repos", "new"}, newRepoBlock); err != nil {
		t.Fatal(err)
	}
	c, err := Parse("airut.yaml", e.Bytes(), MapEnv(map[string]string{"NEW_PASSWORD": "x"}), nil)
	if err != nil || c.Repos["new"] == nil {
		t.Fatalf("%v %v\n%s", err, c, e.Bytes())
	}
}
