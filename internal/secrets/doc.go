// Package secrets turns the server's credential pools into what a sandbox
// needs: environment values for the container (real values for plain
// secrets, format-preserving surrogates for masked ones and GitHub Apps,
// surrogate AWS keys of the real shape for signing credentials) and a
// replacement map for the proxy, which swaps a surrogate for its real
// value, or re-signs a request made with surrogate AWS keys, only on the
// hosts (and headers) the operator scoped it to (SPEC S5.1–S5.4).
//
// The proxy's side is one [Injector] per credential kind, each given the
// whole request as the last step before it goes upstream, in the manner of
// superfly/tokenizer's processors. Masked secrets and GitHub Apps share
// one, since both live in headers and what is foreign in a header can only
// be told with every surrogate in view; a GitHub App's real value is an
// installation token the injector mints with the App's key (through the
// proxy's own transport, [Env]), caches and refreshes in the background.
// The aws-sigv4 injector verifies the agent's SigV4 or SigV4A signature
// with the surrogate secret, puts the real session token in and signs
// again with the real key, re-signing an aws-chunked body chunk by chunk as
// it streams (sigv4.go, sigv4a.go, awschunk.go, awsinject.go; tested
// against AWS's published signing suites and the AWS SDK for Go's own
// signer).
//
// The replacement file that carries the credentials into the proxy's
// container is versioned and names a kind per entry; a proxy refuses a
// file of another version or an unknown kind.
//
// Real values are carried as [Value], which redacts itself in every
// formatting and logging path; only [Value.Reveal] yields the string.
package secrets
