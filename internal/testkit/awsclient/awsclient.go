// Package awsclient is what the tests do as an AWS user would, with the
// AWS SDK for Go v2: S3 PutObject (with the SDK's default checksums) and
// GetObject, a presigned GET, STS GetCallerIdentity, and an aws-chunked
// upload signed chunk by chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-
// TRAILER, which the SDK's S3 client does not send by itself) built from
// the SDK's own signer and stream signer, and a SigV4A GET signed from
// the specification (the SDK keeps its SigV4A signer internal). The proxy tests call it
// in-process; tkaws runs it inside the sandbox.
package awsclient

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Client is an S3 and STS client of one region.
type Client struct {
	HTTP   *http.Client
	Creds  aws.Credentials
	Region string
	S3     *s3.Client
	STS    *sts.Client
}

// New makes the SDK's clients as an application would, with their
// default endpoints (the proxy's pins send them to the test upstreams).
func New(hc *http.Client, creds aws.Credentials, region string) *Client {
	provider := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	return &Client{
		HTTP: hc, Creds: creds, Region: region,
		// The checksum settings are the defaults config.LoadDefaultConfig
		// gives an application (s3.New alone leaves them unset).
		S3: s3.New(s3.Options{Region: region, Credentials: provider, HTTPClient: hc, RetryMaxAttempts: 1,
			RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
			ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported}),
		STS: sts.New(sts.Options{Region: region, Credentials: provider, HTTPClient: hc, RetryMaxAttempts: 1}),
	}
}

// Put is PutObject with the SDK's defaults: over TLS it sends the body
// aws-chunked with a CRC32 checksum trailer, signing
// STREAMING-UNSIGNED-PAYLOAD-TRAILER.
func (c *Client) Put(ctx context.Context, bucket, key string, data []byte) error {
	_, err := c.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)})
	return err
}

// PutStream is Put of a body the SDK cannot seek (and so cannot read
// twice): it is streamed, never held.
func (c *Client) PutStream(ctx context.Context, bucket, key string, body io.Reader, size int64) error {
	_, err := c.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: struct{ io.Reader }{body}, ContentLength: &size})
	return err
}

// Get is GetObject.
func (c *Client) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	out, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// Presign returns a presigned GET URL.
func (c *Client) Presign(ctx context.Context, bucket, key string, expires time.Duration) (string, error) {
	req, err := s3.NewPresignClient(c.S3).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key},
		s3.WithPresignExpires(expires))
	if err != nil {
		return "", err
	}
	return req.URL, nil
}

// WhoAmI is STS GetCallerIdentity.
func (c *Client) WhoAmI(ctx context.Context) (account, arn string, err error) {
	out, err := c.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", "", err
	}
	return aws.ToString(out.Account), aws.ToString(out.Arn), nil
}

// Fetch GETs a URL with a plain client and returns status and body.
func (c *Client) Fetch(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	return c.do(req)
}

// do sends req and returns its status and body.
func (c *Client) do(req *http.Request) (int, []byte, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// PutSignedChunks uploads data as a signed aws-chunked body of chunk-byte
// chunks with a trailing CRC32 checksum, as the Java SDK and the CRT send
// over plain connections: the seed signature from the SDK's signer, each
// chunk's from its stream signer, the trailer's from the documented
// formula. The body is generated as it is sent.
func (c *Client) PutSignedChunks(ctx context.Context, host, path string, data []byte, chunk int) (int, string, error) {
	const payload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	const trailerName = "x-amz-checksum-crc32"
	n := (len(data) + chunk - 1) / chunk
	sumLen := len(base64.StdEncoding.EncodeToString(make([]byte, 4)))
	length := 0
	for i := range n {
		size := min(chunk, len(data)-i*chunk)
		length += len(strconv.FormatInt(int64(size), 16)) + len(";chunk-signature=") + 64 + 2 + size + 2
	}
	length += len("0;chunk-signature=") + 64 + 2 + len(trailerName) + 1 + sumLen + 2 + len("x-amz-trailer-signature:") + 64 + 2 + 2

	now := time.Now().UTC()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "https://"+host+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
	req.Header.Set("X-Amz-Content-Sha256", payload)
	req.Header.Set("X-Amz-Trailer", trailerName)
	req.ContentLength = int64(length)
	if err := v4.NewSigner().SignHTTP(ctx, c.Creds, req, payload, "s3", c.Region, now, func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = true
	}); err != nil {
		return 0, "", err
	}
	seed, _ := hex.DecodeString(req.Header.Get("Authorization")[strings.LastIndex(req.Header.Get("Authorization"), "=")+1:])
	ss := v4.NewStreamSigner(c.Creds, "s3", c.Region, seed)
	pr, pw := io.Pipe()
	go func() {
		var prev []byte
		crc := crc32.NewIEEE()
		sign := func(b []byte) string {
			sig, _ := ss.GetSignature(ctx, nil, b, now)
			prev = sig
			return hex.EncodeToString(sig)
		}
		for i := range n {
			b := data[i*chunk : min(len(data), (i+1)*chunk)]
			crc.Write(b)
			if _, err := fmt.Fprintf(pw, "%x;chunk-signature=%s\r\n%s\r\n", len(b), sign(b), b); err != nil {
				return
			}
		}
		sum := base64.StdEncoding.EncodeToString(crc.Sum(nil))
		fmt.Fprintf(pw, "0;chunk-signature=%s\r\n", sign(nil))
		trailer := trailerName + ":" + sum
		scope := now.Format("20060102") + "/" + c.Region + "/s3/aws4_request"
		canon := sha256.Sum256([]byte(trailer + "\n"))
		sts := "AWS4-HMAC-SHA256-TRAILER\n" + now.Format("20060102T150405Z") + "\n" + scope + "\n" + hex.EncodeToString(prev) + "\n" + hex.EncodeToString(canon[:])
		fmt.Fprintf(pw, "%s\r\nx-amz-trailer-signature:%s\r\n\r\n", trailer, hex.EncodeToString(hmacChain(c.Creds.SecretAccessKey, now, c.Region, sts)))
		pw.Close()
	}()
	req.Body = pr
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// hmacChain signs sts with the S3 signing key of one day.
func hmacChain(secret string, t time.Time, region, sts string) []byte {
	mac := func(k []byte, s string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(s)); return h.Sum(nil) }
	k := mac([]byte("AWS4"+secret), t.Format("20060102"))
	for _, p := range []string{region, "s3", "aws4_request", sts} {
		k = mac(k, p)
	}
	return k
}

// GetV4A GETs an S3 object with a SigV4A signature (as for a multi-region
// access point), which the SDK's S3 client signs only through its
// internal v4a package: the key derived from the secret (HMAC-SHA256
// counter-mode KDF, as AWS specifies), the canonical request of the
// signed headers, ECDSA P-256 over its string to sign.
func (c *Client) GetV4A(ctx context.Context, host, path string) (int, []byte, error) {
	now := time.Now().UTC()
	amzDate := now.Format("20060102T150405Z")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+path, nil)
	if err != nil {
		return 0, nil, err
	}
	const empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	hdr := map[string]string{"host": host, "x-amz-content-sha256": empty, "x-amz-date": amzDate, "x-amz-region-set": "*"}
	if c.Creds.SessionToken != "" {
		hdr["x-amz-security-token"] = c.Creds.SessionToken
	}
	var names []string
	for k := range hdr {
		names = append(names, k)
		if k != "host" {
			req.Header.Set(k, hdr[k])
		}
	}
	slices.Sort(names)
	var canon strings.Builder
	canon.WriteString("GET\n" + path + "\n\n")
	for _, n := range names {
		canon.WriteString(n + ":" + hdr[n] + "\n")
	}
	canon.WriteString("\n" + strings.Join(names, ";") + "\n" + empty)
	scope := now.Format("20060102") + "/s3/aws4_request"
	ch := sha256.Sum256([]byte(canon.String()))
	sts := "AWS4-ECDSA-P256-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(ch[:])
	key, err := v4aKey(c.Creds.AccessKeyID, c.Creds.SecretAccessKey)
	if err != nil {
		return 0, nil, err
	}
	digest := sha256.Sum256([]byte(sts))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-ECDSA-P256-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%x",
		c.Creds.AccessKeyID, scope, strings.Join(names, ";"), sig))
	return c.do(req)
}

// v4aKey derives the SigV4A private key of an access key pair.
func v4aKey(keyID, secret string) (*ecdsa.PrivateKey, error) {
	limit := new(big.Int).Sub(elliptic.P256().Params().N, big.NewInt(2))
	for counter := 1; counter < 255; counter++ {
		m := hmac.New(sha256.New, []byte("AWS4A"+secret))
		m.Write([]byte{0, 0, 0, 1})
		m.Write([]byte("AWS4-ECDSA-P256-SHA256\x00" + keyID))
		m.Write([]byte{byte(counter), 0, 0, 1, 0})
		c := new(big.Int).SetBytes(m.Sum(nil))
		if c.Cmp(limit) <= 0 {
			return ecdsa.ParseRawPrivateKey(elliptic.P256(), c.Add(c, big.NewInt(1)).FillBytes(make([]byte, 32)))
		}
	}
	return nil, fmt.Errorf("no SigV4A key")
}
