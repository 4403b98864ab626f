package secrets

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SigV4 and SigV4A as the AWS signing documentation and its published test
// suite define them, from the side of a party that must reproduce a
// client's signature exactly: the canonical request is built over the
// headers the client listed in SignedHeaders, in the client's encoding of
// the path, with the payload hash the client declared.

// Signature algorithms.
const (
	algV4  = "AWS4-HMAC-SHA256"
	algV4A = "AWS4-ECDSA-P256-SHA256"
)

// Payload hashes with a meaning of their own (x-amz-content-sha256).
const (
	emptySHA256           = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	unsignedPayload       = "UNSIGNED-PAYLOAD"
	streamingUnsignedTrlr = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	streamingPrefix       = "STREAMING-"
	payloadSuffix         = "-PAYLOAD"
	trailerSuffix         = "-PAYLOAD-TRAILER"
)

const amzDateLayout = "20060102T150405Z"

// Header and query parameter names.
const (
	hdrAuthorization = "Authorization"
	hdrDate          = "X-Amz-Date"
	hdrToken         = "X-Amz-Security-Token"
	hdrContentSHA256 = "X-Amz-Content-Sha256"
	hdrRegionSet     = "X-Amz-Region-Set"
	hdrDecodedLength = "X-Amz-Decoded-Content-Length"

	qAlgorithm     = "X-Amz-Algorithm"
	qCredential    = "X-Amz-Credential"
	qDate          = "X-Amz-Date"
	qExpires       = "X-Amz-Expires"
	qSignedHeaders = "X-Amz-SignedHeaders"
	qSignature     = "X-Amz-Signature"
	qToken         = "X-Amz-Security-Token"
	qRegionSet     = "X-Amz-Region-Set"
	qContentSHA256 = "X-Amz-Content-Sha256"
)

// scope is a credential scope: date/region/service/aws4_request, or for
// SigV4A (which signs for a region set) date/service/aws4_request.
type scope struct {
	date    string // yyyymmdd
	region  string // "" for SigV4A
	service string
}

func (s scope) String() string {
	if s.region == "" {
		return s.date + "/" + s.service + "/aws4_request"
	}
	return s.date + "/" + s.region + "/" + s.service + "/aws4_request"
}

// sigV4 is a signature as a request carries it, parsed and checked for
// shape.
type sigV4 struct {
	alg       string
	keyID     string
	scope     scope
	amzDate   string   // yyyymmddThhmmssZ, the signing time
	signed    []string // SignedHeaders: lower-case, sorted, unique
	signature string   // lower-case hex (SigV4A: DER, hex)
	presigned bool     // in the query string, not in Authorization
}

func (s *sigV4) v4a() bool { return s.alg == algV4A }

// errNotSigV4 means the request carries no AWS signature at all.
var errNotSigV4 = errors.New("no AWS signature")

// parseAuthorization reads "ALG Credential=KEY/SCOPE, SignedHeaders=a;b,
// Signature=HEX". The three parts may come in any order, each once.
func parseAuthorization(v string) (*sigV4, error) {
	alg, rest, ok := strings.Cut(v, " ")
	if !ok || (alg != algV4 && alg != algV4A) {
		return nil, errNotSigV4
	}
	s := &sigV4{alg: alg}
	var cred, signed, sig string
	seen := map[string]bool{}
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.TrimSpace(part)
		k, val, ok := strings.Cut(part, "=")
		if !ok || val == "" {
			return nil, fmt.Errorf("authorization: malformed part %q", part)
		}
		if seen[k] {
			return nil, fmt.Errorf("authorization: %s given twice", k)
		}
		seen[k] = true
		switch k {
		case "Credential":
			cred = val
		case "SignedHeaders":
			signed = val
		case "Signature":
			sig = val
		default:
			return nil, fmt.Errorf("authorization: unknown part %q", k)
		}
	}
	if cred == "" || signed == "" || sig == "" {
		return nil, errors.New("authorization: want Credential, SignedHeaders and Signature")
	}
	if err := s.setCredential(cred); err != nil {
		return nil, err
	}
	var err error
	if s.signed, err = parseSignedHeaders(signed); err != nil {
		return nil, err
	}
	if err := s.setSignature(sig); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sigV4) setCredential(cred string) error {
	parts := strings.Split(cred, "/")
	want := 5
	if s.v4a() {
		want = 4
	}
	if len(parts) != want || parts[len(parts)-1] != "aws4_request" {
		return fmt.Errorf("credential %q: want KEY/DATE/%sSERVICE/aws4_request", cred, map[bool]string{false: "REGION/"}[s.v4a()])
	}
	s.keyID, s.scope.date, s.scope.service = parts[0], parts[1], parts[len(parts)-2]
	if !s.v4a() {
		s.scope.region = parts[2]
		if !isScopeToken(s.scope.region) {
			return fmt.Errorf("credential: bad region %q", s.scope.region)
		}
	}
	switch {
	case !isAWSKeyID(s.keyID):
		return errors.New("credential: bad key id")
	case !isScopeToken(s.scope.service):
		return fmt.Errorf("credential: bad service %q", s.scope.service)
	}
	if _, err := time.Parse("20060102", s.scope.date); err != nil {
		return fmt.Errorf("credential: bad date %q", s.scope.date)
	}
	return nil
}

// isScopeToken: regions and service names are lower-case words with
// digits and dashes; anything else cannot be part of a scope.
func isScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

func parseSignedHeaders(v string) ([]string, error) {
	names := strings.Split(v, ";")
	for i, n := range names {
		if n == "" || n != strings.ToLower(n) || !isToken(n) {
			return nil, fmt.Errorf("SignedHeaders: bad name %q", n)
		}
		if i > 0 && names[i-1] >= n {
			return nil, fmt.Errorf("SignedHeaders: %q not sorted or given twice", v)
		}
	}
	if !slices.Contains(names, "host") {
		return nil, errors.New("SignedHeaders: host is not signed")
	}
	return names, nil
}

func (s *sigV4) setSignature(sig string) error {
	if s.v4a() {
		// A DER ECDSA signature; streaming clients pad it with '*'.
		sig = strings.TrimRight(sig, "*")
		if len(sig) < 16 || len(sig) > 2*maxDERSig || len(sig)%2 != 0 || !isLowerHex(sig) {
			return errors.New("signature: want hex of a DER ECDSA signature")
		}
	} else if len(sig) != 64 || !isLowerHex(sig) {
		return errors.New("signature: want 64 lower-case hex digits")
	}
	s.signature = sig
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// setDate checks the signing time against the credential scope's date.
func (s *sigV4) setDate(amzDate string) error {
	t, err := time.Parse(amzDateLayout, amzDate)
	if err != nil {
		return fmt.Errorf("%s %q: want yyyymmddThhmmssZ", hdrDate, amzDate)
	}
	if t.Format("20060102") != s.scope.date {
		return fmt.Errorf("%s %s is not on the credential's date %s", hdrDate, amzDate, s.scope.date)
	}
	s.amzDate = amzDate
	return nil
}

// queryParam is one name=value pair of a raw query string, kept raw so a
// re-signed URL differs from the client's only in the values the proxy
// replaced.
type queryParam struct {
	raw        string // as sent, "k=v" or "k"
	key, value string // decoded
}

func parseQuery(raw string) ([]queryParam, error) {
	if raw == "" {
		return nil, nil
	}
	var out []queryParam
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		out = append(out, queryParam{raw: part, key: dk, value: dv})
	}
	return out, nil
}

// lookup returns the value of the one parameter named key; a parameter
// given twice is an error, since the two sides could read different ones.
func lookup(params []queryParam, key string) (string, bool, error) {
	val, found := "", false
	for _, p := range params {
		if p.key == key {
			if found {
				return "", false, fmt.Errorf("query: %s given twice", key)
			}
			val, found = p.value, true
		}
	}
	return val, found, nil
}

// parsePresigned reads a signature from the query string (a presigned
// URL).
func parsePresigned(params []queryParam) (*sigV4, error) {
	alg, ok, err := lookup(params, qAlgorithm)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNotSigV4
	}
	if alg != algV4 && alg != algV4A {
		return nil, fmt.Errorf("%s %q: not SigV4", qAlgorithm, alg)
	}
	s := &sigV4{alg: alg, presigned: true}
	get := func(key string) string {
		v, found, e := lookup(params, key)
		switch {
		case e != nil:
			err = errors.Join(err, e)
		case !found || v == "":
			err = errors.Join(err, fmt.Errorf("query: %s is missing", key))
		}
		return v
	}
	cred, signed, sig, date := get(qCredential), get(qSignedHeaders), get(qSignature), get(qDate)
	if s.v4a() {
		get(qRegionSet)
	}
	if err != nil {
		return nil, err
	}
	if err := s.setCredential(cred); err != nil {
		return nil, err
	}
	if s.signed, err = parseSignedHeaders(signed); err != nil {
		return nil, err
	}
	if err := s.setSignature(sig); err != nil {
		return nil, err
	}
	if err := s.setDate(date); err != nil {
		return nil, err
	}
	if exp, found, e := lookup(params, qExpires); e != nil {
		return nil, e
	} else if found {
		if n, e := strconv.Atoi(exp); e != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want a positive number of seconds", qExpires, exp)
		}
	}
	return s, nil
}

// awsEscape is the URI encoding SigV4 specifies: every byte but the
// unreserved characters A-Z a-z 0-9 - . _ ~ as %XX (upper-case hex), and
// '/' too unless keepSlash.
func awsEscape(s string, keepSlash bool) string {
	const hexUpper = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) && !(keepSlash && s[i] == '/') {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || keepSlash && c == '/' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexUpper[c>>4], hexUpper[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// rawPath is the path of u exactly as it goes on the wire: the proxy
// sends the agent's raw target as an opaque URL (or, for a path starting
// with "//", as Path and RawPath).
func rawPath(u *url.URL) string {
	p := u.Opaque
	if p == "" {
		p = u.EscapedPath()
	}
	if p == "" {
		return "/"
	}
	return p
}

// canonicalURI is the path as the signature covers it. S3 signs the path
// as sent (its keys are encoded once, by the client); every other service
// encodes the sent path once more, and may first normalise it (dot
// segments, repeated slashes) as the AWS test suite's "normalized" cases
// do.
func canonicalURI(path string, singleEncode, normalize bool) string {
	if singleEncode {
		return path
	}
	if normalize {
		path = normalizePath(path)
	}
	return awsEscape(path, true)
}

// normalizePath removes "." and ".." segments and empty segments, keeping
// a trailing slash, as the SigV4 test suite's normalised cases expect.
func normalizePath(p string) string {
	trailing := strings.HasSuffix(p, "/")
	var out []string
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	s := "/" + strings.Join(out, "/")
	if trailing && s != "/" {
		s += "/"
	}
	return s
}

// canonicalQuery encodes every parameter (but X-Amz-Signature of a
// presigned URL) and sorts them after encoding, as SigV4 specifies. Some
// presigned URLs (AWS IoT's) get X-Amz-Security-Token after signing:
// unsignedToken leaves it out.
func canonicalQuery(params []queryParam, presigned, unsignedToken bool) string {
	enc := make([]string, 0, len(params))
	for _, p := range params {
		if presigned && p.key == qSignature || unsignedToken && p.key == qToken {
			continue
		}
		enc = append(enc, awsEscape(p.key, false)+"="+awsEscape(p.value, false))
	}
	slices.SortFunc(enc, func(a, b string) int {
		ka, va, _ := strings.Cut(a, "=")
		kb, vb, _ := strings.Cut(b, "=")
		if c := strings.Compare(ka, kb); c != 0 {
			return c
		}
		return strings.Compare(va, vb)
	})
	return strings.Join(enc, "&")
}

// headerValues returns the values of a signed header as r will be sent.
// host and content-length live outside r.Header in net/http.
func headerValues(r *http.Request, name string) ([]string, bool) {
	switch name {
	case "host":
		return []string{r.Host}, r.Host != ""
	case "content-length":
		if v, ok := r.Header["Content-Length"]; ok {
			return v, true
		}
		if r.ContentLength >= 0 && (r.ContentLength > 0 || r.Body == nil || r.Body == http.NoBody) {
			return []string{strconv.FormatInt(r.ContentLength, 10)}, true
		}
		return nil, false
	}
	v, ok := r.Header[http.CanonicalHeaderKey(name)]
	return v, ok
}

// canonicalHeaders renders "name:value\n" for each name, values trimmed,
// inner runs of spaces collapsed, several values joined by commas.
func canonicalHeaders(names []string, values func(string) ([]string, bool)) (string, error) {
	var b strings.Builder
	for _, n := range names {
		vs, ok := values(n)
		if !ok {
			return "", fmt.Errorf("signed header %s is not in the request", n)
		}
		b.WriteString(n)
		b.WriteByte(':')
		for i, v := range vs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(collapseSpaces(v))
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func collapseSpaces(v string) string {
	v = strings.Trim(v, " \t")
	if !strings.Contains(v, "  ") {
		return v
	}
	return strings.Join(strings.Fields(v), " ")
}

// canonicalRequest is the request as s signs it.
func canonicalRequest(r *http.Request, uri, query string, signed []string, payload string) (string, error) {
	hdrs, err := canonicalHeaders(signed, func(n string) ([]string, bool) { return headerValues(r, n) })
	if err != nil {
		return "", err
	}
	return r.Method + "\n" + uri + "\n" + query + "\n" + hdrs + "\n" + strings.Join(signed, ";") + "\n" + payload, nil
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// stringToSign is ALG, the signing time, the scope and the canonical
// request's hash, one per line.
func stringToSign(alg, amzDate string, sc scope, canonical string) string {
	return alg + "\n" + amzDate + "\n" + sc.String() + "\n" + hashHex([]byte(canonical))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// signingKey derives SigV4's HMAC key for one scope.
func signingKey(secret string, sc scope) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), sc.date)
	k = hmacSHA256(k, sc.region)
	k = hmacSHA256(k, sc.service)
	return hmacSHA256(k, "aws4_request")
}

// chunkStringToSign is the string a chunk of an aws-chunked body is signed
// by (the empty hash stands for the chunk's headers, which S3 has none
// of).
func chunkStringToSign(alg, amzDate string, sc scope, prev string, chunkHash string) string {
	return alg + "-PAYLOAD\n" + amzDate + "\n" + sc.String() + "\n" + prev + "\n" + emptySHA256 + "\n" + chunkHash
}

// trailerStringToSign signs the trailing headers of an aws-chunked body.
func trailerStringToSign(alg, amzDate string, sc scope, prev string, canonicalTrailers string) string {
	return alg + "-TRAILER\n" + amzDate + "\n" + sc.String() + "\n" + prev + "\n" + hashHex([]byte(canonicalTrailers))
}

// singleEncodes reports whether a service signs the path as sent (S3 and
// its variants) rather than encoding it once more.
func singleEncodes(service string) bool {
	return service == "s3" || strings.HasPrefix(service, "s3-") || service == "s3express"
}
