package secrets

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vector is one case of AWS's signing test suite (testdata/sigv4).
type vector struct {
	dir     string
	context struct {
		Credentials struct {
			AccessKeyID     string `json:"access_key_id"`
			SecretAccessKey string `json:"secret_access_key"`
			Token           string `json:"token"`
		} `json:"credentials"`
		Expiration       int    `json:"expiration_in_seconds"`
		Normalize        bool   `json:"normalize"`
		Region           string `json:"region"`
		Service          string `json:"service"`
		SignBody         bool   `json:"sign_body"`
		Timestamp        string `json:"timestamp"`
		OmitSessionToken bool   `json:"omit_session_token"`
	}
}

func (v *vector) file(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (v *vector) has(name string) bool {
	_, err := os.Stat(filepath.Join(v.dir, name))
	return err == nil
}

func vectors(t *testing.T, kind string) []*vector {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "sigv4", kind, "*"))
	if err != nil || len(dirs) < 30 {
		t.Fatalf("AWS test suite %s: %d cases (%v)", kind, len(dirs), err)
	}
	var out []*vector
	for _, d := range dirs {
		v := &vector{dir: d}
		if err := json.Unmarshal([]byte(v.file(t, "context.json")), &v.context); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		out = append(out, v)
	}
	return out
}

// parseWireRequest reads a request.txt: "METHOD TARGET HTTP/1.1", headers
// (a line starting with whitespace continues the header before it), a
// blank line and the body. The target is kept raw, as a client sent it.
func parseWireRequest(t *testing.T, text string) *http.Request {
	t.Helper()
	head, body, _ := strings.Cut(text, "\n\n")
	sc := bufio.NewScanner(strings.NewReader(head))
	sc.Scan()
	f := strings.Fields(sc.Text())
	if len(f) < 3 {
		t.Fatalf("request line %q", sc.Text())
	}
	target := strings.Join(f[1:len(f)-1], " ")
	path, query, _ := strings.Cut(target, "?")
	r := &http.Request{Method: f[0], Header: http.Header{}, URL: &url.URL{Scheme: "https", Opaque: path, RawQuery: query}}
	var last string
	for sc.Scan() {
		l := sc.Text()
		if l == "" {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			vs := r.Header[last]
			vs[len(vs)-1] += " " + strings.TrimSpace(l)
			continue
		}
		k, v, _ := strings.Cut(l, ":")
		last = http.CanonicalHeaderKey(k)
		if last == "Host" {
			r.Host = v
			continue
		}
		r.Header[last] = append(r.Header[last], v)
	}
	r.ContentLength = int64(len(body))
	if body != "" {
		r.Body = http.NoBody
		r.Body = readCloser(body)
	}
	return r
}

type stringBody struct{ *strings.Reader }

func (stringBody) Close() error { return nil }

func readCloser(s string) stringBody { return stringBody{strings.NewReader(s)} }

// signedHeaderNames is the SignedHeaders line of a canonical request.
func signedHeaderNames(canonical string) []string {
	lines := strings.Split(canonical, "\n")
	return strings.Split(lines[len(lines)-2], ";")
}

func payloadOf(canonical string) string {
	lines := strings.Split(canonical, "\n")
	return lines[len(lines)-1]
}

func (v *vector) scope(alg string) (scope, string) {
	ts, _ := time.Parse(time.RFC3339, v.context.Timestamp)
	sc := scope{date: ts.Format("20060102"), region: v.context.Region, service: v.context.Service}
	if alg == algV4A {
		sc.region = ""
	}
	return sc, ts.Format(amzDateLayout)
}

// TestSigV4Suite builds every case's canonical request and string to sign
// from its signed request, as the proxy does, and checks them and the
// signature against the suite's files: header and query (presigned) forms.
func TestSigV4Suite(t *testing.T) {
	for _, kind := range []string{"v4", "v4a"} {
		for _, v := range vectors(t, kind) {
			t.Run(kind+"/"+filepath.Base(v.dir), func(t *testing.T) {
				alg := algV4
				if kind == "v4a" {
					alg = algV4A
				}
				for _, form := range []string{"header", "query"} {
					if !v.has(form + "-signed-request.txt") {
						continue
					}
					r := parseWireRequest(t, v.file(t, form+"-signed-request.txt"))
					wantCanon := v.file(t, form+"-canonical-request.txt")
					params, err := parseQuery(r.URL.RawQuery)
					if err != nil {
						t.Fatal(err)
					}
					uri := canonicalURI(rawPath(r.URL), false, v.context.Normalize)
					query := canonicalQuery(params, form == "query", v.context.OmitSessionToken)
					got, err := canonicalRequest(r, uri, query, signedHeaderNames(wantCanon), payloadOf(wantCanon))
					if err != nil {
						t.Fatal(err)
					}
					if got != wantCanon {
						t.Fatalf("%s canonical request:\n%s\nwant:\n%s", form, got, wantCanon)
					}
					sc, amzDate := v.scope(alg)
					sts := stringToSign(alg, amzDate, sc, got)
					if v.has(form + "-string-to-sign.txt") {
						if want := v.file(t, form+"-string-to-sign.txt"); sts != want {
							t.Fatalf("%s string to sign:\n%s\nwant:\n%s", form, sts, want)
						}
					}
					sig, err := findSigV4(r)
					if err != nil {
						t.Fatalf("%s: find signature: %v", form, err)
					}
					if sig.keyID != v.context.Credentials.AccessKeyID || sig.scope != sc || sig.amzDate != amzDate {
						t.Fatalf("%s: parsed %+v", form, sig)
					}
					if kind == "v4" {
						want := strings.TrimSpace(v.file(t, form+"-signature.txt"))
						s := signer{hmacKey: signingKey(v.context.Credentials.SecretAccessKey, sc)}
						if got, _ := s.sign(sts); got != want || sig.signature != want {
							t.Fatalf("%s signature %s (in request %s), want %s", form, got, sig.signature, want)
						}
						continue
					}
					if !verifyV4A(v.publicKey(t), sts, sig.signature) {
						t.Fatalf("%s: the suite's SigV4A signature does not verify", form)
					}
				}
			})
		}
	}
}

func (v *vector) publicKey(t *testing.T) *ecdsa.PublicKey {
	t.Helper()
	var xy struct{ X, Y string }
	if err := json.Unmarshal([]byte(v.file(t, "public-key.json")), &xy); err != nil {
		t.Fatal(err)
	}
	return publicKeyXY(t, xy.X, xy.Y)
}

func publicKeyXY(t *testing.T, x, y string) *ecdsa.PublicKey {
	t.Helper()
	raw, err := hex.DecodeString("04" + x + y)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestDeriveV4AKey derives every SigV4A suite case's key from its
// credentials and compares it with the suite's public key, plus the key of
// aws-c-auth's chunked-signing test (the S3 documentation's credentials).
func TestDeriveV4AKey(t *testing.T) {
	check := func(t *testing.T, keyID, secret string, want *ecdsa.PublicKey) {
		t.Helper()
		k, err := deriveV4AKey(keyID, secret)
		if err != nil {
			t.Fatal(err)
		}
		if !k.PublicKey.Equal(want) {
			got, _ := k.PublicKey.Bytes()
			w, _ := want.Bytes()
			t.Fatalf("derived public key %x, want %x", got, w)
		}
	}
	for _, v := range vectors(t, "v4a") {
		if !v.has("public-key.json") {
			continue
		}
		t.Run(filepath.Base(v.dir), func(t *testing.T) {
			check(t, v.context.Credentials.AccessKeyID, v.context.Credentials.SecretAccessKey, v.publicKey(t))
		})
	}
	t.Run("s3 chunked example", func(t *testing.T) {
		check(t, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", publicKeyXY(t,
			"18b7d04643359f6ec270dcbab8dce6d169d66ddc9778c75cfb08dfdb701637ab",
			"fa36b35e4fe67e3112261d2e17a956ef85b06e44712d2850bcd3c2161e9993f2"))
	})
}
