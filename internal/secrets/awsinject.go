package secrets

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/airut/airut/internal/allowlist"
)

// awsInjector re-signs requests signed with a surrogate AWS key (S5.3).
//
// A request is the credential's when its signature's key id (in
// Authorization's Credential= or a presigned URL's X-Amz-Credential) is
// the surrogate key id, and its host is in the credential's scopes. Then,
// over TLS only:
//
//  1. the signature is checked for shape and verified with the surrogate
//     secret, over the request as it goes upstream: the proxy reproduces
//     the agent's canonical request exactly (its SignedHeaders, its path
//     encoding, its declared payload hash), so the real key signs exactly
//     what the agent signed and nothing the path to the upstream changed;
//  2. the real session token is put in (X-Amz-Security-Token header or
//     query parameter), before signing, so a signed token is signed real;
//  3. the request is signed again with the real key, with the agent's
//     signing time (a presigned URL keeps its X-Amz-Expires), and an
//     aws-chunked body is re-signed chunk by chunk as it streams.
//
// Any failure leaves the request as the agent signed it, surrogate
// signature and all, which the upstream rejects: fail closed. The reason
// is in Injection.SignError.
type awsInjector struct {
	entries []awsEntry
	maxBody int64

	mu       sync.Mutex
	keys     map[string]*ecdsa.PrivateKey // SigV4A keys by key id and secret, derived on first use
	hmacKeys map[string][]byte            // SigV4 signing keys by secret and scope (one a day and service)
}

// maxHMACKeys bounds the signing key cache; it is emptied when full.
const maxHMACKeys = 256

func newAWSInjector(entries []awsEntry, env Env) *awsInjector {
	return &awsInjector{entries: entries, maxBody: env.MaxBody, keys: map[string]*ecdsa.PrivateKey{}, hmacKeys: map[string][]byte{}}
}

// signingKey is signingKey, cached: deriving it is four HMACs, and every
// request needs two (the surrogate's and the real one).
func (a *awsInjector) signingKey(secret string, sc scope) []byte {
	id := secret + "\x00" + sc.String()
	a.mu.Lock()
	defer a.mu.Unlock()
	if k, ok := a.hmacKeys[id]; ok {
		return k
	}
	if len(a.hmacKeys) >= maxHMACKeys {
		clear(a.hmacKeys)
	}
	k := signingKey(secret, sc)
	a.hmacKeys[id] = k
	return k
}

func (a *awsInjector) Kind() string { return KindAWS }

func (a *awsInjector) Scoped(host string) bool {
	return slices.ContainsFunc(a.entries, func(e awsEntry) bool { return e.inScope(host) })
}

func (a *awsInjector) Inject(r *http.Request) (Injection, error) {
	var res Injection
	sig, err := findSigV4(r)
	if errors.Is(err, errNotSigV4) {
		return res, nil
	}
	e := a.entryFor(r, sig)
	if e == nil {
		return res, nil // not signed with a surrogate: the agent's own key, or no key of ours
	}
	host := r.Host
	if n, err := allowlist.NormalizeHost(host); err == nil {
		host = n
	}
	if !e.inScope(host) {
		return res, nil // the surrogate goes on as it is, useless
	}
	res.Signed = signedAWS
	switch {
	case err != nil:
		res.SignError = err.Error()
	case r.URL == nil || r.URL.Scheme != "https":
		// Credentials go only over TLS (S4): a re-signed request would
		// carry the real session token in the clear. The surrogate
		// signature is removed from the headers like any credential that
		// would have been replaced; a presigned URL's stays in its query,
		// where the upstream rejects it.
		res.SignError = StripPlainHTTP
		if !sig.presigned {
			r.Header.Del(hdrAuthorization)
			res.Stripped = append(res.Stripped, Strip{Header: hdrAuthorization, Reason: StripPlainHTTP})
			if slices.Contains(r.Header.Values(hdrToken), e.token.surrogate) && e.hasToken() {
				r.Header.Del(hdrToken)
				res.Stripped = append(res.Stripped, Strip{Header: hdrToken, Reason: StripPlainHTTP})
			}
		}
	default:
		if err := a.resign(r, e, sig); err != nil {
			res.SignError = err.Error()
			return res, nil
		}
		res.Injected = []Pair{{Real: e.keyID.real, Surrogate: e.keyID.surrogate}}
		if e.hasToken() {
			res.Injected = append(res.Injected, Pair{Real: e.token.real, Surrogate: e.token.surrogate})
		}
	}
	return res, nil
}

// findSigV4 finds the request's AWS signature: in Authorization, or in the
// query of a presigned URL. It returns errNotSigV4 when there is none,
// and a parse error (with what it could read, possibly nil) when one is
// malformed.
func findSigV4(r *http.Request) (*sigV4, error) {
	var sig *sigV4
	inHeader := false
	if vs := r.Header.Values(hdrAuthorization); len(vs) > 0 {
		for _, v := range vs {
			if strings.HasPrefix(v, "AWS4-") {
				inHeader = true
			}
		}
		if inHeader {
			if len(vs) > 1 {
				return nil, errors.New("more than one Authorization header")
			}
			s, err := parseAuthorization(vs[0])
			if err != nil {
				if errors.Is(err, errNotSigV4) {
					err = fmt.Errorf("authorization: unknown algorithm in %q", strings.SplitN(vs[0], " ", 2)[0])
				}
				return nil, err
			}
			sig = s
		}
	}
	params, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		if inHeader {
			return sig, err
		}
		if strings.Contains(r.URL.RawQuery, qCredential) {
			return nil, err
		}
		return nil, errNotSigV4
	}
	q, qerr := parsePresigned(params)
	switch {
	case inHeader && !errors.Is(qerr, errNotSigV4):
		return sig, errors.New("signed both in Authorization and in the query")
	case inHeader:
		if err := sig.setDate(headerDate(r)); err != nil {
			return sig, err
		}
		return sig, nil
	}
	return q, qerr
}

// headerDate is the signing time of a header-signed request: X-Amz-Date,
// or the Date header in its HTTP form.
func headerDate(r *http.Request) string {
	if vs := r.Header.Values(hdrDate); len(vs) > 0 {
		if len(vs) > 1 {
			return ""
		}
		return vs[0]
	}
	if t, err := http.ParseTime(r.Header.Get("Date")); err == nil {
		return t.UTC().Format(amzDateLayout)
	}
	return ""
}

// entryFor finds the credential whose surrogate key id signed r. A
// signature too malformed to parse still belongs to a credential whose
// surrogate key id it names, so its failure is reported.
func (a *awsInjector) entryFor(r *http.Request, sig *sigV4) *awsEntry {
	for i := range a.entries {
		e := &a.entries[i]
		if sig != nil {
			if sig.keyID == e.keyID.surrogate {
				return e
			}
			continue
		}
		for _, v := range r.Header.Values(hdrAuthorization) {
			if strings.Contains(v, e.keyID.surrogate) {
				return e
			}
		}
		if strings.Contains(r.URL.RawQuery, e.keyID.surrogate) {
			return e
		}
	}
	return nil
}

// keyFor derives (once) the SigV4A key of a key pair.
func (a *awsInjector) keyFor(keyID, secret string) (*ecdsa.PrivateKey, error) {
	id := keyID + "\x00" + secret
	a.mu.Lock()
	defer a.mu.Unlock()
	if k, ok := a.keys[id]; ok {
		return k, nil
	}
	k, err := deriveV4AKey(keyID, secret)
	if err != nil {
		return nil, err
	}
	a.keys[id] = k
	return k, nil
}

// signer signs or verifies with one key pair, for one signature's scope.
type signer struct {
	hmacKey []byte            // SigV4
	ec      *ecdsa.PrivateKey // SigV4A
}

func (a *awsInjector) signer(sig *sigV4, keyID, secret string) (signer, error) {
	if !sig.v4a() {
		return signer{hmacKey: a.signingKey(secret, sig.scope)}, nil
	}
	k, err := a.keyFor(keyID, secret)
	if err != nil {
		return signer{}, err
	}
	return signer{ec: k}, nil
}

func (s signer) chain(sig *sigV4, seed string) chain {
	return chain{alg: sig.alg, amzDate: sig.amzDate, scope: sig.scope, prev: seed, ecKey: s.ec, hmacKey: s.hmacKey}
}

func (s signer) verify(sig *sigV4, sts string) bool {
	if s.ec != nil {
		return verifyV4A(&s.ec.PublicKey, sts, sig.signature)
	}
	want := hmacSHA256(s.hmacKey, sts)
	got, err := hex.DecodeString(sig.signature)
	return err == nil && hmac.Equal(want, got)
}

func (s signer) sign(sts string) (string, error) {
	if s.ec != nil {
		return signV4A(s.ec, sts)
	}
	return hex.EncodeToString(hmacSHA256(s.hmacKey, sts)), nil
}

// canonicalForm is one way the agent may have built its canonical request.
type canonicalForm struct {
	uri, payload  string
	unsignedToken bool // a presigned URL's token was added after signing
}

// resign verifies r's surrogate signature and signs r with the real key.
// r is changed only once everything has succeeded.
func (a *awsInjector) resign(r *http.Request, e *awsEntry, sig *sigV4) error {
	agent, err := a.signer(sig, e.keyID.surrogate, e.secret.surrogate)
	if err != nil {
		return err
	}
	real, err := a.signer(sig, e.keyID.real.Reveal(), e.secret.real.Reveal())
	if err != nil {
		return err
	}
	if sig.v4a() && len(r.Header.Values(hdrRegionSet)) == 0 && !sig.presigned {
		return fmt.Errorf("SigV4A request without %s", hdrRegionSet)
	}
	params, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	forms, err := a.forms(r, sig, params)
	if err != nil {
		return err
	}
	var form *canonicalForm
	for i := range forms {
		creq, err := canonicalRequest(r, forms[i].uri, canonicalQuery(params, sig.presigned, forms[i].unsignedToken), sig.signed, forms[i].payload)
		if err != nil {
			return err
		}
		if agent.verify(sig, stringToSign(sig.alg, sig.amzDate, sig.scope, creq)) {
			form = &forms[i]
			break
		}
	}
	if form == nil {
		return errors.New("the signature does not verify with the surrogate key: " +
			"the request differs from what was signed, or is signed in a form the proxy cannot reproduce")
	}
	if sig.presigned {
		return a.resignQuery(r, e, sig, real, params, *form)
	}
	return a.resignHeader(r, e, sig, real, params, *form)
}

// forms lists the canonical requests the agent may have signed, most
// likely first: the payload hash declared (or the body's), and for
// services other than S3 the path as sent and normalised.
func (a *awsInjector) forms(r *http.Request, sig *sigV4, params []queryParam) ([]canonicalForm, error) {
	path := rawPath(r.URL)
	single := singleEncodes(sig.scope.service)
	uris := []string{canonicalURI(path, single, false)}
	if n := canonicalURI(path, single, true); n != uris[0] {
		uris = append(uris, n)
	}
	var payloads []string
	declared, err := declaredPayload(r, sig, params)
	switch {
	case err != nil:
		return nil, err
	case declared != "":
		payloads = []string{declared}
	case sig.presigned:
		// A presigned URL of S3 signs UNSIGNED-PAYLOAD; of other services
		// the (usually empty) body.
		h, err := a.bodyHash(r)
		if err != nil {
			return nil, err
		}
		payloads = []string{unsignedPayload, h}
	default:
		h, err := a.bodyHash(r)
		if err != nil {
			return nil, err
		}
		payloads = []string{h}
	}
	tokenForms := []bool{false}
	if _, found, _ := lookup(params, qToken); sig.presigned && found {
		tokenForms = append(tokenForms, true)
	}
	var out []canonicalForm
	for _, p := range payloads {
		for _, u := range uris {
			for _, ut := range tokenForms {
				out = append(out, canonicalForm{uri: u, payload: p, unsignedToken: ut})
			}
		}
	}
	return out, nil
}

// declaredPayload is the x-amz-content-sha256 the agent sent, checked:
// a hash, UNSIGNED-PAYLOAD, or a streaming form matching the signature's
// algorithm. "" when it sent none.
func declaredPayload(r *http.Request, sig *sigV4, params []queryParam) (string, error) {
	vs := r.Header.Values(hdrContentSHA256)
	if sig.presigned {
		v, found, err := lookup(params, qContentSHA256)
		if err != nil {
			return "", err
		}
		if found {
			vs = append(vs, v)
		}
	}
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("more than one %s", hdrContentSHA256)
	}
	v := vs[0]
	switch {
	case len(v) == 64 && isLowerHex(v), v == unsignedPayload, v == streamingUnsignedTrlr:
		return v, nil
	case v == streamingPrefix+sig.alg+payloadSuffix, v == streamingPrefix+sig.alg+trailerSuffix:
		if sig.presigned {
			return "", fmt.Errorf("%s %s in a presigned URL", hdrContentSHA256, v)
		}
		return v, nil
	}
	return "", fmt.Errorf("%s %q: not a payload hash this signature can use", hdrContentSHA256, v)
}

// bodyHash reads and holds the body, at most maxBody bytes, to hash it.
func (a *awsInjector) bodyHash(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return emptySHA256, nil
	}
	if r.ContentLength > a.maxBody {
		return "", fmt.Errorf("the body (%d bytes) must be hashed and is over the limit of %d bytes", r.ContentLength, a.maxBody)
	}
	orig := r.Body
	b, err := io.ReadAll(io.LimitReader(orig, a.maxBody+1))
	// What was read goes upstream whatever happens, ahead of the rest.
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), orig), orig}
	if err != nil {
		return "", fmt.Errorf("read the body to hash it: %w", err)
	}
	if int64(len(b)) > a.maxBody {
		return "", fmt.Errorf("the body must be hashed and is over the limit of %d bytes", a.maxBody)
	}
	return hashHex(b), nil
}

// resignHeader signs a request whose signature is in Authorization.
func (a *awsInjector) resignHeader(r *http.Request, e *awsEntry, sig *sigV4, real signer, params []queryParam, form canonicalForm) error {
	h := r.Header.Clone()
	signed := sig.signed
	switch tv := h.Values(hdrToken); {
	case len(tv) > 1:
		return fmt.Errorf("more than one %s", hdrToken)
	case len(tv) == 1 && (!e.hasToken() || tv[0] != e.token.surrogate):
		return fmt.Errorf("%s is not the surrogate session token", hdrToken)
	case len(tv) == 1:
		h.Set(hdrToken, e.token.real.Reveal())
	case e.hasToken():
		// The agent left the token out; temporary keys need it, signed.
		h.Set(hdrToken, e.token.real.Reveal())
		signed = insertSorted(signed, strings.ToLower(hdrToken))
	}
	out := *r
	out.Header = h
	creq, err := canonicalRequest(&out, form.uri, canonicalQuery(params, false, false), signed, form.payload)
	if err != nil {
		return err
	}
	s, err := real.sign(stringToSign(sig.alg, sig.amzDate, sig.scope, creq))
	if err != nil {
		return err
	}
	h.Set(hdrAuthorization, fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		sig.alg, e.keyID.real.Reveal(), sig.scope, strings.Join(signed, ";"), s))
	var body io.ReadCloser
	if strings.HasPrefix(form.payload, streamingPrefix+"AWS4-") {
		if r.Body == nil || r.Body == http.NoBody {
			return fmt.Errorf("%s without a body", form.payload)
		}
		agentSigner, err := a.signer(sig, e.keyID.surrogate, e.secret.surrogate)
		if err != nil {
			return err
		}
		body = newChunkResigner(r.Body, a.maxBody, strings.HasSuffix(form.payload, trailerSuffix),
			agentSigner.chain(sig, sig.signature), real.chain(sig, s))
	}
	r.Header = h
	if body != nil {
		r.Body = body
	}
	return nil
}

func insertSorted(names []string, n string) []string {
	i, found := slices.BinarySearch(names, n)
	if found {
		return names
	}
	return slices.Insert(slices.Clone(names), i, n)
}

// resignQuery signs a presigned URL: the real key id in X-Amz-Credential,
// the real token in X-Amz-Security-Token, a new X-Amz-Signature; every
// other parameter stays as the agent wrote it.
func (a *awsInjector) resignQuery(r *http.Request, e *awsEntry, sig *sigV4, real signer, params []queryParam, form canonicalForm) error {
	tok, hasTok, err := lookup(params, qToken)
	switch {
	case err != nil:
		return err
	case hasTok && (!e.hasToken() || tok != e.token.surrogate):
		return fmt.Errorf("%s is not the surrogate session token", qToken)
	}
	set := map[string]string{qCredential: e.keyID.real.Reveal() + "/" + sig.scope.String()}
	if e.hasToken() {
		set[qToken] = e.token.real.Reveal()
	}
	next := make([]queryParam, 0, len(params)+1)
	for _, p := range params {
		if v, ok := set[p.key]; ok {
			p.value, p.raw = v, awsEscape(p.key, false)+"="+awsEscape(v, false)
			delete(set, p.key)
		}
		next = append(next, p)
	}
	if v, ok := set[qToken]; ok {
		next = append(next, queryParam{raw: qToken + "=" + awsEscape(v, false), key: qToken, value: v})
	}
	creq, err := canonicalRequest(r, form.uri, canonicalQuery(next, true, form.unsignedToken), sig.signed, form.payload)
	if err != nil {
		return err
	}
	s, err := real.sign(stringToSign(sig.alg, sig.amzDate, sig.scope, creq))
	if err != nil {
		return err
	}
	raw := make([]string, len(next))
	for i, p := range next {
		if p.key == qSignature {
			p.raw = qSignature + "=" + s
		}
		raw[i] = p.raw
	}
	r.URL.RawQuery = strings.Join(raw, "&")
	return nil
}
