package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func class(c byte) byte {
	switch {
	case c >= 'a' && c <= 'z':
		return 'a'
	case c >= 'A' && c <= 'Z':
		return 'A'
	case c >= '0' && c <= '9':
		return '0'
	}
	return c
}

func TestSurrogate(t *testing.T) {
	tests := []struct {
		name, real, keep string
	}{
		{"github fine-grained", "github_pat_11ABCDEFG0abcdefghij_KLMNOPqrstuv0123456789", "github_pat_"},
		{"github classic", "ghp_" + strings.Repeat("aZ9", 12), "ghp_"},
		{"github oauth", "gho_abcDEF123", "gho_"},
		{"github server", "ghs_abcDEF123", "ghs_"},
		{"github refresh", "ghr_abcDEF123", "ghr_"},
		{"anthropic beats sk-", "sk-ant-api03-AbCdEf-123_xyz", "sk-ant-"},
		{"openai", "sk-proj-AbC123", "sk-"},
		{"slack bot", "xoxb-1234-5678-AbCd", "xoxb-"},
		{"slack user", "xoxp-1234-5678-AbCd", "xoxp-"},
		{"no prefix", "hunter2-PASS.word!", ""},
		{"prefix alone is randomised", "ghp_", ""},
		{"one digit", "7", ""},
		{"non-ascii kept", "pässwörd1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 20 {
				got, err := Surrogate(tt.real)
				if err != nil {
					t.Fatalf("Surrogate(%q): %v", tt.real, err)
				}
				if got == tt.real {
					t.Fatalf("Surrogate(%q) = the real value", tt.real)
				}
				if len(got) != len(tt.real) {
					t.Fatalf("len = %d; want %d", len(got), len(tt.real))
				}
				if !strings.HasPrefix(got, tt.keep) {
					t.Fatalf("got %q; want prefix %q", got, tt.keep)
				}
				for i := len(tt.keep); i < len(got); i++ {
					if class(got[i]) != class(tt.real[i]) {
						t.Fatalf("position %d: got %q; want class of %q", i, got[i], tt.real[i])
					}
				}
			}
		})
	}
}

func TestSurrogateErrors(t *testing.T) {
	tests := []struct {
		name, real string
		want       error
	}{
		{"empty", "", nil},
		{"punctuation only", "-_-.", ErrNoEntropy},
		{"prefix plus punctuation", "ghp_----", ErrNoEntropy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Surrogate(tt.real)
			if err == nil {
				t.Fatalf("Surrogate(%q) succeeded; want an error", tt.real)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v; want %v", err, tt.want)
			}
		})
	}
}

func TestSurrogateIsRandom(t *testing.T) {
	const real = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
	seen := map[string]bool{}
	for range 50 {
		s, err := Surrogate(real)
		if err != nil {
			t.Fatal(err)
		}
		if seen[s] {
			t.Fatalf("surrogate %q produced twice", s)
		}
		seen[s] = true
	}
}

const realToken = "ghp_REALrealREAL1234567890"

func TestRedaction(t *testing.T) {
	v := NewValue(realToken)
	m := Masked{Value: realToken, Scopes: []string{"api.github.com"}, Headers: []string{"Authorization"}}
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("x", "value", v, "masked", m)
	js, err := json.Marshal(struct{ V Value }{v})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v value":   fmt.Sprintf("%v", v),
		"%s value":   fmt.Sprintf("%s", v),
		"%q value":   fmt.Sprintf("%q", v),
		"%#v value":  fmt.Sprintf("%#v", v),
		"%+v value":  fmt.Sprintf("%+v", v),
		"String":     v.String(),
		"%v masked":  fmt.Sprintf("%v", m),
		"%#v masked": fmt.Sprintf("%#v", m),
		"%+v map":    fmt.Sprintf("%+v", map[string]Masked{"X": m}),
		"slog":       buf.String(),
		"json":       string(js),
	}
	for name, out := range outputs {
		if strings.Contains(out, "REAL") {
			t.Errorf("%s: got %q; the real value leaked", name, out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s: got %q; want %q in it", name, out, redacted)
		}
	}
	if got := v.Reveal(); got != realToken {
		t.Errorf("Reveal() = %q; want %q", got, realToken)
	}
}

func TestNewMapErrors(t *testing.T) {
	ok := Masked{Value: "abc123", Scopes: []string{"x.com"}, Headers: []string{"Authorization"}}
	tests := []struct {
		name   string
		masked Masked
		want   string
	}{
		{"empty value", Masked{Scopes: ok.Scopes, Headers: ok.Headers}, "masked secret TOKEN: value is empty"},
		{"no scopes", Masked{Value: "a1", Headers: ok.Headers}, "masked secret TOKEN: scopes is empty"},
		{"no headers", Masked{Value: "a1", Scopes: ok.Scopes}, "masked secret TOKEN: headers is empty"},
		{"blank scope", Masked{Value: "a1", Scopes: []string{" "}, Headers: ok.Headers}, "masked secret TOKEN: scopes contains an empty pattern"},
		{"no entropy", Masked{Value: "---", Scopes: ok.Scopes, Headers: ok.Headers}, "masked secret TOKEN: surrogate: value has no letters or digits to randomise"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMap(map[string]Masked{"TOKEN": tt.masked, "OK": ok}, nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v; want %q", err, tt.want)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	m, err := NewMap(
		map[string]Masked{
			"GH_TOKEN": {Value: realToken, Scopes: []string{"api.github.com"}, Headers: []string{"Authorization"}},
			"BOTH":     {Value: "masked-wins-1", Scopes: []string{"x.com"}, Headers: []string{"X-Key"}},
		},
		map[string]string{"PLAIN": "visible", "BOTH": "plain-loses"},
	)
	if err != nil {
		t.Fatal(err)
	}
	env := m.Env()
	gh, _ := m.Surrogate("GH_TOKEN")
	both, _ := m.Surrogate("BOTH")
	want := map[string]string{"GH_TOKEN": gh, "BOTH": both, "PLAIN": "visible"}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("Env() mismatch (-want +got):\n%s", diff)
	}
	if env["GH_TOKEN"] == realToken || !strings.HasPrefix(env["GH_TOKEN"], "ghp_") {
		t.Errorf("GH_TOKEN = %q; want a ghp_ surrogate", env["GH_TOKEN"])
	}
}

func TestReplacementFileRoundTrip(t *testing.T) {
	m, err := NewMap(map[string]Masked{
		"GH_TOKEN": {Value: realToken, Scopes: []string{"api.github.com", "*.github.com"}, Headers: []string{"Authorization"}, AllowForeignCredentials: true},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "replacements.json")
	if err := m.WriteReplacementFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %v; want 0600", got)
	}
	r, err := LoadReplacementFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m.Replacements().masked, r.masked, cmp.AllowUnexported(entry{}, Value{})); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d files; want only the replacement file", len(entries))
	}
}

func TestLoadReplacementFileErrors(t *testing.T) {
	const okMasked = `"masked":{"surrogate":"x2","value":"x1","scopes":["a"],"headers":["b"]}`
	tests := []struct {
		name, data, want string
	}{
		{"unknown field", `{"version":2,"credentials":[],"extra":1}`, `unknown field "extra"`},
		{"version 1 refused", `{"version":1,"masked":[]}`, "version 1, want 2"},
		{"newer version refused", `{"version":3,"credentials":[]}`, "version 3, want 2"},
		{"no version", `{"credentials":[]}`, "version 0, want 2"},
		{"not json", `nope`, "invalid character"},
		{"trailing data", `{"version":2,"credentials":[]} {}`, "after top-level value"},
		{"unknown kind", `{"version":2,"credentials":[{"kind":"future-kind","name":"A","future":{}}]}`, `credentials[0] (A): unknown kind "future-kind"`},
		{"unknown kind without object", `{"version":2,"credentials":[{"kind":"future","name":"A"}]}`, `credentials[0] (A): unknown kind "future"`},
		{"no kind", `{"version":2,"credentials":[{"name":"A",` + okMasked + `}]}`, `credentials[0] (A): unknown kind ""`},
		{"masked without object", `{"version":2,"credentials":[{"kind":"masked","name":"A"}]}`, "kind masked without a masked object"},
		{"unknown field in masked", `{"version":2,"credentials":[{"kind":"masked","name":"A","masked":{"surrogate":"x2","value":"x1","scopes":["a"],"headers":["b"],"x":1}}]}`, `unknown field "x"`},
		{"no name", `{"version":2,"credentials":[{"kind":"masked",` + okMasked + `}]}`, "name is empty"},
		{"surrogate equals value", `{"version":2,"credentials":[{"kind":"masked","name":"A","masked":{"surrogate":"x1","value":"x1","scopes":["a"],"headers":["b"]}}]}`, "credentials[0] (A): surrogate equals the real value"},
		{"no scopes", `{"version":2,"credentials":[{"kind":"masked","name":"A","masked":{"surrogate":"x2","value":"x1","headers":["b"]}}]}`, "credentials[0] (A): scopes is empty"},
		{"one bad entry fails the file", `{"version":2,"credentials":[{"kind":"masked","name":"A",` + okMasked + `},{"kind":"nope","name":"B"}]}`, `credentials[1] (B): unknown kind "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.json")
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := LoadReplacementFile(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v; want an error naming %s and containing %q", err, path, tt.want)
			}
			if r != nil {
				t.Errorf("got replacements %v with the error; want nil", r)
			}
		})
	}
}

func TestReplacementFileFormat(t *testing.T) {
	m, err := NewMap(map[string]Masked{
		"GH_TOKEN": {Value: realToken, Scopes: []string{"api.github.com"}, Headers: []string{"Authorization"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := m.WriteReplacementFile(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Version     int
		Credentials []map[string]any
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if f.Version != 2 || len(f.Credentials) != 1 || f.Credentials[0]["kind"] != "masked" || f.Credentials[0]["name"] != "GH_TOKEN" {
		t.Errorf("file = %s; want version 2 with one masked GH_TOKEN credential", data)
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestInject(t *testing.T) {
	const (
		real  = "ghp_REALrealREAL1234567890"
		sur   = "ghp_SURRsurrSURR0987654321"
		real2 = "sk-ant-REAL2"
		sur2  = "sk-ant-SURR2"
	)
	r := &Replacements{masked: []entry{
		{name: "GH", real: NewValue(real), surrogate: sur, scopes: []string{"api.github.com", "*.githubusercontent.com"}, headers: []string{"Authorization"}},
		{name: "AN", real: NewValue(real2), surrogate: sur2, scopes: []string{"api.anthropic.com"}, headers: []string{"x-api-key", "X-Extra-*"}},
		{name: "FOREIGN_OK", real: NewValue("real-3"), surrogate: "surr-3", scopes: []string{"open.example"}, headers: []string{"Authorization"}, allowForeign: true},
		{name: "SHARED", real: NewValue("REAL-SHARED"), surrogate: "SURR-SHARED", scopes: []string{"api.github.com"}, headers: []string{"Authorization"}},
	}}
	ghPair := []Pair{{Real: NewValue(real), Surrogate: sur}}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	basicPairs := func(realPair, surPair string) []Pair {
		return append(slices.Clone(ghPair), Pair{Real: NewValue(b64(realPair)), Surrogate: b64(surPair)})
	}
	anPair := Pair{Real: NewValue(real2), Surrogate: sur2}
	foreign := func(h ...string) []Strip {
		var out []Strip
		for _, n := range h {
			out = append(out, Strip{Header: n, Reason: StripForeign})
		}
		return out
	}
	tests := []struct {
		name   string
		scheme string // default https
		host   string
		in     http.Header
		want   http.Header
		result Injection
	}{
		{
			name:   "bearer in scope",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer " + sur}, "Accept": {"*/*"}},
			want:   http.Header{"Authorization": {"Bearer " + real}, "Accept": {"*/*"}},
			result: Injection{Masked: 1, Injected: ghPair},
		},
		{
			name:   "bare surrogate",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {sur}},
			want:   http.Header{"Authorization": {real}},
			result: Injection{Masked: 1, Injected: ghPair},
		},
		{
			name:   "basic as git sends it",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic("x-access-token", sur)}},
			want:   http.Header{"Authorization": {basic("x-access-token", real)}},
			result: Injection{Masked: 1, Injected: basicPairs("x-access-token:"+real, "x-access-token:"+sur)},
		},
		{
			name:   "basic with the token as user",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic(sur, "x-oauth-basic")}},
			want:   http.Header{"Authorization": {basic(real, "x-oauth-basic")}},
			result: Injection{Masked: 1, Injected: basicPairs(real+":x-oauth-basic", sur+":x-oauth-basic")},
		},
		{
			name:   "basic with the token as user and no password",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic(sur, "")}},
			want:   http.Header{"Authorization": {basic(real, "")}},
			result: Injection{Masked: 1, Injected: basicPairs(real+":", sur+":")},
		},
		{
			name:   "basic without padding",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"basic " + base64.RawStdEncoding.EncodeToString([]byte("u:"+sur))}},
			want:   http.Header{"Authorization": {"basic " + base64.StdEncoding.EncodeToString([]byte("u:"+real))}},
			result: Injection{Masked: 1, Injected: basicPairs("u:"+real, "u:"+sur)},
		},
		{
			name:   "wildcard scope, trailing dot and upper case host",
			host:   "Raw.GitHubUserContent.com.",
			in:     http.Header{"Authorization": {"token " + sur}},
			want:   http.Header{"Authorization": {"token " + real}},
			result: Injection{Masked: 1, Injected: ghPair},
		},
		{
			name: "out of scope is untouched",
			host: "gitlab.com",
			in:   http.Header{"Authorization": {"Bearer " + sur}},
			want: http.Header{"Authorization": {"Bearer " + sur}},
		},
		{
			name: "scope is not a suffix match",
			host: "api.github.com.evil.com",
			in:   http.Header{"Authorization": {"Bearer " + sur}},
			want: http.Header{"Authorization": {"Bearer " + sur}},
		},
		{
			name:   "foreign credential stripped",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer ghp_agentsOwnToken"}, "Accept": {"*/*"}},
			want:   http.Header{"Accept": {"*/*"}},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "own token beside the surrogate in one value",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer ghp_agentsOwnToken, Bearer " + sur}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "surrogate after own token without a comma",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer OWN " + sur}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "surrogate inside a longer token",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer x" + sur}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "basic with own token as user beside the surrogate",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic("ghp_agentsOwnToken0123456789abcdef0123", sur)}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "basic with a long user beside the surrogate",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic(strings.Repeat("a", 40), sur)}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "basic with own token as password beside the surrogate user",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic(sur, "glpat-ownOwnOwnOwnOwn")}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "basic with the surrogate inside the password",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic("u", sur+"x")}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "basic with the surrogate twice",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic(sur, sur)}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name: "foreign credential allowed",
			host: "open.example",
			in:   http.Header{"Authorization": {"Bearer mine"}},
			want: http.Header{"Authorization": {"Bearer mine"}},
		},
		{
			name: "foreign beside the surrogate allowed, surrogate not swapped",
			host: "open.example",
			in:   http.Header{"Authorization": {"Bearer mine, Bearer surr-3"}},
			want: http.Header{"Authorization": {"Bearer mine, Bearer surr-3"}},
		},
		{
			name:   "half a surrogate is foreign",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer " + sur[:10]}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "duplicates collapsed to the replaced copy",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer foreign", "Bearer " + sur, "Bearer " + sur}},
			want:   http.Header{"Authorization": {"Bearer " + real}},
			result: Injection{Masked: 1, Dropped: 2, Injected: ghPair},
		},
		{
			name:   "two secrets share a header on one host",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer SURR-SHARED"}},
			want:   http.Header{"Authorization": {"Bearer REAL-SHARED"}},
			result: Injection{Masked: 1, Injected: []Pair{{Real: NewValue("REAL-SHARED"), Surrogate: "SURR-SHARED"}}},
		},
		{
			name:   "header pattern is case-insensitive, wildcard header without surrogate kept",
			host:   "api.anthropic.com",
			in:     http.Header{"X-Api-Key": {sur2}, "X-Extra-One": {sur2}, "X-Extra-Two": {"foreign"}},
			want:   http.Header{"X-Api-Key": {real2}, "X-Extra-One": {real2}, "X-Extra-Two": {"foreign"}},
			result: Injection{Masked: 2, Injected: []Pair{anPair, anPair}},
		},
		{
			name:   "wildcard header with the surrogate inside other content stripped",
			host:   "api.anthropic.com",
			in:     http.Header{"X-Extra-One": {"v=" + sur2}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("X-Extra-One")},
		},
		{
			name: "header not covered keeps its surrogate",
			host: "api.anthropic.com",
			in:   http.Header{"Cookie": {sur2}},
			want: http.Header{"Cookie": {sur2}},
		},
		{
			name:   "plain http strips instead of injecting",
			scheme: "http",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer " + sur}, "Accept": {"*/*"}},
			want:   http.Header{"Accept": {"*/*"}},
			result: Injection{Stripped: []Strip{{Header: "Authorization", Reason: StripPlainHTTP}}},
		},
		{
			name:   "plain http strips basic",
			scheme: "http",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {basic("x-access-token", sur)}},
			want:   http.Header{},
			result: Injection{Stripped: []Strip{{Header: "Authorization", Reason: StripPlainHTTP}}},
		},
		{
			name:   "plain http strips every covered header",
			scheme: "http",
			host:   "api.anthropic.com",
			in:     http.Header{"X-Api-Key": {sur2}, "X-Extra-A": {sur2}, "X-Extra-B": {"kept"}},
			want:   http.Header{"X-Extra-B": {"kept"}},
			result: Injection{Stripped: []Strip{{Header: "X-Api-Key", Reason: StripPlainHTTP}, {Header: "X-Extra-A", Reason: StripPlainHTTP}}},
		},
		{
			name:   "plain http strips a foreign credential as foreign",
			scheme: "http",
			host:   "api.github.com",
			in:     http.Header{"Authorization": {"Bearer mine"}},
			want:   http.Header{},
			result: Injection{Stripped: foreign("Authorization")},
		},
		{
			name:   "plain http out of scope is untouched",
			scheme: "http",
			host:   "gitlab.com",
			in:     http.Header{"Authorization": {"Bearer " + sur}},
			want:   http.Header{"Authorization": {"Bearer " + sur}},
		},
	}
	injectors := r.Injectors(Env{})
	if len(injectors) != 1 || injectors[0].Kind() != KindMasked {
		t.Fatalf("Injectors() = %v; want one masked injector", injectors)
	}
	inj := injectors[0]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme := tt.scheme
			if scheme == "" {
				scheme = "https"
			}
			req := &http.Request{Method: "GET", Host: tt.host, URL: &url.URL{Scheme: scheme, Host: tt.host, Path: "/"}, Header: tt.in.Clone()}
			got, err := inj.Inject(req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.result, got, cmp.AllowUnexported(Value{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Injection mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, req.Header); diff != "" {
				t.Errorf("headers mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScoped(t *testing.T) {
	r := &Replacements{masked: []entry{{name: "A", real: NewValue("r1"), surrogate: "s1", scopes: []string{"*.github.com"}, headers: []string{"Authorization"}}}}
	inj := r.Injectors(Env{})[0]
	for host, want := range map[string]bool{"api.github.com": true, "API.github.com.": true, "github.com": false, "evil.com": false} {
		if got := inj.Scoped(host); got != want {
			t.Errorf("Scoped(%q) = %t; want %t", host, got, want)
		}
	}
	if diff := cmp.Diff([]Pair{{Real: NewValue("r1"), Surrogate: "s1"}}, r.Pairs(), cmp.AllowUnexported(Value{})); diff != "" {
		t.Errorf("Pairs mismatch (-want +got):\n%s", diff)
	}
}

func TestNilReplacements(t *testing.T) {
	var r *Replacements
	if r.Len() != 0 || r.Injectors(Env{}) != nil || r.Pairs() != nil {
		t.Errorf("nil Replacements: Len %d, Injectors %v, Pairs %v; want nothing", r.Len(), r.Injectors(Env{}), r.Pairs())
	}
}
