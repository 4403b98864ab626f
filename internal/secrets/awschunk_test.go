package secrets

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The S3 documentation's aws-chunked example (sigv4-streaming), with the
// signatures aws-chunked signing must give for it (aws-c-auth's
// test_chunked_signing.c checks the same values).
const (
	docKeyID   = "AKIAIOSFODNN7EXAMPLE"
	docSecret  = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	docSeed    = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
	docTrailer = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"
)

var docChunkSigs = []string{
	"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
	"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
	"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
}

var docTime = time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)

// docInjector has the documentation's keys as its surrogates: the
// documented request is what an agent holding them sends.
func docInjector(t testing.TB, maxBody int64) (*awsInjector, *awsEntry) {
	t.Helper()
	e := awsEntry{name: "AWS",
		keyID:  awsPart{real: NewValue(realKeyID), surrogate: docKeyID},
		secret: awsPart{real: NewValue(realSecret), surrogate: docSecret},
		scopes: []string{"s3.amazonaws.com"}}
	inj := newAWSInjector([]awsEntry{e}, Env{MaxBody: maxBody})
	return inj, &inj.entries[0]
}

func docChunks() [][]byte {
	return [][]byte{bytes.Repeat([]byte("a"), 65536), bytes.Repeat([]byte("a"), 1024), nil}
}

var docTrailers = "first:1st\r\nsecond:2nd\r\nthird:3rd\r\n"

func chunkedBody(chunks [][]byte, sigs []string, trailerSig string) []byte {
	var b bytes.Buffer
	for i, c := range chunks {
		fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n", len(c), sigs[i])
		if len(c) > 0 {
			b.Write(c)
			b.WriteString("\r\n")
		}
	}
	if trailerSig != "" {
		b.WriteString(docTrailers + "x-amz-trailer-signature:" + trailerSig + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func docRequest(body []byte, payload string) *http.Request {
	r := outgoing("PUT", "s3.amazonaws.com", "/examplebucket/chunkObject.txt", body, map[string]string{
		"X-Amz-Storage-Class":          "REDUCED_REDUNDANCY",
		"Content-Encoding":             "aws-chunked",
		"X-Amz-Decoded-Content-Length": "66560",
		hdrContentSHA256:               payload,
		hdrDate:                        docTime.Format(amzDateLayout),
	})
	return r
}

const docSigned = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class"

var chunkSigRE = regexp.MustCompile(`chunk-signature=([0-9a-f]{64})`)

func TestAWSChunkedDocExample(t *testing.T) {
	for _, trailer := range []bool{false, true} {
		t.Run(fmt.Sprintf("trailer=%v", trailer), func(t *testing.T) {
			payload := "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
			trailerSig := ""
			if trailer {
				payload += "-TRAILER"
				trailerSig = docTrailer
			}
			body := chunkedBody(docChunks(), docChunkSigs, trailerSig)
			r := docRequest(body, payload)
			seed := docSeed
			if trailer {
				// The documented seed is of the non-trailer request; sign
				// this one with the documented keys as the agent would.
				sdkSignAt(t, r, aws.Credentials{AccessKeyID: docKeyID, SecretAccessKey: docSecret}, payload, docTime)
				seed = strings.SplitN(r.Header.Get("Authorization"), "Signature=", 2)[1]
				// The chunk chain starts from the seed: compute the agent's
				// chunk signatures over again from it.
				sigs := streamSigs(t, aws.Credentials{AccessKeyID: docKeyID, SecretAccessKey: docSecret}, seed, docChunks())
				tsig := trailerSigOf(docSecret, sigs[len(sigs)-1])
				body = chunkedBody(docChunks(), sigs, tsig)
				r.Body = io.NopCloser(bytes.NewReader(body))
			} else {
				r.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/20130524/us-east-1/s3/aws4_request, SignedHeaders=%s, Signature=%s",
					algV4, docKeyID, docSigned, docSeed))
			}
			inj, _ := docInjector(t, 1<<20)
			want := cloneReq(r, nil)
			want.Header.Del("Authorization")
			sdkSignAt(t, want, aws.Credentials{AccessKeyID: realKeyID, SecretAccessKey: realSecret}, payload, docTime)

			res := inject(t, inj, r)
			if res.SignError != "" {
				t.Fatal(res.SignError)
			}
			if got, want := r.Header.Get("Authorization"), want.Header.Get("Authorization"); got != want {
				t.Fatalf("seed %s\nwant (SDK) %s", got, want)
			}
			out, err := io.ReadAll(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(body) {
				t.Errorf("re-signed body is %d bytes; want %d (the length is signed)", len(out), len(body))
			}
			realSeed := strings.SplitN(r.Header.Get("Authorization"), "Signature=", 2)[1]
			wantSigs := streamSigs(t, aws.Credentials{AccessKeyID: realKeyID, SecretAccessKey: realSecret}, realSeed, docChunks())
			var got []string
			for _, m := range chunkSigRE.FindAllSubmatch(out, -1) {
				got = append(got, string(m[1]))
			}
			if strings.Join(got, ",") != strings.Join(wantSigs, ",") {
				t.Errorf("chunk signatures %v\nwant (SDK stream signer) %v", got, wantSigs)
			}
			wantBody := chunkedBody(docChunks(), wantSigs, map[bool]string{true: trailerSigOf(realSecret, wantSigs[2])}[trailer])
			if !bytes.Equal(out, wantBody) {
				t.Errorf("re-signed body differs from the expected one")
			}
		})
	}
}

// TestAWSChunkVectors checks the chain itself against the documented
// signatures.
func TestAWSChunkVectors(t *testing.T) {
	sc := scope{date: "20130524", region: "us-east-1", service: "s3"}
	c := chain{alg: algV4, amzDate: "20130524T000000Z", scope: sc, prev: docSeed, hmacKey: signingKey(docSecret, sc)}
	for i, data := range docChunks() {
		sig, err := c.sign(chunkStringToSign(algV4, c.amzDate, sc, c.prev, hashHex(data)), 64, false)
		if err != nil || sig != docChunkSigs[i] {
			t.Fatalf("chunk %d signature %s; want %s", i, sig, docChunkSigs[i])
		}
	}
	canon := canonicalTrailers([]string{"first:1st", "second:2nd", "third:3rd"})
	if h := hashHex([]byte(canon)); h != "83d8f190334fb741bc8daf73c891689d320bd8017756bc730c540021ed48001f" {
		t.Errorf("canonical trailers hash %s", h)
	}
	if sig, _ := c.sign(trailerStringToSign(algV4, c.amzDate, sc, c.prev, canon), 64, false); sig != docTrailer {
		t.Errorf("trailer signature %s; want %s", sig, docTrailer)
	}
}

func TestAWSChunkedFailures(t *testing.T) {
	good := chunkedBody(docChunks(), docChunkSigs, "")
	tamper := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, tc := range map[string]struct {
		body    []byte
		maxBody int64
		want    string
	}{
		"chunk data changed": {tamper(func(b []byte) []byte { b[200] = 'b'; return b }), 1 << 20, "does not verify"},
		"chunk signature changed": {tamper(func(b []byte) []byte {
			return bytes.Replace(b, []byte(docChunkSigs[1]), []byte(docChunkSigs[0]), 1)
		}), 1 << 20, "does not verify"},
		"chunk over the cap":   {good, 1024, "over the limit"},
		"data after the end":   {append(bytes.Clone(good), 'x'), 1 << 20, "data after the last chunk"},
		"cut short":            {good[:60000], 1 << 20, "unexpected EOF"},
		"bad size":             {append([]byte("zz;chunk-signature="+docChunkSigs[0]+"\r\n"), good...), 1 << 20, "bad size"},
		"no signature":         {append([]byte("10\r\n"), good...), 1 << 20, "want <hex size>"},
		"very long chunk line": {append([]byte("1"+strings.Repeat("0", 1000)+"\r\n"), good...), 1 << 20, "line too long"},
	} {
		t.Run(name, func(t *testing.T) {
			r := docRequest(tc.body, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
			r.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/20130524/us-east-1/s3/aws4_request, SignedHeaders=%s, Signature=%s",
				algV4, docKeyID, docSigned, docSeed))
			r.Header.Set("Content-Length", "66824") // as the agent signed it
			inj, _ := docInjector(t, tc.maxBody)
			if res := inject(t, inj, r); res.SignError != "" {
				t.Fatal(res.SignError)
			}
			out, err := io.ReadAll(r.Body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("read error %v; want %q", err, tc.want)
			}
			if bytes.Contains(out, []byte(docChunkSigs[2])) {
				t.Error("the agent's signature went upstream")
			}
		})
	}
}

func sdkSignAt(t testing.TB, r *http.Request, creds aws.Credentials, payload string, at time.Time) {
	t.Helper()
	r.ContentLength, _ = strconv.ParseInt(r.Header.Get("Content-Length"), 10, 64)
	if r.ContentLength == 0 {
		r.ContentLength = 66824
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, payload, "s3", "us-east-1", at, func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = true
	}); err != nil {
		t.Fatal(err)
	}
}

// streamSigs is the SDK's own chunk signature chain from seed.
func streamSigs(t testing.TB, creds aws.Credentials, seed string, chunks [][]byte) []string {
	t.Helper()
	s, _ := hex.DecodeString(seed)
	ss := v4.NewStreamSigner(creds, "s3", "us-east-1", s)
	var out []string
	for _, c := range chunks {
		sig, err := ss.GetSignature(context.Background(), nil, c, docTime)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hex.EncodeToString(sig))
	}
	return out
}

// trailerSigOf signs the documented trailers after prev, from the formula
// (the SDK has no trailer signer).
func trailerSigOf(secret, prev string) string {
	sc := scope{date: "20130524", region: "us-east-1", service: "s3"}
	canon := "first:1st\nsecond:2nd\nthird:3rd\n"
	sts := "AWS4-HMAC-SHA256-TRAILER\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n" + prev + "\n" + hashHex([]byte(canon))
	return hex.EncodeToString(hmacSHA256(signingKey(secret, sc), sts))
}

// TestAWSChunkedV4A: a SigV4A aws-chunked upload with a trailer, chunk
// signatures padded with '*' to a fixed width as the CRT sends them, is
// re-signed with the real key's ECDSA key, keeping every field's width.
func TestAWSChunkedV4A(t *testing.T) {
	inj, e := testAWS(t, false)
	const payload = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"
	amzDate := signTime.Format(amzDateLayout)
	sc := scope{date: signTime.Format("20060102"), service: "s3"}
	surKey, _ := deriveV4AKey(e.keyID.surrogate, e.secret.surrogate)
	realKey, _ := deriveV4AKey(realKeyID, realSecret)

	chunks := docChunks()
	r := outgoing("PUT", "s3.example.test", "/bucket/k", nil, map[string]string{
		hdrContentSHA256: payload, hdrDate: amzDate, hdrRegionSet: "us-east-1,us-west-2", "Content-Encoding": "aws-chunked"})
	signed := []string{"content-encoding", "host", "x-amz-content-sha256", "x-amz-date", "x-amz-region-set"}
	creq, _ := canonicalRequest(r, "/bucket/k", "", signed, payload)
	seed, _ := signV4A(surKey, stringToSign(algV4A, amzDate, sc, creq))
	r.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s", algV4A, e.keyID.surrogate, sc, strings.Join(signed, ";"), seed))
	agent := chain{alg: algV4A, amzDate: amzDate, scope: sc, prev: seed, ecKey: surKey}
	var sigs []string
	for _, c := range chunks {
		s, err := agent.sign(chunkStringToSign(algV4A, amzDate, sc, agent.prev, hashHex(c)), 144, true)
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, s)
	}
	tsig, _ := agent.sign(trailerStringToSign(algV4A, amzDate, sc, agent.prev, canonicalTrailers([]string{"first:1st", "second:2nd", "third:3rd"})), 144, true)
	body := chunkedBody(chunks, sigs, tsig)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))

	if res := inject(t, inj, r); res.SignError != "" {
		t.Fatal(res.SignError)
	}
	out, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(body) {
		t.Fatalf("re-signed body %d bytes; want %d", len(out), len(body))
	}
	got, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	creq, _ = canonicalRequest(r, "/bucket/k", "", signed, payload)
	if !verifyV4A(&realKey.PublicKey, stringToSign(algV4A, amzDate, sc, creq), got.signature) {
		t.Fatal("seed does not verify with the real key")
	}
	real := chain{alg: algV4A, amzDate: amzDate, scope: sc, prev: got.signature, ecKey: realKey}
	re := regexp.MustCompile(`(?:chunk-signature=|x-amz-trailer-signature:)([0-9a-f]+)(\**)\r\n`)
	m := re.FindAllSubmatch(out, -1)
	if len(m) != 4 {
		t.Fatalf("%d signatures in the re-signed body", len(m))
	}
	for i, c := range chunks {
		if len(m[i][1])+len(m[i][2]) != 144 || !real.verify(chunkStringToSign(algV4A, amzDate, sc, real.prev, hashHex(c)), string(m[i][1])) {
			t.Fatalf("chunk %d: %q does not verify with the real key", i, m[i][0])
		}
	}
	if !real.verify(trailerStringToSign(algV4A, amzDate, sc, real.prev, canonicalTrailers([]string{"first:1st", "second:2nd", "third:3rd"})), string(m[3][1])) {
		t.Fatal("trailer signature does not verify with the real key")
	}
}
