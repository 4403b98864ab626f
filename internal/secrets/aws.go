package secrets

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// KindAWS is the signing_credentials kind (S5.3): the proxy re-signs
// requests made with surrogate AWS keys.
const KindAWS = "aws-sigv4"

// signedAWS is how the network log names a request re-signed by KindAWS
// ("[signed: aws]").
const signedAWS = "aws"

// Default container variables of an AWS credential, as the SDKs read them.
const (
	EnvAWSAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvAWSSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	EnvAWSSessionToken    = "AWS_SESSION_TOKEN"
)

// AWS is one signing_credentials entry of type aws-sigv4 (S5.3): the real
// keys, the container variables their surrogates go into, and the hosts
// on which requests signed with the surrogates are re-signed.
type AWS struct {
	AccessKeyID     string // real key id ("AKIA…", "ASIA…")
	SecretAccessKey string // real secret key
	SessionToken    string // real STS session token; "" for long-term keys

	// Container variables; "" takes the Env* default.
	AccessKeyIDEnv, SecretAccessKeyEnv, SessionTokenEnv string

	Scopes []string // host patterns on which requests are re-signed
}

// String, Format and LogValue redact the keys so a config dump cannot leak
// them; the key id is redacted too (it names the account).
func (a AWS) String() string {
	return fmt.Sprintf("{AccessKeyID:%s SecretAccessKey:%s SessionToken:%s Env:[%s %s %s] Scopes:%v}",
		redacted, redacted, redacted, a.AccessKeyIDEnv, a.SecretAccessKeyEnv, a.SessionTokenEnv, a.Scopes)
}

func (a AWS) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(a.String())) }

func (a AWS) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_key_id", redacted),
		slog.String("secret_access_key", redacted),
		slog.Bool("session_token", a.SessionToken != ""),
		slog.Any("scopes", a.Scopes),
	)
}

// awsEntry is one AWS credential with the surrogates generated for this
// task.
type awsEntry struct {
	name   string
	keyID  awsPart
	secret awsPart
	token  awsPart // zero when the credential has no session token
	scopes []string
}

// awsPart is one key field: the container variable, the real value and
// its surrogate.
type awsPart struct {
	env       string
	real      Value
	surrogate string
}

func (e *awsEntry) hasToken() bool { return !e.token.real.IsZero() }

func (e *awsEntry) inScope(host string) bool { return matchesAnyHost(e.scopes, host) }

// vars are the parts the container gets, one variable each.
func (e *awsEntry) vars() []awsPart {
	if e.hasToken() {
		return []awsPart{e.keyID, e.secret, e.token}
	}
	return []awsPart{e.keyID, e.secret}
}

func (e *awsEntry) hasVar(name string) bool {
	return slices.ContainsFunc(e.vars(), func(p awsPart) bool { return p.env == name })
}

func (e *awsEntry) pairs() []Pair {
	var out []Pair
	for _, p := range e.vars() {
		out = append(out, Pair{Real: p.real, Surrogate: p.surrogate})
	}
	return out
}

func newAWSEntry(name string, a AWS) (awsEntry, error) {
	if err := checkAWS(a); err != nil {
		return awsEntry{}, err
	}
	def := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	e := awsEntry{name: name, scopes: slices.Clone(a.Scopes)}
	var err error
	e.keyID = awsPart{env: def(a.AccessKeyIDEnv, EnvAWSAccessKeyID), real: NewValue(a.AccessKeyID)}
	if e.keyID.surrogate, err = awsKeyIDSurrogate(a.AccessKeyID); err != nil {
		return awsEntry{}, fmt.Errorf("access_key_id: %w", err)
	}
	e.secret = awsPart{env: def(a.SecretAccessKeyEnv, EnvAWSSecretAccessKey), real: NewValue(a.SecretAccessKey)}
	if e.secret.surrogate, err = base64Surrogate(a.SecretAccessKey); err != nil {
		return awsEntry{}, fmt.Errorf("secret_access_key: %w", err)
	}
	e.token = awsPart{env: def(a.SessionTokenEnv, EnvAWSSessionToken)}
	if a.SessionToken != "" {
		e.token.real = NewValue(a.SessionToken)
		if e.token.surrogate, err = base64Surrogate(a.SessionToken); err != nil {
			return awsEntry{}, fmt.Errorf("session_token: %w", err)
		}
	}
	return e, nil
}

func checkAWS(a AWS) error {
	switch {
	case a.AccessKeyID == "":
		return errors.New("access_key_id is empty")
	case a.SecretAccessKey == "":
		return errors.New("secret_access_key is empty")
	case len(a.Scopes) == 0:
		return errors.New("scopes is empty")
	}
	if !isAWSKeyID(a.AccessKeyID) {
		return errors.New("access_key_id must be letters and digits")
	}
	for _, s := range a.Scopes {
		if strings.TrimSpace(s) == "" {
			return errors.New("scopes contains an empty pattern")
		}
	}
	names := []string{a.AccessKeyIDEnv, a.SecretAccessKeyEnv}
	if a.SessionToken != "" {
		names = append(names, a.SessionTokenEnv)
	}
	seen := map[string]bool{}
	for i, n := range names {
		if n == "" {
			n = []string{EnvAWSAccessKeyID, EnvAWSSecretAccessKey, EnvAWSSessionToken}[i]
		}
		if seen[n] {
			return fmt.Errorf("container variable %s is used for two fields", n)
		}
		seen[n] = true
	}
	return nil
}

// A key id appears in a credential scope ("AKIA…/20150830/…"), so it is
// letters and digits only: anything else could not be told apart there.
func isAWSKeyID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// awsKeyPrefixes are the key id prefixes AWS tools read a key's kind from
// (long-term IAM user keys, STS temporary keys).
var awsKeyPrefixes = []string{"AKIA", "ASIA"}

const awsKeyIDChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" // base32, as AWS key ids are

// awsKeyIDSurrogate keeps an AWS key id's prefix and length and draws the
// rest from the key id alphabet; a key id of another shape (MinIO, R2)
// gets the format-preserving Surrogate.
func awsKeyIDSurrogate(real string) (string, error) {
	for _, p := range awsKeyPrefixes {
		if strings.HasPrefix(real, p) && len(real) > len(p) {
			return randomOver(real, func(i int, _ byte) string {
				if i < len(p) {
					return ""
				}
				return awsKeyIDChars
			})
		}
	}
	return Surrogate(real)
}

const base64Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// base64Surrogate draws every base64 character of real (secret keys and
// session tokens are base64) from the whole base64 alphabet, keeping
// length and any other byte ('=' padding): unlike Surrogate it does not
// keep each position's character class, which would tell the container
// something about the real key.
func base64Surrogate(real string) (string, error) {
	return randomOver(real, func(_ int, c byte) string {
		if strings.IndexByte(base64Chars, c) >= 0 {
			return base64Chars
		}
		return ""
	})
}

// randomOver replaces each byte of real for which set returns an alphabet
// with a random byte of it, and keeps the others; it never returns real.
func randomOver(real string, set func(i int, c byte) string) (string, error) {
	for range maxSurrogateTries {
		out := []byte(real)
		rnd := make([]byte, len(out))
		if _, err := rand.Read(rnd); err != nil {
			return "", fmt.Errorf("surrogate: %w", err)
		}
		changed := 0
		for i, c := range out {
			if s := set(i, c); s != "" {
				// 256 is a multiple of both alphabets' sizes (32, 64): no bias.
				out[i] = s[int(rnd[i])%len(s)]
				changed++
			}
		}
		if changed == 0 {
			return "", fmt.Errorf("surrogate: %w", ErrNoEntropy)
		}
		if s := string(out); s != real {
			return s, nil
		}
	}
	return "", errors.New("surrogate: could not produce a value different from the real one")
}

// fileAWS is the wire form of one AWS credential in the replacement file.
type fileAWS struct {
	AccessKeyID     fileAWSPart  `json:"access_key_id"`
	SecretAccessKey fileAWSPart  `json:"secret_access_key"`
	SessionToken    *fileAWSPart `json:"session_token,omitempty"`
	Scopes          []string     `json:"scopes"`
}

type fileAWSPart struct {
	Surrogate string `json:"surrogate"`
	Value     string `json:"value"`
}

func (e *awsEntry) file() *fileAWS {
	part := func(p awsPart) fileAWSPart { return fileAWSPart{Surrogate: p.surrogate, Value: p.real.Reveal()} }
	f := &fileAWS{AccessKeyID: part(e.keyID), SecretAccessKey: part(e.secret), Scopes: e.scopes}
	if e.hasToken() {
		t := part(e.token)
		f.SessionToken = &t
	}
	return f
}

func (fa *fileAWS) entry(name string) (awsEntry, error) {
	a := AWS{AccessKeyID: fa.AccessKeyID.Value, SecretAccessKey: fa.SecretAccessKey.Value, Scopes: fa.Scopes}
	if fa.SessionToken != nil {
		a.SessionToken = fa.SessionToken.Value
	}
	if err := checkAWS(a); err != nil {
		return awsEntry{}, err
	}
	e := awsEntry{
		name:   name,
		keyID:  awsPart{real: NewValue(a.AccessKeyID), surrogate: fa.AccessKeyID.Surrogate},
		secret: awsPart{real: NewValue(a.SecretAccessKey), surrogate: fa.SecretAccessKey.Surrogate},
		scopes: fa.Scopes,
	}
	if fa.SessionToken != nil {
		e.token = awsPart{real: NewValue(a.SessionToken), surrogate: fa.SessionToken.Surrogate}
	}
	for _, p := range []struct {
		field string
		part  awsPart
		set   bool
	}{{"access_key_id", e.keyID, true}, {"secret_access_key", e.secret, true}, {"session_token", e.token, e.hasToken()}} {
		switch {
		case !p.set:
		case p.part.surrogate == "":
			return awsEntry{}, fmt.Errorf("%s: surrogate is empty", p.field)
		case p.part.surrogate == p.part.real.Reveal():
			return awsEntry{}, fmt.Errorf("%s: surrogate equals the real value", p.field)
		case len(p.part.surrogate) != len(p.part.real.Reveal()):
			return awsEntry{}, fmt.Errorf("%s: surrogate and real value differ in length", p.field)
		}
	}
	if !isAWSKeyID(e.keyID.surrogate) {
		return awsEntry{}, errors.New("access_key_id: surrogate must be letters and digits")
	}
	return e, nil
}
