package allowlist

import (
	"strings"
	"unicode/utf8"
)

// Fnmatch reports whether name matches pattern with the semantics of
// Python's fnmatch.fnmatchcase: the whole name must match, '*' matches any
// run of characters including '/' and '.', '?' matches one character,
// "[seq]" and "[!seq]" are classes, and a '[' without a closing ']' is a
// literal. It is case-sensitive; callers lower-case hosts and header names.
//
// The allowlist files were written for the Python reference, so the odd
// corners of Python's translation are reproduced exactly, not approximated:
// a reversed range such as "[z-a]" is dropped from its class together with
// its end points, and a class left empty matches nothing ("[!...]" left
// empty matches any character). Characters are Unicode code points; a byte
// that is not valid UTF-8 in name counts as one character.
//
// Fnmatch allocates nothing for patterns of up to 32 tokens with short
// classes, so the proxy can call it per request without compiling patterns
// in advance. Time is O(len(pattern) * len(name)).
func Fnmatch(pattern, name string) bool {
	// Tokenise once: finding where a '[' ends rescans the pattern, which
	// would be quadratic if repeated while backtracking.
	var buf [32]token
	toks := buf[:0]
	for i := 0; i < len(pattern); {
		t := nextToken(pattern, i)
		toks = append(toks, t)
		i = t.next
	}

	ti, nx := 0, 0
	// Where to resume after the most recent '*': with single-character
	// tokens between stars, retrying from the latest star only is enough
	// (an earlier star can never enable a match the latest one cannot).
	starTi, starNx := -1, 0
	for ti < len(toks) || nx < len(name) {
		if ti < len(toks) {
			t := toks[ti]
			if t.kind == tokStar {
				ti++
				starTi, starNx = ti, nx
				continue
			}
			if nx < len(name) {
				r, w := utf8.DecodeRuneInString(name[nx:])
				if t.matches(pattern, name[nx:nx+w], r) {
					ti++
					nx += w
					continue
				}
			}
		}
		if starTi >= 0 && starNx < len(name) {
			_, w := utf8.DecodeRuneInString(name[starNx:])
			starNx += w
			ti, nx = starTi, starNx
			continue
		}
		return false
	}
	return true
}

// hasWildcard reports whether an allowlist pattern is matched with Fnmatch.
// The reference switches to fnmatch only on '*' or '?': a pattern with just
// brackets is compared exactly, so "/a[1]" names a literal path.
func hasWildcard(pattern string) bool {
	return strings.ContainsAny(pattern, "*?")
}

// matchPattern matches an allowlist host or path pattern against value.
func matchPattern(pattern, value string) bool {
	if hasWildcard(pattern) {
		return Fnmatch(pattern, value)
	}
	return pattern == value
}

type tokenKind uint8

const (
	tokLiteral tokenKind = iota // pattern[start:end] compared byte for byte
	tokAny                      // '?'
	tokStar                     // '*'
	tokClass                    // pattern[start:end] is the text between '[' and ']'
)

type token struct {
	kind       tokenKind
	start, end int
	next       int // index in the pattern after this token
}

// nextToken reads the token at pattern[i:], following Python's translate.
func nextToken(pattern string, i int) token {
	switch pattern[i] {
	case '*':
		return token{kind: tokStar, next: i + 1}
	case '?':
		return token{kind: tokAny, next: i + 1}
	case '[':
		// A ']' right after '[' or "[!" belongs to the class.
		j := i + 1
		if j < len(pattern) && pattern[j] == '!' {
			j++
		}
		if j < len(pattern) && pattern[j] == ']' {
			j++
		}
		for j < len(pattern) && pattern[j] != ']' {
			j++
		}
		if j >= len(pattern) {
			return token{kind: tokLiteral, start: i, end: i + 1, next: i + 1}
		}
		return token{kind: tokClass, start: i + 1, end: j, next: j + 1}
	}
	_, w := utf8.DecodeRuneInString(pattern[i:])
	return token{kind: tokLiteral, start: i, end: i + w, next: i + w}
}

// matches reports whether the token matches one character of the name,
// given as its bytes c and its decoded rune r.
func (t token) matches(pattern, c string, r rune) bool {
	switch t.kind {
	case tokAny:
		return true
	case tokLiteral:
		// Bytes, not runes, so that two different invalid bytes (both
		// decoding to U+FFFD) are not equal.
		return pattern[t.start:t.end] == c
	case tokClass:
		return classMatches(pattern[t.start:t.end], r)
	}
	return false
}

// classMatches reports whether r is in the class whose text (between the
// brackets) is stuff.
//
// Python's translate splits the text at hyphens into chunks, joins them
// back as regexp ranges and, walking right to left, drops every range
// whose low end is above its high end together with both end points.
// Because a chunk between two split hyphens always has at least two
// characters, each range is decided on the original characters alone,
// so the class is: every range with lo <= hi, plus every character that
// is not a range end point (nor the leading '!').
func classMatches(stuff string, r rune) bool {
	negated := strings.HasPrefix(stuff, "!")
	if !strings.Contains(stuff, "-") {
		body := stuff
		if negated {
			body = stuff[1:]
		}
		return negated != strings.ContainsRune(body, r)
	}

	var buf [64]rune
	rs := buf[:0]
	for _, c := range stuff {
		rs = append(rs, c)
	}

	// The first hyphen that can split is at index 1 (2 after '!'); after a
	// split the next search starts three characters on, so a hyphen right
	// after a range end is literal ("[a-c-e]" is a..c, '-', 'e').
	var splitBuf [16]int
	splits := splitBuf[:0]
	k := 1
	if negated {
		k = 2
	}
	for ; k < len(rs); k++ {
		if rs[k] == '-' {
			splits = append(splits, k)
			k += 2
		}
	}
	// A hyphen that ends the class is literal.
	if n := len(splits); n > 0 && splits[n-1] == len(rs)-1 {
		splits = splits[:n-1]
	}

	member := false
	for _, s := range splits {
		if lo, hi := rs[s-1], rs[s+1]; lo <= hi && lo <= r && r <= hi {
			member = true
		}
	}
	// Every other character is a literal: not the '!', not a range's end
	// points, not its hyphen.
	first := 0
	if negated {
		first = 1
	}
	si := 0
	for idx := first; idx < len(rs); idx++ {
		for si < len(splits) && splits[si]+1 < idx {
			si++
		}
		if si < len(splits) && idx >= splits[si]-1 {
			continue
		}
		if rs[idx] == r {
			member = true
		}
	}
	return negated != member
}
