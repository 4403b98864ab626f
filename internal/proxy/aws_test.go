package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/airut/airut/internal/secrets"
	"github.com/airut/airut/internal/testkit/awsclient"
	"github.com/airut/airut/internal/testkit/awsfake"
)

const (
	awsRealKeyID  = "ASIAREALREALREALREAL"
	awsRealSecret = "RealSecretKey/realSecretKey+realSecretK0"
	awsRealToken  = "IQoJb3JpZ2luX2VjEREALSESSIONTOKEN/realsessiontoken+realsessiontoken=="
	awsBucket     = "airut-test"
)

const awsDropHost = "drop.s3.us-east-1.amazonaws.com"

var awsHosts = []string{"sts.amazonaws.com", "sts.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com", awsBucket + ".s3.us-east-1.amazonaws.com", awsDropHost}

// dropper reads 100 KiB of a request's body and closes the connection.
func dropper(w http.ResponseWriter, r *http.Request) {
	_, _ = io.CopyN(io.Discard, r.Body, 100<<10)
	if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.Close()
	}
}

type awsEnv struct {
	px     *testProxy
	fake   *awsfake.Server
	client *awsclient.Client
	env    map[string]string
}

// newAWSEnv is a proxy with one AWS credential in front of the verifying
// fake of S3 and STS, and the SDK's clients configured as the agent's
// would be: from the surrogates in its environment.
func newAWSEnv(t testing.TB, h2 bool) *awsEnv {
	t.Helper()
	ca := newTestCA(t)
	fake := awsfake.New(awsRealKeyID, awsRealSecret, awsRealToken)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == awsDropHost {
			dropper(w, r)
			return
		}
		fake.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, awsHosts...)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	plain := httptest.NewServer(fake)
	t.Cleanup(plain.Close)
	m, err := secrets.NewMapFrom(secrets.Pools{AWS: map[string]secrets.AWS{"AWS": {
		AccessKeyID: awsRealKeyID, SecretAccessKey: awsRealSecret, SessionToken: awsRealToken,
		Scopes: []string{"*.amazonaws.com"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	resolve := map[string]string{}
	for _, h := range awsHosts {
		resolve[h] = srv.Listener.Addr().String()
	}
	resolve["plain.s3.us-east-1.amazonaws.com"] = plain.Listener.Addr().String()
	px := startProxy(t, Config{
		Allowlist:    mustAllowlist(t, "domains:\n  - \"*.amazonaws.com\"\n"),
		Replacements: m.Replacements(),
		UpstreamCA:   ca.pem,
		Resolve:      resolve,
	})
	env := m.Env()
	creds := aws.Credentials{AccessKeyID: env["AWS_ACCESS_KEY_ID"], SecretAccessKey: env["AWS_SECRET_ACCESS_KEY"], SessionToken: env["AWS_SESSION_TOKEN"]}
	return &awsEnv{px: px, fake: fake, client: awsclient.New(px.client(h2), creds, "us-east-1"), env: env}
}

// lastSeen is the fake's judgement of the last request.
func (e *awsEnv) lastSeen(t *testing.T) awsfake.Seen {
	t.Helper()
	seen := e.fake.Seen()
	if len(seen) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return seen[len(seen)-1]
}

func (e *awsEnv) records(t *testing.T) []Record { t.Helper(); return e.px.records(t) }

// TestAWSSDKThroughProxy: the SDK for Go, holding only surrogates, works
// against an upstream that accepts only the real keys, over HTTP/1.1 and
// HTTP/2, and every request is logged [signed: aws].
func TestAWSSDKThroughProxy(t *testing.T) {
	protos(func(t *testing.T, h2 bool) {
		e := newAWSEnv(t, h2)
		ctx := context.Background()
		big := bytes.Repeat([]byte("0123456789abcdef"), 6<<16) // 6 MiB
		const key = "dir/a key with spaces ä日本.txt"

		if err := e.client.Put(ctx, awsBucket, "small.txt", []byte("hello")); err != nil {
			t.Fatalf("PutObject small: %v", err)
		}
		if s := e.lastSeen(t); s.Payload != "STREAMING-UNSIGNED-PAYLOAD-TRAILER" || s.KeyID != awsRealKeyID {
			t.Errorf("PutObject went as %+v; want the SDK's default aws-chunked trailing checksum, real key", s)
		}
		if err := e.client.PutStream(ctx, awsBucket, key, bytes.NewReader(big), int64(len(big))); err != nil {
			t.Fatalf("PutObject 6 MiB: %v", err)
		}
		if s := e.lastSeen(t); s.Payload != "STREAMING-UNSIGNED-PAYLOAD-TRAILER" || s.KeyID != awsRealKeyID {
			t.Errorf("streamed PutObject went as %+v; want the SDK's aws-chunked trailing checksum, real key", s)
		}
		if got, _ := e.fake.Object(awsBucket, key); !bytes.Equal(got, big) {
			t.Fatalf("stored %d bytes; want %d", len(got), len(big))
		}
		got, err := e.client.Get(ctx, awsBucket, key)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("GetObject: %d bytes, %v", len(got), err)
		}
		account, _, err := e.client.WhoAmI(ctx)
		if err != nil || account != awsfake.Account {
			t.Fatalf("GetCallerIdentity: %q, %v", account, err)
		}
		url, err := e.client.Presign(ctx, awsBucket, "small.txt", 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(url, e.env["AWS_ACCESS_KEY_ID"]) {
			t.Fatalf("presigned URL %s does not carry the surrogate key id", url)
		}
		if code, body, err := e.client.Fetch(ctx, url); err != nil || code != 200 || string(body) != "hello" {
			t.Fatalf("presigned GET: %d %q %v", code, body, err)
		}
		code, body, err := e.client.GetV4A(ctx, awsBucket+".s3.us-east-1.amazonaws.com", "/small.txt")
		if err != nil || code != 200 || string(body) != "hello" {
			t.Fatalf("SigV4A GET: %d %q %v", code, body, err)
		}
		if s := e.lastSeen(t); s.Algorithm != "AWS4-ECDSA-P256-SHA256" || s.KeyID != awsRealKeyID {
			t.Errorf("SigV4A GET reached the upstream as %+v", s)
		}
		code, out, err := e.client.PutSignedChunks(ctx, awsBucket+".s3.us-east-1.amazonaws.com", "/chunked.bin", big, 64<<10)
		if err != nil || code != 200 {
			t.Fatalf("signed aws-chunked PUT: %d %s %v", code, out, err)
		}
		if s := e.lastSeen(t); s.Chunks != len(big)/(64<<10)+1 {
			t.Errorf("upstream checked %d chunk signatures; want %d", s.Chunks, len(big)/(64<<10)+1)
		}
		if got, _ := e.fake.Object(awsBucket, "chunked.bin"); !bytes.Equal(got, big) {
			t.Errorf("chunked upload stored %d bytes", len(got))
		}
		for _, s := range e.fake.Seen() {
			if s.Code != "" {
				t.Errorf("upstream rejected %s %s: %s %s", s.Method, s.Path, s.Code, s.Detail)
			}
		}
		recs := e.records(t)
		if len(recs) != 7 {
			t.Errorf("%d records; want 7: %+v", len(recs), recs)
		}
		for _, r := range recs {
			if r.Verdict != VerdictAllowed || r.Signed != "aws" || r.SignError != "" {
				t.Errorf("record %q; want ALLOWED … [signed: aws]", r.Line())
			}
		}
	})(t)
}

// TestAWSNotSigned: a presigned URL over plain HTTP, a request changed
// after signing and a malformed signature all go on with the surrogate
// signature, which the upstream rejects, and the log says why.
func TestAWSNotSigned(t *testing.T) {
	e := newAWSEnv(t, false)
	ctx := context.Background()
	if err := e.client.Put(ctx, awsBucket, "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	e.records(t)
	url, err := e.client.Presign(ctx, "plain", "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	url = strings.Replace(url, "https://", "http://", 1)
	code, body, err := e.client.Fetch(ctx, url)
	if err != nil || code != 403 || !strings.Contains(string(body), "InvalidAccessKeyId") {
		t.Errorf("presigned GET over http: %d %s %v; want the upstream's 403 for the surrogate key", code, body, err)
	}
	if s := e.lastSeen(t); s.KeyID != e.env["AWS_ACCESS_KEY_ID"] {
		t.Errorf("over plain http the upstream saw key %s; want the surrogate", s.KeyID)
	}
	recs := e.records(t)
	if len(recs) != 1 || recs[0].SignError != "plain http" || recs[0].Status != 403 {
		t.Errorf("records %+v; want one ALLOWED … 403 [not signed: aws: plain http]", recs)
	}

	req, _ := http.NewRequest("GET", "https://"+awsBucket+".s3.us-east-1.amazonaws.com/k", nil)
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+e.env["AWS_ACCESS_KEY_ID"]+"/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=zz")
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	resp, err := e.client.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	recs = e.records(t)
	if resp.StatusCode != 403 || len(recs) != 1 || !strings.Contains(recs[0].SignError, "signature: want 64 lower-case hex") {
		t.Errorf("malformed: %d %+v", resp.StatusCode, recs)
	}
	for _, s := range e.fake.Seen() {
		if s.KeyID == awsRealKeyID && s.Code != "" {
			t.Errorf("a request with the real key was rejected: %+v", s)
		}
	}
}

// TestAWSConcurrent: many requests re-signed at once (run with -race).
func TestAWSConcurrent(t *testing.T) {
	e := newAWSEnv(t, true)
	ctx := context.Background()
	errs := make(chan error, 16)
	for i := range cap(errs) {
		go func() {
			key := "k" + itoa(i)
			body := bytes.Repeat([]byte(key), 1000)
			err := e.client.Put(ctx, awsBucket, key, body)
			if err == nil {
				var got []byte
				got, err = e.client.Get(ctx, awsBucket, key)
				if err == nil && !bytes.Equal(got, body) {
					err = io.ErrUnexpectedEOF
				}
			}
			if err == nil {
				var code int
				code, _, err = e.client.PutSignedChunks(ctx, awsBucket+".s3.us-east-1.amazonaws.com", "/c"+key, body, 8<<10)
				if err == nil && code != 200 {
					err = fmt.Errorf("chunked PUT: %d", code)
				}
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, s := range e.fake.Seen() {
		if s.Code != "" {
			t.Errorf("upstream rejected %s %s: %s", s.Method, s.Path, s.Code)
		}
	}
}

// TestAWSUpstreamDropsUpload: an upstream that closes the connection in
// the middle of an aws-chunked upload gives the agent an error, not a
// hang, and the proxy goes on serving.
func TestAWSUpstreamDropsUpload(t *testing.T) {
	e := newAWSEnv(t, false)
	code, _, err := e.client.PutSignedChunks(context.Background(), awsDropHost, "/k", bytes.Repeat([]byte("x"), 1<<20), 64<<10)
	if err == nil && code < 500 {
		t.Errorf("dropped upload answered %d; want an error", code)
	}
	if err := e.client.Put(context.Background(), awsBucket, "after", []byte("x")); err != nil {
		t.Errorf("request after the drop: %v", err)
	}
}
