package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

const secret = "hunter2-very-secret-Token"

func TestRegistryRedact(t *testing.T) {
	tests := []struct {
		name  string
		add   []string
		input string
		want  string
	}{
		{"raw", []string{secret}, "pw=" + secret + "!", "pw=" + Mask + "!"},
		{"twice", []string{secret}, secret + " " + secret, Mask + " " + Mask},
		{"nothing registered", nil, "pw=" + secret, "pw=" + secret},
		{"too short ignored", []string{"abc"}, "abcdef", "abcdef"},
		{"empty ignored", []string{""}, "text", "text"},
		{"min length", []string{"abcd"}, "xabcdx", "x" + Mask + "x"},
		{"longest wins", []string{"secretvalue", "secretvalue-longer"}, "a secretvalue-longer b", "a " + Mask + " b"},
		{"base64 alone", []string{secret}, "b64 " + base64.StdEncoding.EncodeToString([]byte(secret)), "b64 " + Mask},
		{"base64 url", []string{"ab?>~~?>ab?>~~?>"}, base64.URLEncoding.EncodeToString([]byte("ab?>~~?>ab?>~~?>")), Mask},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry()
			r.Add(tc.add...)
			if got := r.Redact(tc.input); got != tc.want {
				t.Errorf("Redact(%q) = %q; want %q", tc.input, got, tc.want)
			}
		})
	}

	// Basic auth: the secret follows an unknown user name at an unknown
	// byte alignment; none of the secret's characters may survive.
	for _, user := range []string{"x", "xy", "xyz", "x-access-token"} {
		t.Run("basic auth user "+user, func(t *testing.T) {
			r := NewRegistry()
			r.Add(secret)
			enc := base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))
			got := r.Redact("Authorization: Basic " + enc)
			if !strings.Contains(got, Mask) {
				t.Fatalf("Redact(basic %q) = %q; want it masked", user, got)
			}
			if dec := decodeLoose(strings.ReplaceAll(got, Mask, "")); strings.Contains(dec, secret[2:len(secret)-2]) {
				t.Errorf("secret still decodable from %q", got)
			}
		})
	}
}

// decodeLoose decodes whatever base64 survives after the mask was cut out.
func decodeLoose(s string) string {
	s = strings.TrimPrefix(s, "Authorization: Basic ")
	b, _ := base64.StdEncoding.WithPadding(base64.NoPadding).DecodeString(strings.TrimRight(s, "="))
	return string(b)
}

func TestNilRegistry(t *testing.T) {
	var r *Registry
	r.Add("whatever-secret")
	if got := r.Redact("whatever-secret"); got != "whatever-secret" {
		t.Errorf("nil Redact = %q; want input unchanged", got)
	}
	if got := r.Len(); got != 0 {
		t.Errorf("nil Len = %d; want 0", got)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret(secret)
	type wrapper struct {
		Name string
		Pass Secret
		Ptr  *Secret
	}
	w := wrapper{Name: "n", Pass: s, Ptr: &s}
	var jsonOut, yamlOut bytes.Buffer
	if err := json.NewEncoder(&jsonOut).Encode(w); err != nil {
		t.Fatal(err)
	}
	if err := yaml.NewEncoder(&yamlOut).Encode(w); err != nil {
		t.Fatal(err)
	}
	text, _ := s.MarshalText()
	outputs := map[string]string{
		"%s":     fmt.Sprintf("%s", s),
		"%v":     fmt.Sprintf("%v", s),
		"%+v":    fmt.Sprintf("%+v", w),
		"%#v":    fmt.Sprintf("%#v", w),
		"%q":     fmt.Sprintf("%q", s),
		"%x":     fmt.Sprintf("%x", s),
		"Sprint": fmt.Sprint(s, w),
		"String": s.String(),
		"json":   jsonOut.String(),
		"yaml":   yamlOut.String(),
		"text":   string(text),
		"slog":   s.LogValue().String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("%s output %q contains the secret", name, out)
		}
		if !strings.Contains(out, Mask) {
			t.Errorf("%s output %q; want it to contain %s", name, out, Mask)
		}
	}
	if got := s.Reveal(); got != secret {
		t.Errorf("Reveal() = %q; want %q", got, secret)
	}
	if got := Secret("").String(); got != "" {
		t.Errorf("empty Secret String() = %q; want empty", got)
	}
}

type stringer struct{ v string }

func (s stringer) String() string { return "stringer(" + s.v + ")" }

type hidden struct {
	Token string `json:"token"`
}

func (hidden) String() string { return "hidden{}" }

type valuer struct{ v string }

func (v valuer) LogValue() slog.Value { return slog.StringValue(v.v) }

func TestHandlerRedactsEverything(t *testing.T) {
	var buf bytes.Buffer
	r := NewRegistry()
	logger := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), r))
	// Attributes bound before the secret is known must still be masked.
	early := logger.With("early", "x "+secret).WithGroup("g")
	r.Add(secret)

	early.Info("msg with "+secret,
		"plain", secret,
		"err", fmt.Errorf("wrap: %w", errors.New("auth failed for "+secret)),
		"stringer", stringer{secret},
		"jsononly", hidden{Token: secret},
		"valuer", valuer{"v=" + secret},
		"bytes", []byte("b="+secret),
		"map", map[string]string{"k": secret},
		"secret", Secret(secret),
		slog.Group("nested", "deep", secret, slog.Group("deeper", "x", secret)),
		secret, "secret as key",
		"count", 3,
	)
	out := buf.String()
	if strings.Contains(out, secret) {
		t.Fatalf("output contains the secret:\n%s", out)
	}
	if strings.Contains(out, base64.StdEncoding.EncodeToString([]byte("b=" + secret))[4:20]) {
		t.Errorf("output contains base64 of the secret:\n%s", out)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, want := range []string{`"msg":"msg with [REDACTED]"`, `"early":"x [REDACTED]"`, `"count":3`, `"deeper":{"x":"[REDACTED]"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}

func TestHandlerLeavesCleanValuesAlone(t *testing.T) {
	var buf bytes.Buffer
	r := NewRegistry()
	r.Add(secret)
	logger := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), r))
	logger.Info("hello", "n", 1, "obj", hidden{Token: "public"}, "err", errors.New("plain"))
	want := `"msg":"hello","n":1,"obj":{"token":"public"},"err":"plain"}`
	if got := buf.String(); !strings.Contains(got, want) {
		t.Errorf("got %s; want it to contain %s", got, want)
	}
}

func TestHandlerTextOutput(t *testing.T) {
	var buf bytes.Buffer
	r := NewRegistry()
	r.Add(secret)
	logger := slog.New(NewHandler(slog.NewTextHandler(&buf, nil), r)).With("a", secret)
	logger.Warn(secret, "b", stringer{secret})
	if got := buf.String(); strings.Contains(got, secret) || strings.Count(got, Mask) != 3 {
		t.Errorf("got %q; want 3 masks and no secret", got)
	}
}

func TestConcurrentAddAndLog(t *testing.T) {
	r := NewRegistry()
	var mu sync.Mutex
	var buf bytes.Buffer
	logger := slog.New(NewHandler(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil), r)).With("k", "v")
	secrets := make([]string, 50)
	for i := range secrets {
		secrets[i] = fmt.Sprintf("concurrent-secret-%03d", i)
	}
	var wg sync.WaitGroup
	for i := range secrets {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r.Add(secrets[i])
		}()
		go func() {
			defer wg.Done()
			logger.Info("tick", "i", i)
			_ = r.Redact(secrets[i])
		}()
	}
	wg.Wait()
	for _, s := range secrets {
		if got := r.Redact("x" + s + "x"); got != "x"+Mask+"x" {
			t.Fatalf("after concurrent adds Redact(%q) = %q", s, got)
		}
	}
	if got := r.Len(); got != len(secrets) {
		t.Errorf("Len() = %d; want %d", got, len(secrets))
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func BenchmarkRedact(b *testing.B) {
	r := NewRegistry()
	for i := 0; i < 20; i++ {
		r.Add(fmt.Sprintf("benchmark-secret-%02d-abcdefgh", i))
	}
	line := strings.Repeat("ordinary log text without any secret in it ", 4)
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Redact(line)
	}
}
