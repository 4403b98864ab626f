package proxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/airut/airut/internal/secrets"
)

// The cost of AWS re-signing, measured beside the plain masked-secret
// path in one run, interleaved: the same upstream (it reads and discards
// the body), reached directly, through the proxy with a masked bearer
// token, and through the proxy with a request signed with the surrogate
// AWS key, which the proxy verifies and signs again. Requests are signed
// once, before the clock starts, so only the proxy's work is measured.

const awsBenchHost = "x.wild.example"

type awsBench struct {
	e   *env
	aws aws.Credentials // the surrogates
}

type uploadSide struct {
	name   string
	client *http.Client
	host   string
	header http.Header
	body   []byte
	length int64
}

func newAWSBench(b *testing.B) *awsBench {
	var m *secrets.Map
	e := newEnv(b, func(c *Config) {
		var err error
		m, err = secrets.NewMapFrom(secrets.Pools{
			Masked: map[string]secrets.Masked{"GH_TOKEN": {Value: realToken, Scopes: []string{"api.example.com"}, Headers: []string{"Authorization"}}},
			AWS:    map[string]secrets.AWS{"AWS": {AccessKeyID: "AKIAREALREALREALREAL", SecretAccessKey: "RealSecretKey/realSecretKey+realSecretK0", Scopes: []string{awsBenchHost}}},
		})
		if err != nil {
			b.Fatal(err)
		}
		c.Replacements = m.Replacements()
	})
	env := m.Env()
	token, _ := m.Surrogate("GH_TOKEN")
	e.token = token
	return &awsBench{e: e, aws: aws.Credentials{AccessKeyID: env["AWS_ACCESS_KEY_ID"], SecretAccessKey: env["AWS_SECRET_ACCESS_KEY"]}}
}

// signedHeader signs a PUT of body with the surrogate key: UNSIGNED-PAYLOAD
// or, with chunk > 0, a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body.
func (ab *awsBench) signed(b *testing.B, data []byte, chunk int) (http.Header, []byte) {
	payload := "UNSIGNED-PAYLOAD"
	body := data
	if chunk > 0 {
		payload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	}
	now := time.Now()
	req, _ := http.NewRequest("PUT", "https://"+awsBenchHost+"/bucket/key", nil)
	req.Header.Set("X-Amz-Content-Sha256", payload)
	if chunk > 0 {
		req.Header.Set("Content-Encoding", "aws-chunked")
		req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
		n := 0
		for i := 0; i < len(data); i += chunk {
			n += len(fmt.Sprintf("%x", min(chunk, len(data)-i))) + 17 + 64 + 2 + min(chunk, len(data)-i) + 2
		}
		req.ContentLength = int64(n + 1 + 17 + 64 + 2 + 2)
	} else {
		req.ContentLength = int64(len(data))
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), ab.aws, req, payload, "s3", "us-east-1", now,
		func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
		b.Fatal(err)
	}
	if chunk > 0 {
		auth := req.Header.Get("Authorization")
		seed, _ := hex.DecodeString(auth[len(auth)-64:])
		ss := v4.NewStreamSigner(ab.aws, "s3", "us-east-1", seed)
		var buf bytes.Buffer
		for i := 0; ; i += chunk {
			c := data[min(i, len(data)):min(i+chunk, len(data))]
			sig, _ := ss.GetSignature(context.Background(), nil, c, now)
			fmt.Fprintf(&buf, "%x;chunk-signature=%x\r\n", len(c), sig)
			if len(c) == 0 {
				buf.WriteString("\r\n")
				break
			}
			buf.Write(c)
			buf.WriteString("\r\n")
		}
		body = buf.Bytes()
		if int64(len(body)) != req.ContentLength {
			b.Fatalf("chunked body %d bytes, signed length %d", len(body), req.ContentLength)
		}
	}
	return req.Header, body
}

func (s uploadSide) put(b *testing.B) time.Duration {
	req, _ := http.NewRequest("PUT", "https://"+s.host+"/bucket/key", bytes.NewReader(s.body))
	for k, v := range s.header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(out) != "ok" {
		b.Fatalf("%s: %d %q", s.name, resp.StatusCode, out)
	}
	return time.Since(start)
}

func (ab *awsBench) uploadSides(b *testing.B, data []byte) []uploadSide {
	proxied := ab.e.px.client(false)
	unsignedH, _ := ab.signed(b, data, 0)
	chunkedH, chunked := ab.signed(b, data, 64<<10)
	return []uploadSide{
		{"direct", ab.e.direct(), "api.example.com", nil, data, 0},
		{"proxy-masked", proxied, "api.example.com", http.Header{"Authorization": {"Bearer " + ab.e.token}}, data, 0},
		{"proxy-aws-unsigned-payload", proxied, awsBenchHost, unsignedH, data, 0},
		{"proxy-aws-chunked", proxied, awsBenchHost, chunkedH, chunked, 0},
	}
}

// checkSigned fails the benchmark unless every request to the AWS host
// was re-signed: a benchmark of requests the proxy gave up on would
// measure nothing.
func (ab *awsBench) checkSigned(b *testing.B) {
	for _, l := range ab.e.px.log.take() {
		r, err := ParseRecord(l)
		if err != nil || r.SignError != "" || (r.URL == "https://"+awsBenchHost+"/bucket/key" && r.Signed != "aws") {
			b.Fatalf("not re-signed: %s", l)
		}
	}
}

// BenchmarkAWSUpload64MiB uploads 64 MiB on each side per iteration and
// reports MB/s per side and the AWS sides against the masked one.
func BenchmarkAWSUpload64MiB(b *testing.B) {
	ab := newAWSBench(b)
	data := bytes.Repeat(bigBlock, size64MiB/len(bigBlock)+1)[:size64MiB]
	sides := ab.uploadSides(b, data)
	total := make([]time.Duration, len(sides))
	for b.Loop() {
		for i, s := range sides {
			total[i] += s.put(b)
		}
		ab.checkSigned(b)
	}
	b.StopTimer()
	mbps := func(i int) float64 { return float64(b.N) * size64MiB / 1e6 / total[i].Seconds() }
	for i, s := range sides {
		b.ReportMetric(mbps(i), "MB/s-"+s.name)
	}
	b.ReportMetric(mbps(2)/mbps(1), "aws-unsigned/masked")
	b.ReportMetric(mbps(3)/mbps(1), "aws-chunked/masked")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAWSSmallRequest makes 200 small signed PUTs per side per
// iteration, interleaved, and reports latency percentiles: the per-request
// cost of verifying and re-signing against swapping a masked token.
func BenchmarkAWSSmallRequest(b *testing.B) {
	ab := newAWSBench(b)
	sides := ab.uploadSides(b, []byte("small object"))
	const perIter = 200
	lat := make([][]time.Duration, len(sides))
	for b.Loop() {
		for range perIter {
			for i, s := range sides {
				lat[i] = append(lat[i], s.put(b))
			}
		}
		ab.checkSigned(b)
	}
	b.StopTimer()
	var names []string
	for _, s := range sides {
		names = append(names, s.name)
	}
	reportPercentiles(b, names, lat)
}
