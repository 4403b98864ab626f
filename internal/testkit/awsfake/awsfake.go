// Package awsfake is a local stand-in for Amazon S3 and STS that checks
// every request the way AWS does: it recomputes the SigV4 (or SigV4A)
// signature with the real keys, every chunk signature of an aws-chunked
// upload and its trailer signature, the payload hash, the trailing
// checksum and the session token, and rejects a mismatch with AWS's error
// codes. It is written from the AWS signing documentation on its own, so
// that it checks the proxy's re-signing independently of the proxy's
// code.
//
// S3 keeps objects in memory (PutObject, GetObject); STS answers
// GetCallerIdentity.
package awsfake

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Account is the account id the fake answers for.
const Account = "123456789012"

// Seen is one request as the fake judged it.
type Seen struct {
	Method, Host, Path string
	Auth               string // "header", "query", "none"
	Algorithm          string
	KeyID              string
	Payload            string // x-amz-content-sha256 as sent
	Chunks             int    // chunk signatures checked
	Code               string // "" when accepted, else AWS's error code
	Detail             string
}

// Server is the fake. Create it with New and serve it over TLS.
type Server struct {
	keyID, secret, token string
	now                  func() time.Time

	mu      sync.Mutex
	objects map[string][]byte
	seen    []Seen
}

// New returns a fake that accepts only the given real keys.
func New(keyID, secret, token string) *Server {
	return &Server{keyID: keyID, secret: secret, token: token, now: time.Now, objects: map[string][]byte{}}
}

// Seen returns every request so far.
func (s *Server) Seen() []Seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Seen(nil), s.seen...)
}

// Object returns a stored object.
func (s *Server) Object(bucket, key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[bucket+"/"+key]
	return b, ok
}

type awsError struct {
	status int
	code   string
	detail string
}

func (e *awsError) Error() string { return e.code + ": " + e.detail }

func fail(status int, code, format string, args ...any) *awsError {
	return &awsError{status: status, code: code, detail: fmt.Sprintf(format, args...)}
}

func denied(format string, args ...any) *awsError {
	return fail(http.StatusForbidden, "SignatureDoesNotMatch", format, args...)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seen := Seen{Method: r.Method, Host: r.Host, Path: r.URL.Path, Payload: r.Header.Get("X-Amz-Content-Sha256")}
	body, err := s.authenticate(r, &seen)
	if err == nil {
		if strings.HasPrefix(r.Host, "sts.") {
			err = s.sts(w, r, body)
		} else {
			err = s.s3(w, r, body)
		}
	}
	var ae *awsError
	if errors.As(err, &ae) {
		seen.Code, seen.Detail = ae.code, ae.detail
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(ae.status)
		fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s</Message></Error>", ae.code, xmlEscape(ae.detail))
	}
	s.mu.Lock()
	s.seen = append(s.seen, seen)
	s.mu.Unlock()
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	for _, c := range s {
		switch c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// auth is a signature as this server reads it.
type auth struct {
	alg, keyID, date, region, service, amzDate, signature string
	signed                                                []string
	query                                                 bool
}

func (a auth) scope() string {
	if a.alg == "AWS4-ECDSA-P256-SHA256" {
		return a.date + "/" + a.service + "/aws4_request"
	}
	return a.date + "/" + a.region + "/" + a.service + "/aws4_request"
}

// authenticate checks the signature and returns the decoded body.
func (s *Server) authenticate(r *http.Request, seen *Seen) ([]byte, error) {
	a, err := readAuth(r)
	if err != nil {
		seen.Auth = "none"
		return nil, err
	}
	seen.Auth = map[bool]string{true: "query", false: "header"}[a.query]
	seen.Algorithm, seen.KeyID = a.alg, a.keyID
	if a.keyID != s.keyID {
		return nil, fail(http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
	}
	tok := r.Header.Get("X-Amz-Security-Token")
	if a.query {
		tok = r.URL.Query().Get("X-Amz-Security-Token")
	}
	if tok != s.token {
		return nil, fail(http.StatusForbidden, "InvalidToken", "The provided token is malformed or otherwise invalid.")
	}
	t, err := time.Parse("20060102T150405Z", a.amzDate)
	if err != nil || t.Format("20060102") != a.date {
		return nil, fail(http.StatusBadRequest, "AuthorizationQueryParametersError", "bad date %q", a.amzDate)
	}
	if a.query {
		exp, _ := strconv.Atoi(r.URL.Query().Get("X-Amz-Expires"))
		if s.now().After(t.Add(time.Duration(exp) * time.Second)) {
			return nil, fail(http.StatusForbidden, "AccessDenied", "Request has expired")
		}
	} else if d := s.now().Sub(t); d > 15*time.Minute || d < -15*time.Minute {
		return nil, fail(http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
	}

	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fail(http.StatusBadRequest, "IncompleteBody", "%v", err)
	}
	s3 := a.service == "s3"
	payload := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case a.query && s3:
		payload = "UNSIGNED-PAYLOAD"
	case payload == "" && s3:
		return nil, fail(http.StatusBadRequest, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
	case payload == "":
		payload = sha256Hex(raw)
	}
	// The path as received: S3 signs it as sent, every other service
	// encodes it once more.
	path := r.URL.EscapedPath()
	if p, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(p, "/") {
		path = p
	}
	if !s3 {
		path = uriEncode(path, false)
	}
	canonical := strings.Join([]string{r.Method, path, canonicalQueryOf(r.URL.RawQuery, a.query),
		headerBlock(r, a.signed), strings.Join(a.signed, ";"), payload}, "\n")
	sts := a.alg + "\n" + a.amzDate + "\n" + a.scope() + "\n" + sha256Hex([]byte(canonical))
	if !s.check(a, sts, a.signature) {
		return nil, denied("The request signature we calculated does not match the signature you provided.")
	}

	body := raw
	switch {
	case strings.HasPrefix(payload, "STREAMING-AWS4-"):
		if body, err = s.signedChunks(a, raw, strings.HasSuffix(payload, "-TRAILER"), r, seen); err != nil {
			return nil, err
		}
	case payload == "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
		if body, err = unsignedChunks(raw, r); err != nil {
			return nil, err
		}
	case payload != "UNSIGNED-PAYLOAD" && payload != sha256Hex(raw):
		return nil, fail(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	if dl := r.Header.Get("X-Amz-Decoded-Content-Length"); dl != "" && dl != strconv.Itoa(len(body)) {
		return nil, fail(http.StatusBadRequest, "IncompleteBody", "decoded length %d, header says %s", len(body), dl)
	}
	return body, nil
}

func readAuth(r *http.Request) (auth, error) {
	var a auth
	q := r.URL.Query()
	var cred, signed string
	if h := r.Header.Get("Authorization"); h != "" {
		alg, rest, _ := strings.Cut(h, " ")
		a.alg = alg
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			switch k {
			case "Credential":
				cred = v
			case "SignedHeaders":
				signed = v
			case "Signature":
				a.signature = v
			}
		}
		a.amzDate = r.Header.Get("X-Amz-Date")
	} else if q.Get("X-Amz-Algorithm") != "" {
		a.query = true
		a.alg, cred, signed = q.Get("X-Amz-Algorithm"), q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders")
		a.signature, a.amzDate = q.Get("X-Amz-Signature"), q.Get("X-Amz-Date")
	} else {
		return a, fail(http.StatusForbidden, "AccessDenied", "Anonymous access is forbidden")
	}
	parts := strings.Split(cred, "/")
	switch {
	case a.alg == "AWS4-HMAC-SHA256" && len(parts) == 5:
		a.keyID, a.date, a.region, a.service = parts[0], parts[1], parts[2], parts[3]
	case a.alg == "AWS4-ECDSA-P256-SHA256" && len(parts) == 4:
		a.keyID, a.date, a.service = parts[0], parts[1], parts[2]
	default:
		return a, fail(http.StatusBadRequest, "AuthorizationHeaderMalformed", "bad credential %q for %q", cred, a.alg)
	}
	a.signed = strings.Split(signed, ";")
	return a, nil
}

// uriEncode is SigV4's encoding: unreserved characters kept, '/' kept in
// paths, everything else %XX.
func uriEncode(s string, encodeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 || c == '/' && !encodeSlash {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func canonicalQueryOf(raw string, presigned bool) string {
	type kv struct{ k, v string }
	var pairs []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		k, _ = url.QueryUnescape(k)
		v, _ = url.QueryUnescape(v)
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		pairs = append(pairs, kv{uriEncode(k, true), uriEncode(v, true)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var out []string
	for _, p := range pairs {
		out = append(out, p.k+"="+p.v)
	}
	return strings.Join(out, "&")
}

func headerBlock(r *http.Request, signed []string) string {
	var b strings.Builder
	for _, name := range signed {
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			vals = r.Header.Values(name)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		b.WriteString(name + ":" + strings.Join(vals, ",") + "\n")
	}
	return b.String()
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func mac(key []byte, s string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return h.Sum(nil)
}

// check verifies a signature over a string to sign with the real keys.
func (s *Server) check(a auth, sts, sig string) bool {
	if a.alg == "AWS4-ECDSA-P256-SHA256" {
		pub := s.v4aPublic()
		der, err := hex.DecodeString(strings.TrimRight(sig, "*"))
		h := sha256.Sum256([]byte(sts))
		return err == nil && pub != nil && ecdsa.VerifyASN1(pub, h[:], der)
	}
	k := mac([]byte("AWS4"+s.secret), a.date)
	for _, part := range []string{a.region, a.service, "aws4_request"} {
		k = mac(k, part)
	}
	want := hex.EncodeToString(mac(k, sts))
	return hmac.Equal([]byte(want), []byte(sig))
}

// v4aPublic derives the SigV4A public key of the real keys: HMAC-SHA256
// counter-mode KDF over "AWS4A"+secret, candidate+1 as the scalar.
func (s *Server) v4aPublic() *ecdsa.PublicKey {
	n := elliptic.P256().Params().N
	limit := new(big.Int).Sub(n, big.NewInt(2))
	for ctr := byte(1); ctr < 255; ctr++ {
		var in bytes.Buffer
		in.Write([]byte{0, 0, 0, 1})
		in.WriteString("AWS4-ECDSA-P256-SHA256")
		in.WriteByte(0)
		in.WriteString(s.keyID)
		in.WriteByte(ctr)
		in.Write([]byte{0, 0, 1, 0})
		c := new(big.Int).SetBytes(mac([]byte("AWS4A"+s.secret), in.String()))
		if c.Cmp(limit) > 0 {
			continue
		}
		key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), c.Add(c, big.NewInt(1)).FillBytes(make([]byte, 32)))
		if err != nil {
			return nil
		}
		return &key.PublicKey
	}
	return nil
}

// signedChunks decodes an aws-chunked body, checking every chunk
// signature and the trailer's against the seed signature's chain.
func (s *Server) signedChunks(a auth, raw []byte, trailer bool, r *http.Request, seen *Seen) ([]byte, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	prev := a.signature
	var data bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasSuffix(line, "\r\n") {
			return nil, fail(http.StatusBadRequest, "IncompleteBody", "chunk header")
		}
		size, sig, ok := strings.Cut(strings.TrimSuffix(line, "\r\n"), ";chunk-signature=")
		n, err := strconv.ParseInt(size, 16, 64)
		if !ok || err != nil {
			return nil, fail(http.StatusBadRequest, "InvalidChunkSizeError", "chunk header %q", line)
		}
		chunk := make([]byte, n)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return nil, fail(http.StatusBadRequest, "IncompleteBody", "chunk data")
		}
		sts := a.alg + "-PAYLOAD\n" + a.amzDate + "\n" + a.scope() + "\n" + strings.TrimRight(prev, "*") + "\n" +
			sha256Hex(nil) + "\n" + sha256Hex(chunk)
		if !s.check(a, sts, sig) {
			return nil, denied("chunk %d signature does not match", seen.Chunks)
		}
		seen.Chunks++
		prev = sig
		data.Write(chunk)
		if n == 0 {
			break
		}
		if crlf, _ := br.ReadString('\n'); crlf != "\r\n" {
			return nil, fail(http.StatusBadRequest, "IncompleteBody", "chunk not followed by CRLF")
		}
	}
	if !trailer {
		if crlf, _ := br.ReadString('\n'); crlf != "\r\n" {
			return nil, fail(http.StatusBadRequest, "IncompleteBody", "no final CRLF")
		}
		return data.Bytes(), nil
	}
	trailers, sig, err := readTrailers(br)
	if err != nil {
		return nil, err
	}
	var canon strings.Builder
	names := make([]string, 0, len(trailers))
	for k := range trailers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		canon.WriteString(k + ":" + trailers[k] + "\n")
	}
	sts := a.alg + "-TRAILER\n" + a.amzDate + "\n" + a.scope() + "\n" + strings.TrimRight(prev, "*") + "\n" + sha256Hex([]byte(canon.String()))
	if sig == "" || !s.check(a, sts, sig) {
		return nil, denied("trailer signature does not match")
	}
	return data.Bytes(), checkTrailerChecksum(r, trailers, data.Bytes())
}

// unsignedChunks decodes a STREAMING-UNSIGNED-PAYLOAD-TRAILER body.
func unsignedChunks(raw []byte, r *http.Request) ([]byte, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	var data bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, fail(http.StatusBadRequest, "IncompleteBody", "chunk header")
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(line, "\r\n"), 16, 64)
		if err != nil {
			return nil, fail(http.StatusBadRequest, "InvalidChunkSizeError", "chunk header %q", line)
		}
		if n == 0 {
			break
		}
		if _, err := io.CopyN(&data, br, n); err != nil {
			return nil, fail(http.StatusBadRequest, "IncompleteBody", "chunk data")
		}
		if crlf, _ := br.ReadString('\n'); crlf != "\r\n" {
			return nil, fail(http.StatusBadRequest, "IncompleteBody", "chunk not followed by CRLF")
		}
	}
	trailers, _, err := readTrailers(br)
	if err != nil {
		return nil, err
	}
	return data.Bytes(), checkTrailerChecksum(r, trailers, data.Bytes())
}

func readTrailers(br *bufio.Reader) (map[string]string, string, error) {
	trailers := map[string]string{}
	sig := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, "", fail(http.StatusBadRequest, "IncompleteBody", "trailer")
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			return trailers, sig, nil
		}
		k, v, _ := strings.Cut(line, ":")
		if strings.ToLower(k) == "x-amz-trailer-signature" {
			sig = strings.TrimSpace(v)
			continue
		}
		trailers[strings.ToLower(k)] = strings.TrimSpace(v)
	}
}

// checkTrailerChecksum checks the checksum x-amz-trailer announced.
func checkTrailerChecksum(r *http.Request, trailers map[string]string, data []byte) error {
	name := strings.ToLower(r.Header.Get("X-Amz-Trailer"))
	if name == "" {
		return nil
	}
	var h hash.Hash
	switch name {
	case "x-amz-checksum-crc32":
		h = crc32.NewIEEE()
	case "x-amz-checksum-crc32c":
		h = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case "x-amz-checksum-sha256":
		h = sha256.New()
	case "x-amz-checksum-sha1":
		h = sha1.New()
	default:
		return fail(http.StatusBadRequest, "InvalidRequest", "checksum %s not supported by the fake", name)
	}
	h.Write(data)
	if got := base64.StdEncoding.EncodeToString(h.Sum(nil)); trailers[name] != got {
		return fail(http.StatusBadRequest, "BadDigest", "%s %s; computed %s", name, trailers[name], got)
	}
	return nil
}

// s3 serves PutObject and GetObject, path-style or virtual-hosted.
func (s *Server) s3(w http.ResponseWriter, r *http.Request, body []byte) error {
	bucket, key := "", strings.TrimPrefix(r.URL.Path, "/")
	if b, _, ok := strings.Cut(r.Host, ".s3."); ok {
		bucket = b
	} else {
		bucket, key, _ = strings.Cut(key, "/")
	}
	id := bucket + "/" + key
	switch r.Method {
	case http.MethodPut:
		s.mu.Lock()
		s.objects[id] = body
		s.mu.Unlock()
		w.Header().Set("ETag", `"`+sha256Hex(body)[:32]+`"`)
		w.WriteHeader(http.StatusOK)
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		obj, ok := s.objects[id]
		s.mu.Unlock()
		if !ok {
			return fail(http.StatusNotFound, "NoSuchKey", "The specified key does not exist: %s", key)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(obj)
		}
	default:
		return fail(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s", r.Method)
	}
	return nil
}

// sts serves GetCallerIdentity (form-encoded POST or query GET).
func (s *Server) sts(w http.ResponseWriter, r *http.Request, body []byte) error {
	form, _ := url.ParseQuery(string(body))
	action := form.Get("Action")
	if action == "" {
		action = r.URL.Query().Get("Action")
	}
	if action != "GetCallerIdentity" {
		return fail(http.StatusBadRequest, "InvalidAction", "%q", action)
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetCallerIdentityResult><Arn>arn:aws:iam::%s:user/airut-test</Arn><UserId>AIDAAIRUTTEST</UserId><Account>%s</Account></GetCallerIdentityResult>
<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>`, Account, Account)
	return nil
}
