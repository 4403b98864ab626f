package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/airut/airut/internal/redact"
	"github.com/airut/airut/internal/yamlwalk"
)

// Load reads the config file at path. The .env file beside it, if any, is
// read into a map and consulted for !env names that env does not have, so
// existing variables win; the process environment is never changed (a
// caller that wants children to see .env can export ReadDotEnv's result
// itself). Every secret resolved is added to reg, even from repos that
// fail validation.
//
// The error is non-nil when the file cannot be read or parsed, or when a
// setting outside repos: is invalid; it is then an Errors value where
// validation found the problems. Invalid repos do not make Load fail: see
// Config.RepoErrors and Config.Err.
func Load(path string, env Environ, reg *redact.Registry) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	dotenv, err := ReadDotEnv(filepath.Join(filepath.Dir(path), DotEnvName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return Parse(filepath.Base(path), data, Overlay(env, dotenv), reg)
}

// Overlay returns an Environ that looks names up in env first and then in
// fallback.
func Overlay(env Environ, fallback map[string]string) Environ {
	if env == nil {
		env = noEnv
	}
	return func(name string) (string, bool) {
		if v, ok := env(name); ok {
			return v, true
		}
		v, ok := fallback[name]
		return v, ok
	}
}

// MapEnv returns an Environ backed by a map, for tests and callers that
// build the environment themselves.
func MapEnv(m map[string]string) Environ {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// Parse is Load without the file system: name is the file name used in
// error messages, env resolves !env.
func Parse(name string, data []byte, env Environ, reg *redact.Registry) (*Config, error) {
	root, err := yamlwalk.Parse(name, data)
	if err != nil {
		return nil, err
	}
	if env == nil {
		env = noEnv
	}
	w := yamlwalk.New(name, walkOptions(env))
	cfg := &Config{}
	cfg.SetDefaults()
	doc := w.Root(root) // an empty file is a valid config with no repos
	switch {
	case doc.IsNull():
	case doc.YAML().Kind != yaml.MappingNode:
		doc.Errorf("the config must be a mapping, got %s", doc.Describe())
	default:
		doc.Decode(cfg)
	}
	(&validator{w: w}).validate(cfg)
	reg.Add(w.Secrets()...)

	// Messages quote bad values; one read from the environment may be a
	// secret in the wrong place, so none of those is shown.
	envValues := redact.NewRegistry()
	envValues.Add(w.Secrets()...)
	envValues.Add(w.EnvValues()...)
	errs := w.Errors()
	for _, e := range errs {
		e.Message = envValues.Redact(e.Message)
	}

	var global Errors
	repoErrs := map[string]Errors{}
	for _, e := range errs {
		if id, ok := repoOf(e.Path); ok {
			repoErrs[id] = append(repoErrs[id], e)
		} else {
			global = append(global, e)
		}
	}
	if len(global) > 0 {
		// Report the repos' problems too, so one pass fixes the file.
		return nil, errs
	}
	for id, es := range repoErrs {
		if cfg.RepoErrors == nil {
			cfg.RepoErrors = map[string]error{}
		}
		cfg.RepoErrors[id] = es
		delete(cfg.Repos, id)
	}
	return cfg, nil
}

// repoOf returns the repo id an error under repos.<id> belongs to.
func repoOf(p yamlwalk.Path) (string, bool) {
	if len(p) < 2 || p[0].Index >= 0 || p[0].Key != "repos" || p[1].Index >= 0 {
		return "", false
	}
	return p[1].Key, true
}

// ReadDotEnv reads a .env file: NAME=value lines, "#" comments, an optional
// "export " prefix, values optionally in single quotes (literal) or double
// quotes (with \n, \t, \" and \\ escapes). An unquoted value ends at " #".
func ReadDotEnv(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		name, value, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || !envNameRE.MatchString(name) {
			return nil, fmt.Errorf("%s:%d: want NAME=value", filepath.Base(path), lineNo)
		}
		v, err := dotEnvValue(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", filepath.Base(path), lineNo, name, err)
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func dotEnvValue(v string) (string, error) {
	switch {
	case strings.HasPrefix(v, "'"):
		end := strings.Index(v[1:], "'")
		if end < 0 {
			return "", errors.New("unterminated single quote")
		}
		return v[1 : end+1], nil
	case strings.HasPrefix(v, `"`):
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '"':
				return b.String(), nil
			case c == '\\' && i+1 < len(v):
				i++
				switch v[i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				default:
					b.WriteByte(v[i])
				}
			default:
				b.WriteByte(c)
			}
		}
		return "", errors.New("unterminated double quote")
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return v, nil
}
