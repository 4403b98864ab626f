package secrets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/google/go-cmp/cmp"
)

// The AWS SDK for Go's own signer is the oracle here: what it signs with
// the surrogate must verify, and must come out of the injector exactly as
// the SDK signs it with the real key.

const (
	realKeyID        = "AKIAREALREALREALREAL"
	realSecret       = "realSecretKeyrealSecretKeyrealSecretKey0"
	realSessionToken = "FwoGZXIvYXdzEBYaDREALTOKENreal+token/value=="
)

var signTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func testAWS(t testing.TB, token bool) (*awsInjector, *awsEntry) {
	t.Helper()
	a := AWS{AccessKeyID: realKeyID, SecretAccessKey: realSecret, Scopes: []string{"*.amazonaws.com", "s3.example.test"}}
	if token {
		a.SessionToken = realSessionToken
	}
	e, err := newAWSEntry("AWS", a)
	if err != nil {
		t.Fatal(err)
	}
	inj := newAWSInjector([]awsEntry{e}, Env{MaxBody: 1 << 20})
	return inj, &inj.entries[0]
}

func surrogateCreds(e *awsEntry) aws.Credentials {
	return aws.Credentials{AccessKeyID: e.keyID.surrogate, SecretAccessKey: e.secret.surrogate, SessionToken: e.token.surrogate}
}

func realCreds(e *awsEntry) aws.Credentials {
	return aws.Credentials{AccessKeyID: realKeyID, SecretAccessKey: realSecret, SessionToken: e.token.real.Reveal()}
}

// outgoing builds a request as the proxy hands it to an injector: the raw
// target in an opaque URL, the checked host.
func outgoing(method, host, target string, body []byte, header map[string]string) *http.Request {
	path, query, _ := strings.Cut(target, "?")
	r := &http.Request{Method: method, Host: host, Header: http.Header{},
		URL: &url.URL{Scheme: "https", Host: host + ":443", Opaque: path, RawQuery: query}, Body: http.NoBody}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	return r
}

func sdkSign(t testing.TB, r *http.Request, creds aws.Credentials, payload, service, region string) {
	t.Helper()
	err := v4.NewSigner().SignHTTP(context.Background(), creds, r, payload, service, region, signTime, func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = singleEncodes(service)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func sdkPresign(t testing.TB, r *http.Request, creds aws.Credentials, payload, service, region string) string {
	t.Helper()
	u, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, r, payload, service, region, signTime, func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = singleEncodes(service)
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func cloneReq(r *http.Request, body []byte) *http.Request {
	c := r.Clone(context.Background())
	u := *r.URL
	c.URL = &u
	if body != nil {
		c.Body = io.NopCloser(bytes.NewReader(body))
	}
	return c
}

func inject(t *testing.T, inj Injector, r *http.Request) Injection {
	t.Helper()
	res, err := inj.Inject(r)
	if err != nil {
		t.Fatalf("Inject: %v", err)
	}
	return res
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestAWSResignMatchesSDK: for requests the SDK signs with the surrogate,
// the injector's output carries exactly the SDK's signature with the real
// key (and the real token), whatever the service's path encoding.
func TestAWSResignMatchesSDK(t *testing.T) {
	type tc struct {
		name, method, host, target, service, region string
		body                                        []byte
		header                                      map[string]string
		payload                                     string // "" = hash of body, sent in x-amz-content-sha256 for s3
	}
	tests := []tc{
		{name: "s3 get, key with spaces and non-ascii", method: "GET", host: "bucket.s3.us-east-1.amazonaws.com",
			target: "/dir/a%20key%20%C3%A4%E6%97%A5.txt", service: "s3", region: "us-east-1"},
		{name: "s3 put with checksum headers", method: "PUT", host: "s3.example.test",
			target: "/bucket/k%2Bplus?x-id=PutObject", service: "s3", region: "eu-west-1", body: []byte("hello world"),
			header: map[string]string{"Content-Type": "text/plain", "X-Amz-Checksum-Crc32": "DUoRhQ==", "X-Amz-Meta-Note": "a  b   c"}},
		{name: "s3 unsigned payload", method: "PUT", host: "s3.example.test", target: "/bucket/k", service: "s3", region: "us-east-1",
			body: []byte("data"), payload: unsignedPayload},
		{name: "sts post form body, no content sha header", method: "POST", host: "sts.amazonaws.com", target: "/",
			service: "sts", region: "us-east-1", body: []byte("Action=GetCallerIdentity&Version=2011-06-15"),
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}},
		{name: "non-s3 path is encoded twice", method: "GET", host: "lambda.us-east-1.amazonaws.com",
			target:  "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations?Qualifier=%24LATEST",
			service: "lambda", region: "us-east-1"},
		{name: "query with repeated keys and reserved characters", method: "GET", host: "bucket.s3.us-east-1.amazonaws.com",
			target: "/?list-type=2&prefix=a%2Fb%20c&prefix2=%E2%9C%93&delimiter=%2F&empty=", service: "s3", region: "us-east-1"},
	}
	for _, token := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/token=%v", tt.name, token), func(t *testing.T) {
				inj, e := testAWS(t, token)
				payload := tt.payload
				if payload == "" {
					payload = sha(tt.body)
				}
				header := map[string]string{}
				for k, v := range tt.header {
					header[k] = v
				}
				if tt.service == "s3" {
					header[hdrContentSHA256] = payload
				}
				agent := outgoing(tt.method, tt.host, tt.target, tt.body, header)
				want := cloneReq(agent, tt.body)
				sdkSign(t, agent, surrogateCreds(e), payload, tt.service, tt.region)
				sdkSign(t, want, realCreds(e), payload, tt.service, tt.region)

				res := inject(t, inj, agent)
				if res.Signed != "aws" || res.SignError != "" {
					t.Fatalf("Signed %q, SignError %q", res.Signed, res.SignError)
				}
				if diff := cmp.Diff(want.Header, agent.Header); diff != "" {
					t.Errorf("headers differ from the SDK's real signing (-sdk +injector):\n%s", diff)
				}
				got, _ := io.ReadAll(agent.Body)
				if !bytes.Equal(got, tt.body) {
					t.Errorf("body %q; want %q", got, tt.body)
				}
				wantPairs := 1
				if token {
					wantPairs = 2
				}
				if len(res.Injected) != wantPairs || res.Injected[0].Real.Reveal() != realKeyID {
					t.Errorf("Injected %v", res.Injected)
				}
			})
		}
	}
}

// TestAWSPresignedMatchesSDK: a URL the SDK presigns with the surrogate
// comes out signed as the SDK presigns it with the real key, X-Amz-Expires
// and every other parameter kept.
func TestAWSPresignedMatchesSDK(t *testing.T) {
	for _, token := range []bool{false, true} {
		t.Run(fmt.Sprintf("token=%v", token), func(t *testing.T) {
			inj, e := testAWS(t, token)
			base := outgoing("GET", "bucket.s3.us-east-1.amazonaws.com", "/a%20b/%E6%97%A5.txt?X-Amz-Expires=900&response-content-type=text%2Fplain", nil, nil)
			agentURL := sdkPresign(t, cloneReq(base, nil), surrogateCreds(e), unsignedPayload, "s3", "us-east-1")
			wantURL := sdkPresign(t, cloneReq(base, nil), realCreds(e), unsignedPayload, "s3", "us-east-1")
			u, _ := url.Parse(agentURL)
			agent := outgoing("GET", base.Host, rawPath(base.URL)+"?"+u.RawQuery, nil, nil)
			res := inject(t, inj, agent)
			if res.Signed != "aws" || res.SignError != "" {
				t.Fatalf("Signed %q, SignError %q", res.Signed, res.SignError)
			}
			wu, _ := url.Parse(wantURL)
			got, _ := url.ParseQuery(agent.URL.RawQuery)
			if diff := cmp.Diff(wu.Query(), got); diff != "" {
				t.Errorf("query differs from the SDK's real presigning (-sdk +injector):\n%s", diff)
			}
			if !strings.HasPrefix(agent.URL.RawQuery, strings.SplitN(u.RawQuery, "&", 2)[0]) {
				t.Errorf("parameter order changed: %s", agent.URL.RawQuery)
			}
		})
	}
}

func TestAWSNotResigned(t *testing.T) {
	inj, e := testAWS(t, true)
	signed := func(host string, mod func(*http.Request)) *http.Request {
		r := outgoing("GET", host, "/bucket/key", nil, map[string]string{hdrContentSHA256: emptySHA256})
		sdkSign(t, r, surrogateCreds(e), emptySHA256, "s3", "us-east-1")
		if mod != nil {
			mod(r)
		}
		return r
	}
	tests := []struct {
		name      string
		r         *http.Request
		signed    bool   // Signed == "aws"
		why       string // in SignError
		stripped  []Strip
		unchanged bool
	}{
		{name: "out of scope: surrogate goes on as it is", r: signed("evil.example", nil), unchanged: true},
		{name: "the agent's own key is left alone", r: func() *http.Request {
			r := outgoing("GET", "s3.example.test", "/b/k", nil, map[string]string{hdrContentSHA256: emptySHA256})
			sdkSign(t, r, aws.Credentials{AccessKeyID: "AKIAOWNOWNOWNOWNOWN1", SecretAccessKey: "own"}, emptySHA256, "s3", "us-east-1")
			return r
		}(), unchanged: true},
		{name: "not AWS at all", r: outgoing("GET", "s3.example.test", "/", nil, map[string]string{"Authorization": "Bearer x"}), unchanged: true},
		{name: "changed after signing", r: signed("s3.example.test", func(r *http.Request) { r.Header.Set(hdrDate, "20260304T050608Z") }),
			signed: true, why: "does not verify", unchanged: true},
		{name: "signed header removed", r: signed("s3.example.test", func(r *http.Request) { r.Header.Del(hdrContentSHA256) }),
			signed: true, why: "signed header x-amz-content-sha256 is not in the request", unchanged: true},
		{name: "foreign session token", r: signed("s3.example.test", func(r *http.Request) {
			r.Header.Set(hdrToken, "other")
		}), signed: true, why: "does not verify", unchanged: true},
		{name: "malformed authorization naming the surrogate", r: signed("s3.example.test", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=", "SignedHeaderz=", 1))
		}), signed: true, why: "unknown part", unchanged: true},
		{name: "date of another day", r: signed("s3.example.test", func(r *http.Request) {
			r.Header.Set(hdrDate, "20260305T050607Z")
		}), signed: true, why: "not on the credential's date", unchanged: true},
		{name: "two authorization headers", r: signed("s3.example.test", func(r *http.Request) {
			r.Header.Add("Authorization", r.Header.Get("Authorization"))
		}), signed: true, why: "more than one Authorization", unchanged: true},
		{name: "plain http strips the surrogate signature and token", r: signed("s3.example.test", func(r *http.Request) { r.URL.Scheme = "http" }),
			signed: true, why: StripPlainHTTP, stripped: []Strip{{Header: "Authorization", Reason: StripPlainHTTP}, {Header: hdrToken, Reason: StripPlainHTTP}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.r.Header.Clone()
			query := tt.r.URL.RawQuery
			res := inject(t, inj, tt.r)
			if got := res.Signed == "aws"; got != tt.signed {
				t.Errorf("Signed %q; want signed=%v", res.Signed, tt.signed)
			}
			if tt.why == "" && res.SignError != "" || !strings.Contains(res.SignError, tt.why) {
				t.Errorf("SignError %q; want it to contain %q", res.SignError, tt.why)
			}
			if diff := cmp.Diff(tt.stripped, res.Stripped); diff != "" {
				t.Errorf("Stripped (-want +got):\n%s", diff)
			}
			if len(res.Injected) > 0 {
				t.Errorf("Injected %v: nothing real may be in the request", res.Injected)
			}
			if tt.unchanged && (!cmp.Equal(before, tt.r.Header) || query != tt.r.URL.RawQuery) {
				t.Errorf("request changed:\n%s", cmp.Diff(before, tt.r.Header))
			}
			for _, vs := range tt.r.Header {
				for _, v := range vs {
					if strings.Contains(v, realKeyID) || strings.Contains(v, realSessionToken) {
						t.Errorf("a real value in the request: %q", v)
					}
				}
			}
		})
	}
}

// TestAWSTokenAdded: an agent that leaves the session token out still
// gets the real one in, signed (temporary keys need it).
func TestAWSTokenAdded(t *testing.T) {
	inj, e := testAWS(t, true)
	r := outgoing("GET", "sts.amazonaws.com", "/?Action=GetCallerIdentity&Version=2011-06-15", nil, nil)
	creds := surrogateCreds(e)
	creds.SessionToken = ""
	sdkSign(t, r, creds, emptySHA256, "sts", "us-east-1")
	want := cloneReq(r, nil)
	want.Header.Del("Authorization")
	sdkSign(t, want, realCreds(e), emptySHA256, "sts", "us-east-1")
	if res := inject(t, inj, r); res.SignError != "" {
		t.Fatal(res.SignError)
	}
	if diff := cmp.Diff(want.Header, r.Header); diff != "" {
		t.Errorf("(-sdk +injector):\n%s", diff)
	}
}

func TestAWSBodyHashCapped(t *testing.T) {
	inj, e := testAWS(t, false)
	inj.maxBody = 8
	body := []byte("0123456789abcdef")
	r := outgoing("POST", "sts.amazonaws.com", "/", body, nil)
	sdkSign(t, r, surrogateCreds(e), sha(body), "sts", "us-east-1")
	r.ContentLength = -1 // as over HTTP/2 without content-length
	res := inject(t, inj, r)
	if !strings.Contains(res.SignError, "over the limit") {
		t.Errorf("SignError %q; want the body cap", res.SignError)
	}
	if got, _ := io.ReadAll(r.Body); !bytes.Equal(got, body) {
		t.Errorf("body after a failed hash %q; want it whole", got)
	}
}

// TestAWSV4A: a SigV4A request signed with the surrogate's derived key is
// re-signed with the real one (checked with the real key's public half).
func TestAWSV4A(t *testing.T) {
	inj, e := testAWS(t, true)
	r := outgoing("GET", "mrap.accesspoint.s3-global.amazonaws.com", "/k%20%C3%A4", nil, map[string]string{
		hdrContentSHA256: emptySHA256, hdrRegionSet: "*", hdrDate: signTime.Format(amzDateLayout), hdrToken: e.token.surrogate})
	sc := scope{date: signTime.Format("20060102"), service: "s3"}
	signed := []string{"host", "x-amz-content-sha256", "x-amz-date", "x-amz-region-set", "x-amz-security-token"}
	creq, err := canonicalRequest(r, rawPath(r.URL), "", signed, emptySHA256)
	if err != nil {
		t.Fatal(err)
	}
	surKey, _ := deriveV4AKey(e.keyID.surrogate, e.secret.surrogate)
	sig, _ := signV4A(surKey, stringToSign(algV4A, signTime.Format(amzDateLayout), sc, creq))
	r.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s", algV4A, e.keyID.surrogate, sc, strings.Join(signed, ";"), sig))

	if res := inject(t, inj, r); res.SignError != "" || res.Signed != "aws" {
		t.Fatalf("%+v", res)
	}
	got, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil || got.keyID != realKeyID {
		t.Fatalf("re-signed authorization %q: %v", r.Header.Get("Authorization"), err)
	}
	if r.Header.Get(hdrToken) != realSessionToken {
		t.Errorf("token %q; want the real one", r.Header.Get(hdrToken))
	}
	creq, _ = canonicalRequest(r, rawPath(r.URL), "", signed, emptySHA256)
	realKey, _ := deriveV4AKey(realKeyID, realSecret)
	if !verifyV4A(&realKey.PublicKey, stringToSign(algV4A, signTime.Format(amzDateLayout), sc, creq), got.signature) {
		t.Error("the re-signed request does not verify with the real key")
	}
}

func TestAWSSurrogates(t *testing.T) {
	for _, real := range []AWS{
		{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", Scopes: []string{"*"}},
		{AccessKeyID: "ASIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
			SessionToken: realSessionToken + strings.Repeat("AbC+/9", 60) + "==", Scopes: []string{"*"},
			AccessKeyIDEnv: "CI_KEY", SecretAccessKeyEnv: "CI_SECRET", SessionTokenEnv: "CI_TOKEN"},
		{AccessKeyID: "minioadmin", SecretAccessKey: "minioadmin", Scopes: []string{"minio.local"}},
	} {
		m, err := NewMapFrom(Pools{AWS: map[string]AWS{"AWS": real}, Plain: map[string]string{"AWS_ACCESS_KEY_ID": "plain"}})
		if err != nil {
			t.Fatal(err)
		}
		e := m.aws[0]
		for _, p := range []struct {
			part     awsPart
			alphabet string
			keep     int
		}{{e.keyID, awsKeyIDChars, 4}, {e.secret, base64Chars, 0}, {e.token, base64Chars + "=", 0}} {
			r := p.part.real.Reveal()
			s := p.part.surrogate
			if r == "" {
				continue
			}
			if real.AccessKeyID == "minioadmin" && p.alphabet == awsKeyIDChars {
				p.alphabet, p.keep = "abcdefghijklmnopqrstuvwxyz", 0
			}
			if len(s) != len(r) || s == r || s[:p.keep] != r[:p.keep] {
				t.Errorf("surrogate %q for %q: want the same length and prefix, another value", s, r)
			}
			for i := p.keep; i < len(s); i++ {
				if !strings.ContainsRune(p.alphabet, rune(s[i])) {
					t.Errorf("surrogate %q: %q is outside %q", s, s[i], p.alphabet)
				}
			}
		}
		env := m.Env()
		wantEnv := map[string]string{e.keyID.env: e.keyID.surrogate, e.secret.env: e.secret.surrogate}
		if real.SessionToken != "" {
			wantEnv[e.token.env] = e.token.surrogate
		}
		if real.AccessKeyIDEnv != "" {
			wantEnv["AWS_ACCESS_KEY_ID"] = "plain"
		}
		if diff := cmp.Diff(wantEnv, env); diff != "" {
			t.Errorf("Env (-want +got), signing wins over plain:\n%s", diff)
		}
		for _, v := range env {
			if v == real.SecretAccessKey || v == real.SessionToken {
				t.Errorf("a real key in the container's environment")
			}
		}
	}
	if _, err := NewMapFrom(Pools{AWS: map[string]AWS{"A": {AccessKeyID: "AKIA/x", SecretAccessKey: "s", Scopes: []string{"x"}}}}); err == nil {
		t.Error("a key id with a slash was accepted")
	}
	if _, err := NewMapFrom(Pools{AWS: map[string]AWS{"A": {AccessKeyID: "AKIAX", SecretAccessKey: "s", Scopes: []string{"x"},
		SecretAccessKeyEnv: "AWS_ACCESS_KEY_ID"}}}); err == nil {
		t.Error("one variable for two fields was accepted")
	}
	if s := fmt.Sprint(AWS{AccessKeyID: realKeyID, SecretAccessKey: realSecret, SessionToken: realSessionToken}); strings.Contains(s, "REAL") || strings.Contains(s, "real") {
		t.Errorf("AWS prints its keys: %s", s)
	}
}

func TestAWSReplacementFile(t *testing.T) {
	m, err := NewMapFrom(Pools{
		AWS:    map[string]AWS{"AWS": {AccessKeyID: realKeyID, SecretAccessKey: realSecret, SessionToken: realSessionToken, Scopes: []string{"*.amazonaws.com"}}},
		Masked: map[string]Masked{"GH": {Value: "ghp_abc123", Scopes: []string{"api.github.com"}, Headers: []string{"Authorization"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := m.WriteReplacementFile(path); err != nil {
		t.Fatal(err)
	}
	r, err := LoadReplacementFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m.aws, r.aws, cmp.AllowUnexported(awsEntry{}, awsPart{}, Value{}), cmp.Transformer("noEnv", func(p awsPart) awsPart { p.env = ""; return p })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if r.Len() != 2 || len(r.Injectors(Env{MaxBody: 1})) != 2 || len(r.Pairs()) != 4 {
		t.Errorf("Len %d, injectors, pairs %d", r.Len(), len(r.Pairs()))
	}
	data, _ := os.ReadFile(path)
	var f map[string]any
	_ = json.Unmarshal(data, &f)
	bad := func(mod func(aws map[string]any)) []byte {
		var g map[string]any
		_ = json.Unmarshal(data, &g)
		for _, c := range g["credentials"].([]any) {
			if c.(map[string]any)["kind"] == KindAWS {
				mod(c.(map[string]any))
			}
		}
		out, _ := json.Marshal(g)
		return out
	}
	part := func(c map[string]any, field string) map[string]any {
		return c["aws"].(map[string]any)[field].(map[string]any)
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"no aws object":        {bad(func(c map[string]any) { delete(c, "aws") }), "without an aws object"},
		"two objects":          {bad(func(c map[string]any) { c["masked"] = map[string]any{} }), "more than one kind's object"},
		"surrogate equal real": {bad(func(c map[string]any) { part(c, "secret_access_key")["surrogate"] = realSecret }), "surrogate equals the real value"},
		"empty surrogate":      {bad(func(c map[string]any) { part(c, "access_key_id")["surrogate"] = "" }), "surrogate is empty"},
		"unknown field":        {bad(func(c map[string]any) { c["aws"].(map[string]any)["region"] = "x" }), "unknown field"},
		"no scopes":            {bad(func(c map[string]any) { c["aws"].(map[string]any)["scopes"] = []string{} }), "scopes is empty"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseReplacements(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want %q", err, tc.want)
			}
		})
	}
}
