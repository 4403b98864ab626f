// Package secrets turns the server's credential pools into what a sandbox
// needs: environment values for the container (real values for plain
// secrets, format-preserving surrogates for masked ones) and a replacement
// map for the proxy, which swaps a surrogate for its real value only on the
// hosts and headers the operator scoped it to (SPEC S5.1–S5.2).
//
// Real values are carried as [Value], which redacts itself in every
// formatting and logging path; only [Value.Reveal] yields the string.
package secrets
