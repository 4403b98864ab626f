package awsfake

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	keyID  = "AKIAIOSFODNN7EXAMPLE"
	secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	token  = "FwoGZXIvYXdzEBYaDTOKEN+value/x=="
)

func do(t *testing.T, s *Server, r *http.Request) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	if r.RequestURI == "" {
		r.RequestURI = r.URL.RequestURI()
	}
	s.ServeHTTP(rec, r)
	return rec.Code, rec.Body.String()
}

func sign(t *testing.T, r *http.Request, creds aws.Credentials, payload, service string) {
	t.Helper()
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, payload, service, "us-east-1", time.Now(), func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = service == "s3"
	}); err != nil {
		t.Fatal(err)
	}
}

// TestVerifies: the fake accepts what the SDK signs with the real keys,
// and rejects a wrong secret, a wrong key id, a missing token, a body that
// is not what was hashed.
func TestVerifies(t *testing.T) {
	good := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: token}
	for _, tc := range []struct {
		name  string
		creds aws.Credentials
		mod   func(*http.Request)
		code  string
	}{
		{"real keys", good, nil, ""},
		{"wrong secret", aws.Credentials{AccessKeyID: keyID, SecretAccessKey: "x" + secret[1:], SessionToken: token}, nil, "SignatureDoesNotMatch"},
		{"surrogate key id", aws.Credentials{AccessKeyID: "AKIASURROGATESURROGA", SecretAccessKey: secret, SessionToken: token}, nil, "InvalidAccessKeyId"},
		{"no token", aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}, nil, "InvalidToken"},
		{"body changed", good, func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader("other")) }, "XAmzContentSHA256Mismatch"},
		{"signed header changed", good, func(r *http.Request) { r.Header.Set("X-Amz-Meta-A", "2") }, "SignatureDoesNotMatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(keyID, secret, token)
			body := "hello"
			r := httptest.NewRequest("PUT", "https://b.s3.us-east-1.amazonaws.com/a%20key%20%C3%A4", strings.NewReader(body))
			r.Header.Set("X-Amz-Content-Sha256", sha256Hex([]byte(body)))
			r.Header.Set("X-Amz-Meta-A", "1")
			sign(t, r, tc.creds, sha256Hex([]byte(body)), "s3")
			if tc.mod != nil {
				tc.mod(r)
			}
			do(t, s, r)
			if got := s.Seen()[0].Code; got != tc.code {
				t.Fatalf("code %q (%s); want %q", got, s.Seen()[0].Detail, tc.code)
			}
			if tc.code == "" {
				if obj, _ := s.Object("b", "a key ä"); string(obj) != body {
					t.Errorf("stored %q", obj)
				}
			}
		})
	}
	t.Run("sts", func(t *testing.T) {
		s := New(keyID, secret, token)
		body := "Action=GetCallerIdentity&Version=2011-06-15"
		r := httptest.NewRequest("POST", "https://sts.amazonaws.com/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		sign(t, r, good, sha256Hex([]byte(body)), "sts")
		if code, out := do(t, s, r); code != 200 || !strings.Contains(out, Account) {
			t.Fatalf("%d %s", code, out)
		}
	})
	t.Run("presigned", func(t *testing.T) {
		s := New(keyID, secret, token)
		s.objects["b/k"] = []byte("x")
		r := httptest.NewRequest("GET", "https://b.s3.us-east-1.amazonaws.com/k?X-Amz-Expires=60", nil)
		u, _, err := v4.NewSigner().PresignHTTP(context.Background(), good, r, "UNSIGNED-PAYLOAD", "s3", "us-east-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if code, out := do(t, s, httptest.NewRequest("GET", u, nil)); code != 200 || out != "x" {
			t.Fatalf("%d %s", code, out)
		}
		if code, _ := do(t, s, httptest.NewRequest("GET", strings.Replace(u, "X-Amz-Expires=60", "X-Amz-Expires=61", 1), nil)); code != 403 {
			t.Errorf("changed expiry accepted: %d", code)
		}
	})
}

// TestChunked: the S3 documentation's aws-chunked example (signatures from
// the SDK's stream signer), and a tampered chunk.
func TestChunked(t *testing.T) {
	docTime := time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}
	chunks := [][]byte{bytes.Repeat([]byte("a"), 65536), bytes.Repeat([]byte("a"), 1024), nil}
	r := httptest.NewRequest("PUT", "https://s3.amazonaws.com/examplebucket/chunkObject.txt", nil)
	r.Header.Set("X-Amz-Storage-Class", "REDUCED_REDUNDANCY")
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Decoded-Content-Length", "66560")
	r.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
	r.ContentLength = 66824
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "s3", "us-east-1", docTime,
		func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(r.Header.Get("Authorization"), "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9") {
		t.Fatalf("seed %s", r.Header.Get("Authorization"))
	}
	seed, _ := hex.DecodeString("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
	ss := v4.NewStreamSigner(creds, "s3", "us-east-1", seed)
	var body bytes.Buffer
	for _, c := range chunks {
		sig, _ := ss.GetSignature(context.Background(), nil, c, docTime)
		fmt.Fprintf(&body, "%x;chunk-signature=%x\r\n", len(c), sig)
		if len(c) > 0 {
			body.Write(c)
			body.WriteString("\r\n")
		}
	}
	body.WriteString("\r\n")
	for _, tamper := range []bool{false, true} {
		s := New(keyID, secret, "")
		s.now = func() time.Time { return docTime }
		b := bytes.Clone(body.Bytes())
		if tamper {
			b[1000] = 'b'
		}
		rr := r.Clone(context.Background())
		rr.Body = io.NopCloser(bytes.NewReader(b))
		do(t, s, rr)
		seen := s.Seen()[0]
		if want := map[bool]string{true: "SignatureDoesNotMatch"}[tamper]; seen.Code != want || !tamper && seen.Chunks != 3 {
			t.Errorf("tamper=%v: %+v", tamper, seen)
		}
	}
}
