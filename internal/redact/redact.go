// Package redact keeps secret values out of logs.
//
// A Registry holds every secret the process has resolved (passwords, tokens,
// private keys). Registry.Redact replaces each occurrence of a secret, and of
// its base64 encodings, with [REDACTED]. NewHandler wraps a slog.Handler so
// that every record is passed through the registry before it is written, and
// Secret is a string type that never prints its value unless asked to.
package redact

import (
	"encoding/base64"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Mask is what a secret is replaced with.
const Mask = "[REDACTED]"

// MinLen is the shortest value the registry accepts. Shorter values are
// ignored: masking every "abc" in every log line would make logs unreadable
// while protecting a value that is no secret at all.
const MinLen = 4

// minEncodedLen is the shortest base64 fragment that is masked. A secret of
// MinLen bytes yields fragments of three or four characters, which would
// match unrelated base64 text all the time.
const minEncodedLen = 8

// Registry is a set of secret values. It is safe for concurrent use; the zero
// value is empty and ready. A nil *Registry redacts nothing.
type Registry struct {
	mu     sync.Mutex
	values map[string]struct{}
	// state is swapped whole on Add so Redact never takes the lock.
	state atomic.Pointer[state]
}

type state struct {
	gen      uint64
	replacer *strings.Replacer
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Add registers values. Empty values and values shorter than MinLen are
// ignored; adding a value twice is harmless.
func (r *Registry) Add(values ...string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil {
		r.values = make(map[string]struct{})
	}
	added := false
	for _, v := range values {
		if len(v) < MinLen {
			continue
		}
		if _, ok := r.values[v]; ok {
			continue
		}
		r.values[v] = struct{}{}
		added = true
	}
	if !added {
		return
	}
	var gen uint64
	if old := r.state.Load(); old != nil {
		gen = old.gen
	}
	r.state.Store(&state{gen: gen + 1, replacer: buildReplacer(r.values)})
}

// Len reports how many distinct values are registered.
func (r *Registry) Len() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.values)
}

// Redact returns s with every registered value, and every base64 encoding of
// one, replaced by Mask.
func (r *Registry) Redact(s string) string {
	if r == nil || s == "" {
		return s
	}
	st := r.state.Load()
	if st == nil {
		return s
	}
	return st.replacer.Replace(s)
}

// generation changes every time the set of values changes; the handler uses
// it to know when attributes redacted earlier must be redacted again.
func (r *Registry) generation() uint64 {
	if r == nil {
		return 0
	}
	if st := r.state.Load(); st != nil {
		return st.gen
	}
	return 0
}

func buildReplacer(values map[string]struct{}) *strings.Replacer {
	set := make(map[string]struct{}, len(values)*7)
	for v := range values {
		set[v] = struct{}{}
		for _, p := range encodedForms(v) {
			set[p] = struct{}{}
		}
	}
	patterns := make([]string, 0, len(set))
	for p := range set {
		patterns = append(patterns, p)
	}
	// strings.Replacer tries old strings in argument order at each position:
	// longest first, so a secret that contains another is masked whole.
	sort.Slice(patterns, func(i, j int) bool {
		if len(patterns[i]) != len(patterns[j]) {
			return len(patterns[i]) > len(patterns[j])
		}
		return patterns[i] < patterns[j]
	})
	args := make([]string, 0, 2*len(patterns))
	for _, p := range patterns {
		args = append(args, p, Mask)
	}
	return strings.NewReplacer(args...)
}

// encodedForms returns the base64 text that v produces inside any larger
// base64 payload. A secret embedded in, say, "x-access-token:<secret>" and
// then encoded (HTTP Basic auth, as git sends it) lands at one of three byte
// alignments; for each, the characters that depend only on the secret's own
// bytes are the same whatever surrounds it. Those middles are what we mask,
// for the standard and the URL alphabet.
func encodedForms(v string) []string {
	var forms []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		// The whole encoding with padding, as when the secret is encoded alone.
		forms = append(forms, enc.EncodeToString([]byte(v)))
		for offset := 0; offset < 3; offset++ {
			buf := make([]byte, offset+len(v))
			copy(buf[offset:], v)
			s := enc.WithPadding(base64.NoPadding).EncodeToString(buf)
			first := (8*offset + 5) / 6       // first char whose 6 bits all come from v
			last := (8*(offset+len(v)))/6 - 1 // last such char
			if last < first {
				continue
			}
			frag := s[first : last+1]
			if len(frag) >= minEncodedLen {
				forms = append(forms, frag)
			}
		}
	}
	return forms
}
