package sandboxcli_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/airut/airut/internal/testkit"
)

// A stand-in for the GitHub Actions runner, as far as action.yml needs one:
// it reads action.yml, evaluates the expressions it uses, runs its `run:`
// steps with bash the way the runner does (bash --noprofile --norc -eo
// pipefail, in GITHUB_WORKSPACE, with GITHUB_OUTPUT read back as the
// step's outputs), and plays the actions it uses: setup-go (Go is on PATH
// here), and actions/cache restore and save over a directory that stands
// for GitHub's cache service. An expression, an action or a step key it
// does not know fails the test: it never guesses.

type actionFile struct {
	Name        string                 `yaml:"name"`
	Description string                 `yaml:"description"`
	Author      string                 `yaml:"author"`
	Branding    map[string]string      `yaml:"branding"`
	Inputs      map[string]actionInput `yaml:"inputs"`
	Runs        struct {
		Using string       `yaml:"using"`
		Steps []actionStep `yaml:"steps"`
	} `yaml:"runs"`
}

type actionInput struct {
	Description string `yaml:"description"`
	Required    bool   `yaml:"required"`
	Default     string `yaml:"default"`
}

type actionStep struct {
	Name  string            `yaml:"name"`
	ID    string            `yaml:"id"`
	If    string            `yaml:"if"`
	Uses  string            `yaml:"uses"`
	With  map[string]string `yaml:"with"`
	Shell string            `yaml:"shell"`
	Env   map[string]string `yaml:"env"`
	Run   string            `yaml:"run"`
}

func loadAction(t *testing.T) *actionFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testkit.ModuleRoot(), "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var a actionFile
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if a.Runs.Using != "composite" {
		t.Fatalf("action.yml: runs.using %q; want composite", a.Runs.Using)
	}
	return &a
}

// runner is one job on a fresh runner: its own RUNNER_TEMP, the event's
// github context, and a cache service shared with other runners.
type runner struct {
	t         *testing.T
	action    *actionFile
	workspace string
	temp      string
	cache     string            // the cache service: one directory per key
	github    map[string]string // the github context the action reads
	env       []string          // the variables GitHub sets for every step
	log       bytes.Buffer      // every step's output
	steps     map[string]map[string]string
	ran       []string // names of the steps that ran
}

// newRunner prepares a job for a pull_request event on the workspace,
// which targets base.
func newRunner(t *testing.T, workspace, cache, base string) *runner {
	t.Helper()
	r := &runner{t: t, action: loadAction(t), workspace: workspace, temp: t.TempDir(), cache: cache,
		steps: map[string]map[string]string{}}
	root := testkit.ModuleRoot()
	r.github = map[string]string{
		"base_ref":                        base,
		"token":                           "ghs_" + testkit.RandomHex(18),
		"action_path":                     root,
		"event.repository.default_branch": "main",
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GITHUB_") || strings.HasPrefix(k, "RUNNER_") || k == "AIRUT_PROXY_BINARY" {
			continue
		}
		r.env = append(r.env, kv)
	}
	r.env = append(r.env, "CI=true", "GITHUB_ACTIONS=true", "GITHUB_EVENT_NAME=pull_request",
		"GITHUB_WORKSPACE="+workspace, "GITHUB_ACTION_PATH="+root, "GITHUB_BASE_REF="+base,
		"GITHUB_HEAD_REF=pr", "GITHUB_REF=refs/pull/1/merge", "GITHUB_SERVER_URL=https://github.com",
		"GITHUB_REPOSITORY=acme/app", "RUNNER_OS=Linux", "RUNNER_TEMP="+r.temp,
		// airut-sandbox's state directory, under this job.
		"XDG_STATE_HOME="+filepath.Join(r.temp, "state"))
	return r
}

// run runs the action with inputs as a workflow's `with:` gives them and
// returns the exit code of the step that failed, or 0.
func (r *runner) run(inputs map[string]string) int {
	t := r.t
	t.Helper()
	in := map[string]string{}
	for name, def := range r.action.Inputs {
		if v, ok := inputs[name]; ok {
			in[name] = v
			continue
		}
		if def.Required {
			t.Fatalf("input %s is required", name)
		}
		in[name] = r.expand(def.Default, nil)
	}
	for name := range inputs {
		if _, ok := r.action.Inputs[name]; !ok {
			t.Fatalf("action.yml has no input %q", name)
		}
	}
	for _, s := range r.action.Runs.Steps {
		if s.If != "" && !truthy(r.eval(s.If, in)) {
			continue
		}
		r.ran = append(r.ran, s.Name)
		fmt.Fprintf(&r.log, "##[group]%s\n", s.Name)
		var code int
		switch {
		case s.Uses != "" && s.Run == "":
			code = r.uses(s, in)
		case s.Run != "" && s.Uses == "":
			code = r.script(s, in)
		default:
			t.Fatalf("step %q: want exactly one of uses and run", s.Name)
		}
		if code != 0 {
			return code
		}
	}
	return 0
}

var pinned = regexp.MustCompile(`^[a-z0-9-]+/[a-z0-9-]+(/[a-z0-9-]+)?@[0-9a-f]{40}$`)

func (r *runner) uses(s actionStep, in map[string]string) int {
	t := r.t
	if !pinned.MatchString(s.Uses) {
		t.Fatalf("step %q: uses %q is not pinned to a commit", s.Name, s.Uses)
	}
	with := map[string]string{}
	for k, v := range s.With {
		with[k] = r.expand(v, in)
	}
	action, _, _ := strings.Cut(s.Uses, "@")
	outputs := map[string]string{}
	switch action {
	case "actions/setup-go":
		// Go is installed here; what the step is given must exist.
		for _, k := range []string{"go-version-file", "cache-dependency-path"} {
			if _, err := os.Stat(with[k]); err != nil {
				t.Fatalf("setup-go %s: %v", k, err)
			}
		}
	case "actions/cache/restore":
		key, path := with["key"], with["path"]
		if key == "" || path == "" {
			t.Fatalf("cache restore without key or path: %v", with)
		}
		outputs["cache-hit"] = "false"
		if _, err := os.Stat(filepath.Join(r.cache, key)); err == nil {
			if err := os.CopyFS(path, os.DirFS(filepath.Join(r.cache, key))); err != nil {
				t.Fatalf("cache restore: %v", err)
			}
			outputs["cache-hit"] = "true"
		}
		fmt.Fprintf(&r.log, "cache restore %s: hit=%s\n", key, outputs["cache-hit"])
	case "actions/cache/save":
		key, path := with["key"], with["path"]
		if _, err := os.Stat(filepath.Join(r.cache, key)); err == nil {
			// GitHub refuses to overwrite a key, and says so without failing.
			fmt.Fprintf(&r.log, "cache save %s: already exists\n", key)
			break
		}
		if err := os.CopyFS(filepath.Join(r.cache, key), os.DirFS(path)); err != nil {
			t.Fatalf("cache save: %v", err)
		}
		fmt.Fprintf(&r.log, "cache save %s\n", key)
	default:
		t.Fatalf("step %q: the test runner does not know %s", s.Name, action)
	}
	if s.ID != "" {
		r.steps[s.ID] = outputs
	}
	return 0
}

func (r *runner) script(s actionStep, in map[string]string) int {
	t := r.t
	if s.Shell != "bash" {
		t.Fatalf("step %q: shell %q; the runner's bash is what this test runs", s.Name, s.Shell)
	}
	dir := t.TempDir()
	file, out := filepath.Join(dir, "step.sh"), filepath.Join(dir, "output")
	if err := os.WriteFile(file, []byte(r.expand(s.Run, in)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", file)
	cmd.Dir = r.workspace
	cmd.Env = append(append([]string(nil), r.env...), "GITHUB_OUTPUT="+out)
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+r.expand(v, in))
	}
	cmd.Stdout, cmd.Stderr = &r.log, &r.log
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("step %q: %v", s.Name, err)
		}
		code = ee.ExitCode()
	}
	outputs := map[string]string{}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.Contains(k, "<<") {
			t.Fatalf("step %q: GITHUB_OUTPUT line %q is not name=value", s.Name, sc.Text())
		}
		outputs[k] = v
	}
	if s.ID != "" {
		r.steps[s.ID] = outputs
	}
	return code
}

var exprRe = regexp.MustCompile(`\$\{\{(.*?)\}\}`)

// expand replaces every ${{ expression }} in s.
func (r *runner) expand(s string, in map[string]string) string {
	return exprRe.ReplaceAllStringFunc(s, func(m string) string {
		v := r.eval(exprRe.FindStringSubmatch(m)[1], in)
		if b, ok := v.(bool); ok {
			return fmt.Sprint(b)
		}
		return v.(string)
	})
}

// eval evaluates the part of GitHub's expression language action.yml
// uses: context paths, 'string' literals, == and != (case-insensitive, as
// GitHub compares strings), and &&.
func (r *runner) eval(expr string, in map[string]string) any {
	expr = strings.TrimSpace(expr)
	if parts := strings.Split(expr, "&&"); len(parts) > 1 {
		for _, p := range parts {
			if !truthy(r.eval(p, in)) {
				return false
			}
		}
		return true
	}
	for _, op := range []string{"!=", "=="} {
		if a, b, ok := strings.Cut(expr, op); ok {
			eq := strings.EqualFold(r.operand(a, in), r.operand(b, in))
			return eq == (op == "==")
		}
	}
	return r.operand(expr, in)
}

func (r *runner) operand(s string, in map[string]string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "'") && strings.HasSuffix(s, "'") && len(s) >= 2 {
		return s[1 : len(s)-1]
	}
	ctx, rest, _ := strings.Cut(s, ".")
	switch ctx {
	case "inputs":
		if v, ok := in[rest]; ok {
			return v
		}
	case "github":
		if v, ok := r.github[rest]; ok {
			return v
		}
	case "steps":
		id, output, ok := strings.Cut(rest, ".outputs.")
		if _, known := r.steps[id]; ok && (known || r.stepDeclared(id)) {
			return r.steps[id][output] // a skipped step's outputs are empty
		}
	}
	r.t.Fatalf("action.yml uses the expression %q, which the test runner does not model", s)
	return ""
}

func (r *runner) stepDeclared(id string) bool {
	for _, s := range r.action.Runs.Steps {
		if s.ID == id {
			return true
		}
	}
	return false
}

func truthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v != ""
	}
	return false
}
