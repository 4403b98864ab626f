package secrets

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzParseSigV4 feeds the parser arbitrary Authorization values and query
// strings. It must never panic, and whatever it accepts must be a
// well-formed signature that renders back to itself.
func FuzzParseSigV4(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", "")
	f.Add("AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20150830/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3046022100fddaaf816a31e30d04973875b13bc27b98da10907a3a1872fd5819a221334abc022100de2ee81d83b54f31efc82834de07e6cd4d5c6f25bfa08e0f29a15bb0977c343e", "")
	f.Add("", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d")
	f.Add("AWS4-HMAC-SHA256 Credential=A/B/C/D/aws4_request,SignedHeaders=host,Signature=,", "X-Amz-Algorithm=x&&=&%zz")
	f.Fuzz(func(t *testing.T, auth, query string) {
		r := &http.Request{Method: "GET", Host: "example.amazonaws.com", Header: http.Header{}, URL: &url.URL{Scheme: "https", Opaque: "/", RawQuery: query}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		r.Header.Set(hdrDate, "20150830T123600Z")
		sig, err := findSigV4(r)
		if err != nil || sig == nil {
			return
		}
		switch {
		case sig.alg != algV4 && sig.alg != algV4A:
			t.Fatalf("algorithm %q", sig.alg)
		case !isAWSKeyID(sig.keyID), !slices.IsSorted(sig.signed), !slices.Contains(sig.signed, "host"):
			t.Fatalf("accepted %+v", sig)
		case sig.v4a() != (sig.scope.region == ""):
			t.Fatalf("scope %+v for %s", sig.scope, sig.alg)
		}
		if sig.presigned {
			return
		}
		again, err := parseAuthorization(fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
			sig.alg, sig.keyID, sig.scope, strings.Join(sig.signed, ";"), sig.signature))
		if err != nil {
			t.Fatalf("rendered form does not parse: %v", err)
		}
		again.amzDate = sig.amzDate
		if fmt.Sprint(*again) != fmt.Sprint(*sig) {
			t.Fatalf("round trip %+v != %+v", again, sig)
		}
	})
}

// FuzzChunkResigner feeds the aws-chunked re-signer arbitrary bodies: it
// must never panic, never hold more than one chunk, and never let a chunk
// go upstream unless its agent signature verified.
func FuzzChunkResigner(f *testing.F) {
	f.Add(chunkedBody(docChunks(), docChunkSigs, ""), false)
	f.Add(chunkedBody([][]byte{[]byte("abc"), nil}, []string{docChunkSigs[0], docChunkSigs[1]}, docTrailer), true)
	f.Add([]byte("0;chunk-signature=\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, body []byte, trailer bool) {
		sc := scope{date: "20130524", region: "us-east-1", service: "s3"}
		mk := func(secret, seed string) chain {
			return chain{alg: algV4, amzDate: "20130524T000000Z", scope: sc, prev: seed, hmacKey: signingKey(secret, sc)}
		}
		c := newChunkResigner(io.NopCloser(bytes.NewReader(body)), 1<<16, trailer, mk(docSecret, docSeed), mk(realSecret, docSeed))
		out, err := io.ReadAll(c)
		if cap(c.buf) > 1<<16 {
			t.Fatalf("held %d bytes", cap(c.buf))
		}
		if err == nil && len(out) != len(body) {
			t.Fatalf("re-signed body %d bytes from %d", len(out), len(body))
		}
		if bytes.Contains(body, []byte("chunk-signature=")) && bytes.Equal(out, body) && len(body) > 0 {
			t.Fatal("a body went upstream with the agent's signatures")
		}
	})
}
