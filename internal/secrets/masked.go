package secrets

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// Masked is one masked_secrets entry of the server config (S5.2).
type Masked struct {
	Value                   string   // the real credential
	Scopes                  []string // host patterns on which the surrogate is replaced
	Headers                 []string // header-name patterns (fnmatch, case-insensitive)
	AllowForeignCredentials bool     // default false: strip a foreign credential from an exact-name header
}

// String, Format and LogValue redact Value so a config dump cannot leak it.
func (m Masked) String() string {
	return fmt.Sprintf("{Value:%s Scopes:%v Headers:%v AllowForeignCredentials:%t}",
		redacted, m.Scopes, m.Headers, m.AllowForeignCredentials)
}

func (m Masked) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(m.String())) }

func (m Masked) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("value", redacted),
		slog.Any("scopes", m.Scopes),
		slog.Any("headers", m.Headers),
		slog.Bool("allow_foreign_credentials", m.AllowForeignCredentials),
	)
}

// entry is one masked secret or GitHub App with the surrogate generated
// for this task.
type entry struct {
	name         string
	real         Value      // masked: the real credential
	app          *appConfig // github-app: what mints the real credential
	src          *tokenSource
	surrogate    string
	scopes       []string
	headers      []string
	allowForeign bool
}

// Map holds the credentials of one task: what the container sees and what
// the proxy needs to swap back. Build a fresh one per task.
type Map struct {
	masked []entry    // sorted by name
	apps   []entry    // GitHub Apps, sorted by name
	aws    []awsEntry // sorted by name
	plain  map[string]Value
}

// Pools are a task's credential pools, by kind (S5): the inputs of a Map.
type Pools struct {
	Plain      map[string]string    // secrets: the container sees the real value
	Masked     map[string]Masked    // masked_secrets
	GitHubApps map[string]GitHubApp // github_app_credentials
	AWS        map[string]AWS       // signing_credentials of type aws-sigv4
}

// NewMap is NewMapFrom for the masked and plain pools alone.
func NewMap(masked map[string]Masked, plain map[string]string) (*Map, error) {
	return NewMapFrom(Pools{Plain: plain, Masked: masked})
}

// NewMapFrom generates fresh surrogates for every credential of p. Every
// entry must be complete: a masked secret needs a value, a scope and a
// header pattern, an AWS credential a key id, a secret key and a scope, a
// GitHub App a usable private key (see AddGitHubApps). An entry that could
// never be used is a config mistake, not a no-op. Every bad entry is
// reported, not only the first.
func NewMapFrom(p Pools) (*Map, error) {
	masked, plain := p.Masked, p.Plain
	m := &Map{plain: make(map[string]Value, len(plain))}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(p.AWS)) {
		e, err := newAWSEntry(name, p.AWS[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("signing credential %s: %w", name, err))
			continue
		}
		m.aws = append(m.aws, e)
	}
	if err := m.AddGitHubApps(p.GitHubApps); err != nil {
		errs = append(errs, err)
	}
	for _, name := range slices.Sorted(maps.Keys(masked)) {
		ms := masked[name]
		if err := checkMasked(ms); err != nil {
			errs = append(errs, fmt.Errorf("masked secret %s: %w", name, err))
			continue
		}
		s, err := Surrogate(ms.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("masked secret %s: %w", name, err))
			continue
		}
		m.masked = append(m.masked, entry{
			name:         name,
			real:         NewValue(ms.Value),
			surrogate:    s,
			scopes:       slices.Clone(ms.Scopes),
			headers:      slices.Clone(ms.Headers),
			allowForeign: ms.AllowForeignCredentials,
		})
	}
	for name, v := range plain {
		m.plain[name] = NewValue(v)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func checkMasked(ms Masked) error {
	switch {
	case ms.Value == "":
		return errors.New("value is empty")
	case len(ms.Scopes) == 0:
		return errors.New("scopes is empty")
	case len(ms.Headers) == 0:
		return errors.New("headers is empty")
	}
	for _, s := range ms.Scopes {
		if strings.TrimSpace(s) == "" {
			return errors.New("scopes contains an empty pattern")
		}
	}
	for _, h := range ms.Headers {
		if strings.TrimSpace(h) == "" {
			return errors.New("headers contains an empty pattern")
		}
	}
	return nil
}

// Env is what the container gets: the surrogates of every masked secret,
// AWS credential and GitHub App and the real value of every plain one.
// Where a name is in several pools the highest wins (S5: github_app >
// signing > masked > plain).
func (m *Map) Env() map[string]string {
	env := make(map[string]string, len(m.plain)+len(m.masked)+3*len(m.aws)+len(m.apps))
	for name, v := range m.plain {
		env[name] = v.Reveal()
	}
	for _, e := range m.masked {
		env[e.name] = e.surrogate
	}
	for _, e := range m.aws {
		for _, v := range e.vars() {
			env[v.env] = v.surrogate
		}
	}
	for _, e := range m.apps {
		env[e.name] = e.surrogate
	}
	return env
}

// Surrogate returns the surrogate generated for a masked secret or GitHub
// App; the App's when both have the name.
func (m *Map) Surrogate(name string) (string, bool) {
	for _, list := range [][]entry{m.apps, m.masked} {
		for _, e := range list {
			if e.name == name {
				return e.surrogate, true
			}
		}
	}
	return "", false
}

// Replacements is the proxy's view of a Map. A masked secret shadowed by
// a GitHub App or an AWS variable of the same name is left out: the
// container never sees its surrogate.
func (m *Map) Replacements() *Replacements {
	r := &Replacements{apps: slices.Clone(m.apps), aws: slices.Clone(m.aws)}
	for _, e := range m.masked {
		shadowed := slices.ContainsFunc(m.apps, func(a entry) bool { return a.name == e.name }) ||
			slices.ContainsFunc(m.aws, func(a awsEntry) bool { return a.hasVar(e.name) })
		if !shadowed {
			r.masked = append(r.masked, e)
		}
	}
	return r
}
