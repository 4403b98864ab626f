package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airut/airut/internal/redact"
)

func newTestStore(t *testing.T, yaml, dotenv string) *Store {
	t.Helper()
	dir := t.TempDir()
	s := &Store{Path: filepath.Join(dir, FileName), Env: MapEnv(map[string]string{})}
	if yaml != "" {
		writeTest(t, s.Path, yaml)
	}
	if dotenv != "" {
		writeTest(t, filepath.Join(dir, DotEnvName), dotenv)
	}
	return s
}

func TestStoreSave(t *testing.T) {
	s := newTestStore(t, watchYAML("opus"), "MAIL_PW=pw\n")
	data, hash, err := s.Read()
	if err != nil || hash != Hash(data) {
		t.Fatal(err)
	}
	next := []byte(strings.Replace(string(data), "model: opus", "model: sonnet", 1))
	newHash, err := s.Save(next, hash)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(s.Path)
	if string(got) != string(next) || newHash != Hash(next) {
		t.Errorf("saved %q", got)
	}
	if fi, _ := os.Stat(s.Path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v; want 0600", fi.Mode().Perm())
	}
	// The old hash is stale now.
	if _, err := s.Save(data, hash); !errors.Is(err, ErrStale) {
		t.Errorf("save with a stale hash: %v; want ErrStale", err)
	}
	// Invalid: 422 with line and key, nothing written.
	bad := []byte(string(next) + "execution:\n  max_concurrent: 0\n")
	_, err = s.Save(bad, newHash)
	var inv *InvalidError
	if !errors.As(err, &inv) || len(inv.Problems) != 1 || inv.Problems[0].Line != 12 || inv.Problems[0].Key() != "execution.max_concurrent" {
		t.Fatalf("save of an invalid config: %v", err)
	}
	if got, _ := os.ReadFile(s.Path); string(got) != string(next) {
		t.Error("an invalid save was written")
	}
	// An invalid repo section is an error for the editor too.
	badRepo := []byte(strings.Replace(string(next), "model: sonnet", "modle: sonnet", 1))
	if _, err := s.Save(badRepo, newHash); !errors.As(err, &inv) || inv.Problems[0].Key() != "repos.app.modle" {
		t.Errorf("save of an invalid repo: %v", err)
	}
}

// TestStoreFirstSave: no file yet (first run) has the hash of no bytes,
// and the directory is created.
func TestStoreFirstSave(t *testing.T) {
	s := &Store{Path: filepath.Join(t.TempDir(), "new", FileName)}
	data, hash, err := s.Read()
	if err != nil || len(data) != 0 || hash != Hash(nil) {
		t.Fatalf("%q %s %v", data, hash, err)
	}
	if _, err := s.Save([]byte("config_version: 5\n"), hash); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(s.Path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v %v", fi, err)
	}
}

// TestStoreConcurrentSaves: two editors that loaded the same file: one
// save wins, the other gets ErrStale, and the file is one of them whole.
func TestStoreConcurrentSaves(t *testing.T) {
	s := newTestStore(t, watchYAML("opus"), "MAIL_PW=pw\n")
	data, hash, _ := s.Read()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			model := []string{"sonnet", "haiku"}[i%2]
			_, errs[i] = s.Save([]byte(strings.Replace(string(data), "model: opus", "model: "+model, 1)), hash)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrStale):
			t.Errorf("save: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d saves succeeded; want exactly 1", ok)
	}
	got, _ := os.ReadFile(s.Path)
	if !strings.Contains(string(got), "model: sonnet") && !strings.Contains(string(got), "model: haiku") {
		t.Errorf("file after the race: %s", got)
	}
}

// TestStoreLiteralSecret: the editor refuses a secret written into
// airut.yaml and points at its line.
func TestStoreLiteralSecret(t *testing.T) {
	s := newTestStore(t, "", "")
	yaml := strings.Replace(watchYAML("opus"), "!env MAIL_PW", "hunter2-literal", 1)
	probs, _ := s.Validate([]byte(yaml))
	if len(probs) != 1 || probs[0].Key() != "repos.app.email.account.password" || probs[0].Line != 7 ||
		strings.Contains(probs[0].Error(), "hunter2") {
		t.Errorf("problems: %v", probs)
	}
}

func TestSetSecret(t *testing.T) {
	const before = "# secrets for airut\nexport OTHER='keep me'\n\nMAIL_PW=old # rotated monthly\nMAIL_PW=dup\n"
	s := newTestStore(t, watchYAML("opus"), before)
	if s.SecretSet("NEW_ONE") {
		t.Error("NEW_ONE set before it was written")
	}
	for _, v := range []string{"new-pw", `it's "quoted" \ and`, "multi\nline"} {
		if err := s.SetSecret("MAIL_PW", v); err != nil {
			t.Fatal(err)
		}
		got, err := ReadDotEnv(filepath.Join(filepath.Dir(s.Path), DotEnvName))
		if err != nil {
			t.Fatal(err)
		}
		if got["MAIL_PW"] != v || got["OTHER"] != "keep me" {
			t.Errorf("after setting %q: %q", v, got)
		}
	}
	if err := s.SetSecret("NEW_ONE", "x1"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(filepath.Dir(s.Path), DotEnvName))
	want := "# secrets for airut\nexport OTHER='keep me'\n\nMAIL_PW=\"multi\\nline\"\nNEW_ONE='x1'\n"
	if string(data) != want {
		t.Errorf(".env:\n%s\nwant:\n%s", data, want)
	}
	if fi, _ := os.Stat(filepath.Join(filepath.Dir(s.Path), DotEnvName)); fi.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %v", fi.Mode().Perm())
	}
	if !s.SecretSet("NEW_ONE") {
		t.Error("NEW_ONE not set")
	}
	if err := s.SetSecret("bad name", "x"); err == nil {
		t.Error("a bad name accepted")
	}
}

func TestDiffMasksSecrets(t *testing.T) {
	reg := redact.NewRegistry()
	reg.Add("s3cret-value")
	d := Diff([]byte("a: 1\nb: s3cret-value\nc: 3\n"), []byte("a: 1\nb: other\nc: 3\nd: 4\n"), reg)
	if strings.Contains(d, "s3cret-value") || !strings.Contains(d, "-2: b: ") || !strings.Contains(d, "+2: b: other") || !strings.Contains(d, "+4: d: 4") {
		t.Errorf("diff:\n%s", d)
	}
}
