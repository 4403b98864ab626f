package secrets

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The injectors alone, without the network: verifying and re-signing one
// small request, beside the masked injector swapping one bearer token.
func BenchmarkInjectSmall(b *testing.B) {
	inj, e := testAWS(b, true)
	signed := outgoing("GET", "bucket.s3.us-east-1.amazonaws.com", "/dir/key.txt?versionId=3", nil, map[string]string{hdrContentSHA256: emptySHA256})
	sdkSign(b, signed, surrogateCreds(e), emptySHA256, "s3", "us-east-1")
	masked := &maskedInjector{entries: []entry{{name: "GH", real: NewValue("ghp_" + realSecret[:36]), surrogate: "ghp_" + e.secret.surrogate[:36],
		scopes: []string{"api.github.com"}, headers: []string{"Authorization"}}}}
	for _, side := range []struct {
		name string
		inj  Injector
		req  func() *http.Request
	}{
		{"masked", masked, func() *http.Request {
			return outgoing("GET", "api.github.com", "/repos/a/b", nil, map[string]string{"Authorization": "Bearer " + masked.entries[0].surrogate})
		}},
		{"aws-sigv4", inj, func() *http.Request { return cloneReq(signed, nil) }},
	} {
		b.Run(side.name, func(b *testing.B) {
			for b.Loop() {
				r := side.req()
				if res, err := side.inj.Inject(r); err != nil || res.SignError != "" || res.Masked+len(res.Injected) == 0 {
					b.Fatalf("%+v %v", res, err)
				}
			}
		})
	}
}

// BenchmarkChunkResigner re-signs a 64 MiB aws-chunked body of 64 KiB
// chunks: per chunk one SHA-256 of the data, the agent's signature
// checked, the real one made.
func BenchmarkChunkResigner(b *testing.B) {
	const size, chunk = 64 << 20, 64 << 10
	creds := aws.Credentials{AccessKeyID: docKeyID, SecretAccessKey: docSecret}
	seed, _ := hex.DecodeString(docSeed)
	ss := v4.NewStreamSigner(creds, "s3", "us-east-1", seed)
	data := bytes.Repeat([]byte("0123456789abcdef"), chunk/16)
	var body bytes.Buffer
	for i := 0; i <= size/chunk; i++ {
		c := data
		if i == size/chunk {
			c = nil
		}
		sig, _ := ss.GetSignature(context.Background(), nil, c, docTime)
		fmt.Fprintf(&body, "%x;chunk-signature=%x\r\n", len(c), sig)
		if c != nil {
			body.Write(c)
			body.WriteString("\r\n")
		}
	}
	body.WriteString("\r\n")
	sc := scope{date: "20130524", region: "us-east-1", service: "s3"}
	mk := func(secret string) chain {
		return chain{alg: algV4, amzDate: "20130524T000000Z", scope: sc, prev: docSeed, hmacKey: signingKey(secret, sc)}
	}
	b.SetBytes(size)
	for b.Loop() {
		c := newChunkResigner(io.NopCloser(bytes.NewReader(body.Bytes())), 1<<20, false, mk(docSecret), mk(realSecret))
		if n, err := io.Copy(io.Discard, c); err != nil || n != int64(body.Len()) {
			b.Fatalf("%d %v", n, err)
		}
	}
}
