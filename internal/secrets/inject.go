package secrets

import (
	"log/slog"
	"net/http"
)

// Credential kinds, as the replacement file and the network log name them.
// One Injector per kind (SPEC S5.2–S5.4), except that masked secrets and
// GitHub App tokens share one: both live in headers, and which value in a
// header is foreign can only be told with every surrogate of both in view.
// KindAWS (aws.go) has its own.
const (
	KindMasked    = "masked"
	KindGitHubApp = "github-app"
)

// Env is what injectors get from the proxy that runs them.
type Env struct {
	// Transport carries an injector's own requests (a GitHub App's token
	// endpoint). The proxy passes its upstream transport, so they resolve
	// and verify exactly like the agent's: resolve pins, upstream CA, the
	// address guard. Required when a GitHub App credential is present.
	Transport http.RoundTripper
	// Logger receives operational logs (token mints). Default: discarded.
	Logger *slog.Logger
	// MaxBody caps a request body an injector must hold (SigV4 hashes a
	// body whose hash the client did not send; an aws-chunked chunk is
	// held until its signature is known). Required when an AWS credential
	// is present: zero holds nothing, so such a body fails closed.
	MaxBody int64
}

// Injector is the proxy's step for one credential kind. It runs last on a
// request bound upstream: after the allowlist, every filter and the
// request's own rewriting, with r.Host the checked, normalised destination
// and r.URL.Scheme "https" only when the request leaves over TLS. It sees
// the whole request (method, URL, headers, body) because some kinds need
// all of it (SigV4 re-signs the body's hash), and it may change any of
// it.
//
// An error blocks the request (the proxy answers 502 with the reason): a
// kind that cannot do its job fails closed. An injector that holds
// background work (token refresh) also implements io.Closer; the proxy
// closes it on shutdown.
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
	// Masked counts headers in which a masked surrogate became its real
	// value.
	Masked int
	// Tokens names the kinds of minted tokens swapped in (KindGitHubApp),
	// each once.
	Tokens []string
	// Signed names the signature an injector re-made with a real key
	// ("aws", as in the network log's "[signed: aws]"), or tried to.
	Signed string
	// SignError says why a request signed with a surrogate was not
	// re-signed: it goes on with the agent's surrogate signature, which
	// the upstream rejects (fail closed). "" when it was re-signed.
	SignError string
	// Dropped counts duplicate copies of replaced headers removed.
	Dropped int
	// Stripped lists the headers removed instead of forwarded.
	Stripped []Strip
	// Injected lists the real values the request now carries, each with
	// the surrogate the agent knows it by: the proxy replaces them in the
	// response, so an upstream that echoes a request cannot hand a real
	// value back into the sandbox.
	Injected []Pair
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
