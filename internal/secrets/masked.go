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
	masked []entry // sorted by name
	apps   []entry // GitHub Apps, sorted by name
	plain  map[string]Value
}

// NewMap generates a fresh surrogate for every masked secret. Every entry
// must have a value, at least one scope and at least one header pattern:
// an entry that could never be replaced is a config mistake, not a no-op.
func NewMap(masked map[string]Masked, plain map[string]string) (*Map, error) {
	m := &Map{plain: make(map[string]Value, len(plain))}
	var errs []error
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

// Env is what the container gets: the surrogate for every masked secret
// and GitHub App and the real value for every plain one. Where a name is
// in several pools, a GitHub App wins over a masked secret, which wins
// over a plain one (S5).
func (m *Map) Env() map[string]string {
	env := make(map[string]string, len(m.plain)+len(m.masked)+len(m.apps))
	for name, v := range m.plain {
		env[name] = v.Reveal()
	}
	for _, e := range m.masked {
		env[e.name] = e.surrogate
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
// a GitHub App of the same name is left out: the container never sees its
// surrogate.
func (m *Map) Replacements() *Replacements {
	r := &Replacements{apps: slices.Clone(m.apps)}
	for _, e := range m.masked {
		if !slices.ContainsFunc(m.apps, func(a entry) bool { return a.name == e.name }) {
			r.masked = append(r.masked, e)
		}
	}
	return r
}
