package secrets

import "net/http"

// Credential kinds, as the replacement file and the network log name them.
// One Injector per kind (SPEC S5.2–S5.4); "github-app" joins "masked" and
// KindAWS here.
const (
	KindMasked = "masked"
)

// Injector is the proxy's step for one credential kind. It runs last on a
// request bound upstream: after the allowlist, every filter and the
// request's own rewriting, with r.Host the checked, normalised destination
// and r.URL.Scheme "https" only when the request leaves over TLS. It sees
// the whole request (method, URL, headers, body) because some kinds need
// all of it (SigV4 re-signs the body's hash), and it may change any of
// it.
//
// An error blocks the request (the proxy answers 502 with the reason): a
// kind that cannot do its job fails closed.
type Injector interface {
	// Kind names the credential kind (KindMasked …).
	Kind() string
	// Scoped reports whether host (normalised: lower-case, no port, no
	// trailing dot) is in the scope of a credential of this kind. The
	// proxy then keeps real values out of the host's responses.
	Scoped(host string) bool
	// Inject swaps this kind's surrogates in r for real credentials.
	Inject(r *http.Request) (Injection, error)
}

// Injection is what one Injector did to one request, for the network log
// and the response redactor.
type Injection struct {
	// Masked counts headers in which a surrogate became its real value.
	Masked int
	// Dropped counts duplicate copies of replaced headers removed.
	Dropped int
	// Stripped lists the headers removed instead of forwarded.
	Stripped []Strip
	// Injected lists the real values the request now carries, each with
	// the surrogate the agent knows it by: the proxy replaces them in the
	// response, so an upstream that echoes a request cannot hand a real
	// value back into the sandbox.
	Injected []Pair
	// Signed names the signature an injector re-made with a real key
	// ("aws", as in the network log's "[signed: aws]"), or tried to.
	Signed string
	// SignError says why a request signed with a surrogate was not
	// re-signed: it goes on with the agent's surrogate signature, which
	// the upstream rejects (fail closed). "" when it was re-signed.
	SignError string
}

// Strip is one header an Injector removed, and why.
type Strip struct {
	Header string // canonical name
	Reason string // StripForeign or StripPlainHTTP
}

// Why a header was stripped, as the network log says it.
const (
	// StripForeign: the header carries something other than a whole
	// surrogate (the agent's own credential, or its own beside the
	// surrogate).
	StripForeign = ""
	// StripPlainHTTP: the header would have carried a real credential over
	// a connection without TLS.
	StripPlainHTTP = "plain http"
)

// Pair is a real credential and the surrogate the sandbox has for it.
type Pair struct {
	Real      Value
	Surrogate string
}
