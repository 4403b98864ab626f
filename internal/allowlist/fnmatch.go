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
// corners of Python's translation to a regular expression are reproduced,
// not approximated: a reversed range such as "[z-a]" is dropped with its
// end points, a class left empty matches nothing, and one left as just "!"
// (as "[0- !]" is) matches any character. Characters are Unicode code
// points; a byte of name that is not valid UTF-8 counts as one character.
//
// Fnmatch allocates nothing for patterns of up to 32 tokens whose classes
// have no ranges (nor for any pattern without classes), so the proxy can call it per request without compiling
// patterns in advance. Time is O(len(pattern) * len(name)).
func Fnmatch(pattern, name string) bool {
	if !strings.Contains(pattern, "[") {
		return matchSimple(pattern, name)
	}
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
			t := &toks[ti]
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

// matchSimple is Fnmatch for a pattern without classes: the same
// algorithm reading the pattern in place, which is most allowlist patterns.
func matchSimple(pattern, name string) bool {
	px, nx := 0, 0
	starPx, starNx := -1, 0
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				px++
				starPx, starNx = px, nx
				continue
			case '?':
				if nx < len(name) {
					_, w := utf8.DecodeRuneInString(name[nx:])
					px++
					nx += w
					continue
				}
			default:
				_, pw := utf8.DecodeRuneInString(pattern[px:])
				_, nw := utf8.DecodeRuneInString(name[nx:])
				if nx < len(name) && pattern[px:px+pw] == name[nx:nx+nw] {
					px += pw
					nx += nw
					continue
				}
			}
		}
		if starPx >= 0 && starNx < len(name) {
			_, w := utf8.DecodeRuneInString(name[starNx:])
			starNx += w
			px, nx = starPx, starNx
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
	tokLiteral    tokenKind = iota // pattern[start:end] compared byte for byte
	tokAny                         // '?', or a class that matches any character
	tokStar                        // '*'
	tokClass                       // a class without ranges: pattern[start:end]
	tokRangeClass                  // a class with ranges, compiled into ranges
)

type token struct {
	kind       tokenKind
	start, end int
	next       int  // index in the pattern after this token
	negated    bool // tokRangeClass
	ranges     []classRange
}

type classRange struct{ lo, hi rune }

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
		stuff := pattern[i+1 : j]
		if !strings.Contains(stuff, "-") {
			return token{kind: tokClass, start: i + 1, end: j, next: j + 1}
		}
		t := compileRangeClass(stuff)
		t.next = j + 1
		return t
	}
	_, w := utf8.DecodeRuneInString(pattern[i:])
	return token{kind: tokLiteral, start: i, end: i + w, next: i + w}
}

// matches reports whether the token matches one character of the name,
// given as its bytes c and its decoded rune r.
func (t *token) matches(pattern, c string, r rune) bool {
	switch t.kind {
	case tokAny:
		return true
	case tokLiteral:
		// Bytes, not runes, so that two different invalid bytes (both
		// decoding to U+FFFD) are not equal.
		return pattern[t.start:t.end] == c
	case tokClass:
		// Without a hyphen Python keeps the text as is: "!" first
		// negates, every other character is a literal.
		stuff := pattern[t.start:t.end]
		if body, ok := strings.CutPrefix(stuff, "!"); ok {
			return !strings.ContainsRune(body, r)
		}
		return strings.ContainsRune(stuff, r)
	case tokRangeClass:
		for _, rg := range t.ranges {
			if rg.lo <= r && r <= rg.hi {
				return !t.negated
			}
		}
		return t.negated
	}
	return false
}

// classElem is one character of the regexp class body Python builds;
// escaped elements are always literals.
type classElem struct {
	r       rune
	escaped bool
}

// compileRangeClass compiles a class whose text (between the brackets)
// contains a hyphen, by building the regexp class body exactly as Python's
// fnmatch.translate does and then reading it as Python's re does. Doing
// both steps matters: dropping a reversed range can leave a body that
// starts with '!' (so "[0- !a]" is "[^a]"), is "!" alone (any character)
// or is empty (nothing).
func compileRangeClass(stuff string) token {
	rs := []rune(stuff)
	// Split at hyphens: the first candidate is at index 1 (2 after '!');
	// after a split the search resumes three characters on, so a hyphen
	// right after a range end is literal ("[a-c-e]" is a..c, '-', 'e').
	var chunks [][]rune
	i, k := 0, 1
	if rs[0] == '!' {
		k = 2
	}
	for ; k < len(rs); k++ {
		if rs[k] == '-' {
			chunks = append(chunks, rs[i:k:k])
			i = k + 1
			k += 2
		}
	}
	if i < len(rs) {
		chunks = append(chunks, rs[i:])
	} else {
		last := len(chunks) - 1
		chunks[last] = append(chunks[last], '-')
	}
	// Drop reversed ranges with their end points, right to left.
	for k := len(chunks) - 1; k > 0; k-- {
		prev, cur := chunks[k-1], chunks[k]
		if prev[len(prev)-1] > cur[0] {
			merged := append(append([]rune(nil), prev[:len(prev)-1]...), cur[1:]...)
			chunks[k-1] = merged
			chunks = append(chunks[:k], chunks[k+1:]...)
		}
	}
	// Join with range hyphens; hyphens, backslashes and set operators
	// inside chunks are escaped.
	var body []classElem
	for n, c := range chunks {
		if n > 0 {
			body = append(body, classElem{r: '-'})
		}
		for _, r := range c {
			body = append(body, classElem{r: r, escaped: strings.ContainsRune(`\-&~|`, r)})
		}
	}

	t := token{kind: tokRangeClass}
	switch {
	case len(body) == 0:
		return t // matches nothing
	case len(body) == 1 && body[0] == classElem{r: '!'}:
		return token{kind: tokAny}
	case body[0] == classElem{r: '!'}:
		t.negated = true
		body = body[1:]
	}
	// Read the body like Python's re: an unescaped '-' between two
	// characters makes a range, a trailing one is literal.
	for n := 0; n < len(body); n++ {
		lo := body[n].r
		if n+2 < len(body) && body[n+1] == (classElem{r: '-'}) {
			hi := body[n+2].r
			if hi < lo {
				// Python's re would raise on this; unreachable after the
				// merge above, and an invalid class must not match.
				return token{kind: tokRangeClass}
			}
			t.ranges = append(t.ranges, classRange{lo, hi})
			n += 2
			continue
		}
		t.ranges = append(t.ranges, classRange{lo, lo})
	}
	return t
}
