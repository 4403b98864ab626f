package redact

import (
	"fmt"
	"io"
	"log/slog"
)

// Secret is a string that prints as Mask in every form the standard library
// knows: fmt verbs (including %#v and %q), slog, JSON, text and YAML
// marshalling. Reveal is the one way to get the value, so every use of a real
// secret is visible in the code.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String returns Mask.
func (s Secret) String() string { return s.masked() }

// GoString returns Mask, so %#v does not print the value either.
func (s Secret) GoString() string { return s.masked() }

// Format writes Mask whatever the verb, so %s, %v, %q, %x all stay masked.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.masked()) }

// LogValue returns Mask.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.masked()) }

// MarshalJSON returns Mask as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.masked() + `"`), nil }

// MarshalText returns Mask.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.masked()), nil }

// MarshalYAML returns Mask, for gopkg.in/yaml.v3.
func (s Secret) MarshalYAML() (any, error) { return s.masked(), nil }

// masked keeps an empty secret distinguishable from a set one.
func (s Secret) masked() string {
	if s == "" {
		return ""
	}
	return Mask
}
