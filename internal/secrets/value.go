package secrets

import (
	"fmt"
	"log/slog"
)

// redacted is what a secret prints as, whatever verb or logger is used.
const redacted = "[REDACTED]"

// Value is a real credential. It cannot be printed by accident: fmt verbs,
// slog and String all yield "[REDACTED]".
type Value struct{ s string }

// NewValue wraps a real credential.
func NewValue(s string) Value { return Value{s: s} }

// Reveal returns the real credential, for the one place that must send it.
func (v Value) Reveal() string { return v.s }

// IsZero reports whether the value is empty.
func (v Value) IsZero() bool { return v.s == "" }

func (v Value) String() string             { return redacted }
func (v Value) GoString() string           { return redacted }
func (v Value) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalText keeps encoders (JSON, YAML) from writing the secret; the
// replacement file uses its own wire type to carry real values on purpose.
func (v Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

var (
	_ fmt.Stringer   = Value{}
	_ fmt.Formatter  = Value{}
	_ slog.LogValuer = Value{}
)
