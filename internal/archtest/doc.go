// Package archtest guards the architecture of DESIGN.md: which internal
// packages may import which, and that every package says what it owns.
package archtest
