package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/airut/airut/internal/atomicfile"
	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/yamlwalk"
)

// ErrStale is returned by Store.Save when airut.yaml changed on disk since
// the editor loaded it (HTTP 409).
var ErrStale = errors.New("airut.yaml changed on disk since it was loaded; reload it and edit again")

// InvalidError is returned by Store.Save for a config with problems (HTTP
// 422); nothing was written.
type InvalidError struct{ Problems Errors }

func (e *InvalidError) Error() string { return "invalid config:\n" + e.Problems.Error() }

// Store is airut.yaml and the .env beside it as the config editor reads
// and writes them: saves are atomic, mode 0600, serialised, and refused
// when the file changed since it was read (the hash) or does not
// validate. Secrets go to .env, never into airut.yaml.
type Store struct {
	// Path is airut.yaml's path.
	Path string
	// Env is the environment !env reads before .env (as for the
	// Reloader: the process environment from before .env was loaded).
	Env Environ

	mu sync.Mutex
}

// Hash is the editor's version of a file's content: the sha256 of its
// bytes, hex. A missing file has the hash of no bytes.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func (s *Store) dotEnvPath() string { return filepath.Join(filepath.Dir(s.Path), DotEnvName) }

// Read returns airut.yaml's bytes and their Hash; a missing file is empty
// (the first run).
func (s *Store) Read() ([]byte, string, error) {
	data, err := os.ReadFile(s.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	return data, Hash(data), nil
}

// Parse loads data as a reload would (the environment, then .env), with
// a registry of the secrets it resolved.
func (s *Store) Parse(data []byte) (*Config, *redact.Registry, error) {
	reg := redact.NewRegistry()
	dotenv, err := ReadDotEnv(s.dotEnvPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, reg, err
	}
	for _, v := range dotenv {
		reg.Add(v)
	}
	env := s.Env
	if env == nil {
		env = noEnv
	}
	cfg, err := Parse(filepath.Base(s.Path), data, Overlay(env, dotenv), reg)
	return cfg, reg, err
}

// Validate checks data as `airut config validate` and a reload would,
// and also that no secret is written literally in it. It returns every
// problem (empty when valid) and the registry of the secrets it resolved,
// for masking a diff.
func (s *Store) Validate(data []byte) (Errors, *redact.Registry) {
	cfg, reg, err := s.Parse(data)
	name := filepath.Base(s.Path)
	var probs Errors
	if err != nil {
		if !errors.As(err, &probs) {
			probs = Errors{{File: name, Message: err.Error()}}
		}
	} else if es, ok := cfg.Err().(Errors); ok {
		probs = es
	}
	probs = append(probs, literalSecrets(name, data, cfg)...)
	return probs.Sorted(), reg
}

// literalSecrets reports the secret fields whose value is written in the
// file itself rather than as !env: the editor keeps secrets in .env.
func literalSecrets(name string, data []byte, cfg *Config) Errors {
	if cfg == nil {
		return nil
	}
	var out Errors
	lines := strings.Split(string(data), "\n")
	for id, r := range cfg.Repos {
		for _, f := range repoSecrets(r) {
			v := f.value.Reveal()
			if len(v) < 4 {
				continue
			}
			for i, l := range lines {
				if strings.Contains(l, v) {
					out = append(out, &yamlwalk.Error{File: name, Line: i + 1,
						Path:    yamlwalk.Path{}.Key(append([]string{"repos", id}, f.path...)...),
						Message: "a secret written in airut.yaml: put it in .env (the editor's Replace does) and write !env NAME"})
					break
				}
			}
		}
	}
	return out
}

type secretField struct {
	path  []string
	value redact.Secret
}

// repoSecrets lists a repo's secret values with their key paths.
func repoSecrets(r *Repo) []secretField {
	var out []secretField
	add := func(v redact.Secret, path ...string) {
		if v != "" {
			out = append(out, secretField{path, v})
		}
	}
	if e := r.Email; e != nil {
		add(e.Account.Password, "email", "account", "password")
		if o := e.MicrosoftOAuth2; o != nil {
			add(o.ClientSecret, "email", "microsoft_oauth2", "client_secret")
		}
	}
	if s := r.Slack; s != nil {
		add(s.BotToken, "slack", "bot_token")
		add(s.AppToken, "slack", "app_token")
	}
	for k, v := range r.Secrets {
		add(v, "secrets", k)
	}
	for k, m := range r.MaskedSecrets {
		add(m.Value, "masked_secrets", k, "value")
	}
	for k, c := range r.SigningCredentials {
		add(c.SecretAccessKey.Value, "signing_credentials", k, "secret_access_key")
		if c.SessionToken != nil {
			add(c.SessionToken.Value, "signing_credentials", k, "session_token")
		}
	}
	for k, g := range r.GitHubAppCredentials {
		add(g.PrivateKey, "github_app_credentials", k, "private_key")
	}
	return out
}

// Save writes data as airut.yaml when the file on disk still has the hash
// ifMatch and data validates; it returns the new hash. Saves are
// serialised: of two editors that loaded the same file, the second to
// save gets ErrStale.
func (s *Store) Save(data []byte, ifMatch string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, cur, err := s.Read()
	if err != nil {
		return "", err
	}
	if ifMatch != cur {
		return "", ErrStale
	}
	if probs, _ := s.Validate(data); len(probs) > 0 {
		return "", &InvalidError{Problems: probs}
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return "", fmt.Errorf("save config: %w", err)
	}
	if err := atomicfile.Write(s.Path, data, 0o600); err != nil {
		return "", fmt.Errorf("save config: %w", err)
	}
	return Hash(data), nil
}

// SetSecret writes NAME=value into the .env beside airut.yaml (atomically,
// mode 0600), keeping its other lines and comments; the config refers to
// it as !env NAME.
func (s *Store) SetSecret(name, value string) error {
	if !envNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a variable name", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.dotEnvPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", DotEnvName, err)
	}
	out, err := setDotEnv(data, name, value)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", DotEnvName, err)
	}
	return atomicfile.Write(s.dotEnvPath(), out, 0o600)
}

// SecretSet reports whether .env (or the environment) has NAME, for the
// editor's "set" / "not set".
func (s *Store) SecretSet(name string) bool {
	if s.Env != nil {
		if v, ok := s.Env(name); ok && v != "" {
			return true
		}
	}
	dotenv, _ := ReadDotEnv(s.dotEnvPath())
	return dotenv[name] != ""
}

// setDotEnv returns .env's text with NAME set to value: the line that
// sets it replaced in place (its later duplicates dropped), else a line
// appended; every other line kept as it was.
func setDotEnv(data []byte, name, value string) ([]byte, error) {
	if strings.ContainsAny(value, "\x00") {
		return nil, errors.New("a secret cannot contain NUL")
	}
	line := name + "=" + quoteDotEnv(value)
	var out []string
	done := false
	text := strings.TrimSuffix(string(data), "\n")
	if text != "" {
		for _, l := range strings.Split(text, "\n") {
			t := strings.TrimPrefix(strings.TrimSpace(l), "export ")
			if k, _, ok := strings.Cut(t, "="); ok && strings.TrimSpace(k) == name {
				if !done {
					out = append(out, line)
					done = true
				}
				continue
			}
			out = append(out, l)
		}
	}
	if !done {
		out = append(out, line)
	}
	return []byte(strings.Join(out, "\n") + "\n"), nil
}

// quoteDotEnv writes a value so ReadDotEnv reads it back unchanged.
func quoteDotEnv(v string) string {
	if !strings.ContainsAny(v, "'\n\r") {
		return "'" + v + "'"
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(v) + `"`
}

// Diff is a line diff of airut.yaml before and after an edit, for the
// editor's Review, with every value reg knows (the secrets) masked.
func Diff(before, after []byte, reg *redact.Registry) string {
	a := splitLines(string(before))
	b := splitLines(string(after))
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i++
			j++
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "+%d: %s\n", j+1, b[j])
			j++
		default:
			fmt.Fprintf(&out, "-%d: %s\n", i+1, a[i])
			i++
		}
	}
	if reg == nil {
		return out.String()
	}
	return reg.Redact(out.String())
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
