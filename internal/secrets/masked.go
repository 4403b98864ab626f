package secrets

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/airut/airut/internal/atomicfile"
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

// entry is one masked secret with the surrogate generated for this task.
type entry struct {
	name         string
	real         Value
	surrogate    string
	scopes       []string
	headers      []string
	allowForeign bool
}

// Map holds the credentials of one task: what the container sees and what
// the proxy needs to swap back. Build a fresh one per task.
type Map struct {
	masked []entry // sorted by name
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

// Env is what the container gets: the surrogate for every masked secret and
// the real value for every plain one; a masked name wins over a plain one.
func (m *Map) Env() map[string]string {
	env := make(map[string]string, len(m.plain)+len(m.masked))
	for name, v := range m.plain {
		env[name] = v.Reveal()
	}
	for _, e := range m.masked {
		env[e.name] = e.surrogate
	}
	return env
}

// Surrogate returns the surrogate generated for a masked secret.
func (m *Map) Surrogate(name string) (string, bool) {
	for _, e := range m.masked {
		if e.name == name {
			return e.surrogate, true
		}
	}
	return "", false
}

// Replacements is the proxy's view of a Map.
func (m *Map) Replacements() *Replacements {
	return &Replacements{entries: slices.Clone(m.masked)}
}

// replacementFileVersion changes when the file's meaning changes, so a proxy
// never silently misreads a newer gateway's file.
const replacementFileVersion = 1

// fileEntry is the wire form of one masked secret. It carries the real value
// in clear: the file is written 0600 and read only by the proxy.
type fileEntry struct {
	Name                    string   `json:"name"`
	Surrogate               string   `json:"surrogate"`
	Value                   string   `json:"value"`
	Scopes                  []string `json:"scopes"`
	Headers                 []string `json:"headers"`
	AllowForeignCredentials bool     `json:"allow_foreign_credentials"`
}

type replacementFile struct {
	Version int         `json:"version"`
	Masked  []fileEntry `json:"masked"`
}

// WriteReplacementFile writes the proxy's replacement map to path, mode
// 0600, atomically (temporary file in the same directory, then rename), so
// the proxy never reads a half-written file.
func (m *Map) WriteReplacementFile(path string) error {
	f := replacementFile{Version: replacementFileVersion, Masked: []fileEntry{}}
	for _, e := range m.masked {
		f.Masked = append(f.Masked, fileEntry{
			Name:                    e.name,
			Surrogate:               e.surrogate,
			Value:                   e.real.Reveal(),
			Scopes:                  e.scopes,
			Headers:                 e.headers,
			AllowForeignCredentials: e.allowForeign,
		})
	}
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("write replacement file %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("write replacement file %s: %w", path, err)
	}
	return nil
}

// LoadReplacementFile reads a file written by WriteReplacementFile. Unknown
// fields, another version, or an entry that could replace nothing are errors.
func LoadReplacementFile(path string) (*Replacements, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read replacement file: %w", err)
	}
	r, err := parseReplacements(data)
	if err != nil {
		return nil, fmt.Errorf("read replacement file %s: %w", path, err)
	}
	return r, nil
}

func parseReplacements(data []byte) (*Replacements, error) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var f replacementFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if f.Version != replacementFileVersion {
		return nil, fmt.Errorf("version %d, want %d", f.Version, replacementFileVersion)
	}
	r := &Replacements{}
	var errs []error
	for i, fe := range f.Masked {
		err := checkMasked(Masked{Value: fe.Value, Scopes: fe.Scopes, Headers: fe.Headers})
		switch {
		case err != nil:
		case fe.Name == "":
			err = errors.New("name is empty")
		case fe.Surrogate == "":
			err = errors.New("surrogate is empty")
		case fe.Surrogate == fe.Value:
			err = errors.New("surrogate equals the real value")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("masked[%d] (%s): %w", i, fe.Name, err))
			continue
		}
		r.entries = append(r.entries, entry{
			name:         fe.Name,
			real:         NewValue(fe.Value),
			surrogate:    fe.Surrogate,
			scopes:       fe.Scopes,
			headers:      fe.Headers,
			allowForeign: fe.AllowForeignCredentials,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}
