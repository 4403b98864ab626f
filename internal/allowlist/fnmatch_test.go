package allowlist

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFnmatch(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		input   string
		want    bool
	}{
		{"star crosses slash", "/api/*", "/api/x/y", true},
		{"star crosses dot", "*.github.com", "a.b.github.com", true},
		{"star matches empty", "/api/*", "/api/", true},
		{"star needs the prefix", "/api/*", "/api", false},
		{"subdomain star does not match apex", "*.github.com", "github.com", false},
		{"lone star matches empty", "*", "", true},
		{"question is one char", "a?c", "abc", true},
		{"question is not zero chars", "a?c", "ac", false},
		{"question is one code point", "?", "é", true},
		{"question matches newline", "?", "\n", true},
		{"whole string must match", "abc", "abcd", false},
		{"case sensitive", "ABC", "abc", false},
		{"class", "[ab]c", "bc", true},
		{"class miss", "[ab]c", "cc", false},
		{"negated class", "[!ab]c", "cc", true},
		{"negated class miss", "[!ab]c", "ac", false},
		{"range", "[a-c]", "b", true},
		{"reversed range is empty", "[z-a]", "m", false},
		{"reversed range is empty for its ends", "[z-a]", "z", false},
		{"negated reversed range matches anything", "[!z-a]", "m", true},
		{"hyphen after range is literal", "[a-c-e]", "-", true},
		{"hyphen after range, then literal", "[a-c-e]", "d", false},
		{"leading close bracket is literal", "[]a]", "]", true},
		{"unclosed bracket is literal", "[a", "[a", true},
		{"unclosed bracket does not make a class", "[a", "a", false},
		{"backslash is literal", `[\]`, `\`, true},
		{"caret is literal", "[^a]", "^", true},
		{"star in class is literal", "x[*]y", "x*y", true},
		{"star in class is not a wildcard", "x[*]y", "xzy", false},
		{"invalid byte is one char", "a?c", "a\xffc", true},
		{"literal compares bytes", "\xfe", "\xff", false},
		{"many stars backtrack", "*aaa*aab", "aaaaaab", true},
		{"many stars fail", "a*b*c*d", "aXbYcZ", false},
		{"long class allocates but works", "[" + strings.Repeat("a-b", 40) + "]", "b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Fnmatch(tt.pattern, tt.input); got != tt.want {
				t.Errorf("Fnmatch(%q, %q) = %v; want %v", tt.pattern, tt.input, got, tt.want)
			}
		})
	}
}

// TestFnmatchPython replays verdicts recorded from Python's own
// fnmatch.fnmatchcase (testdata/fnmatch/gen.py).
func TestFnmatchPython(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "fnmatch", "python.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var c struct {
			pattern, name string
			want          bool
		}
		if err := json.Unmarshal(sc.Bytes(), &[]any{&c.pattern, &c.name, &c.want}); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
		if got := Fnmatch(c.pattern, c.name); got != c.want {
			t.Errorf("Fnmatch(%q, %q) = %v; want %v (Python)", c.pattern, c.name, got, c.want)
		}
		if got := fnmatchRegexp(c.pattern).MatchString(c.name); got != c.want {
			t.Errorf("reference translate(%q) on %q = %v; want %v (Python)", c.pattern, c.name, got, c.want)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 1000 {
		t.Fatalf("read %d cases; want the whole file", n)
	}
}

func FuzzFnmatch(f *testing.F) {
	for _, s := range [][2]string{
		{"*.github.com", "api.github.com"},
		{"/v1/messages*", "/v1/messages?beta=true"},
		{"[a-c-e]", "-"},
		{"[!z-a]x", "qx"},
		{"[]a]*[!]]", "]bc"},
		{"a*b?c[d-f]*", "aXXbYcezz"},
		{"[b-a-c]", "-"},
		{"*[[:a:]]", "x:]"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := Fnmatch(pattern, name)
		// The regexp reference needs valid UTF-8; invalid bytes are
		// covered by TestFnmatch.
		if !utf8.ValidString(pattern) || !utf8.ValidString(name) {
			return
		}
		if want := fnmatchRegexp(pattern).MatchString(name); got != want {
			t.Errorf("Fnmatch(%q, %q) = %v; want %v (regexp %s)", pattern, name, got, want, fnmatchRegexp(pattern))
		}
	})
}

// fnmatchRegexp is an independent reference: a line-by-line port of
// Python's fnmatch.translate (3.11) to a Go regexp. Differences from the
// Python output, all without effect on what matches:
//   - "(?>.*?X)" becomes ".*?X": RE2 has no atomic groups, and since every
//     piece between stars has a fixed length, the earliest occurrence is
//     always the best one;
//   - "\Z" becomes "\z" and "(?!)" an empty class;
//   - '[' inside a class is escaped, because RE2 would read "[:a:]" there
//     as a POSIX class.
func fnmatchRegexp(pat string) *regexp.Regexp {
	type piece struct {
		star bool
		re   string
	}
	p := []rune(pat)
	var res []piece
	i, n := 0, len(p)
	for i < n {
		c := p[i]
		i++
		switch c {
		case '*':
			if len(res) == 0 || !res[len(res)-1].star {
				res = append(res, piece{star: true})
			}
		case '?':
			res = append(res, piece{re: "."})
		case '[':
			j := i
			if j < n && p[j] == '!' {
				j++
			}
			if j < n && p[j] == ']' {
				j++
			}
			for j < n && p[j] != ']' {
				j++
			}
			if j >= n {
				res = append(res, piece{re: `\[`})
				continue
			}
			stuff := string(p[i:j])
			if !strings.Contains(stuff, "-") {
				stuff = strings.ReplaceAll(stuff, `\`, `\\`)
			} else {
				var chunks []string
				k := i + 1
				if p[i] == '!' {
					k = i + 2
				}
				for {
					k = indexRune(p, '-', k, j)
					if k < 0 {
						break
					}
					chunks = append(chunks, string(p[i:k]))
					i = k + 1
					k = k + 3
				}
				if chunk := string(p[i:j]); chunk != "" {
					chunks = append(chunks, chunk)
				} else {
					chunks[len(chunks)-1] += "-"
				}
				for k := len(chunks) - 1; k > 0; k-- {
					prev, cur := []rune(chunks[k-1]), []rune(chunks[k])
					if prev[len(prev)-1] > cur[0] {
						chunks[k-1] = string(prev[:len(prev)-1]) + string(cur[1:])
						chunks = append(chunks[:k], chunks[k+1:]...)
					}
				}
				for k, s := range chunks {
					chunks[k] = strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "-", `\-`)
				}
				stuff = strings.Join(chunks, "-")
			}
			stuff = setOpRE.ReplaceAllString(stuff, `\$1`)
			i = j + 1
			switch {
			case stuff == "":
				res = append(res, piece{re: `[^\x00-\x{10FFFF}]`})
			case stuff == "!":
				res = append(res, piece{re: "."})
			default:
				if stuff[0] == '!' {
					stuff = "^" + stuff[1:]
				} else if stuff[0] == '^' {
					stuff = `\` + stuff
				}
				res = append(res, piece{re: "[" + stuff + "]"})
			}
		default:
			res = append(res, piece{re: regexp.QuoteMeta(string(c))})
		}
	}
	var b strings.Builder
	for _, r := range res {
		if r.star {
			b.WriteString(".*")
		} else {
			b.WriteString(r.re)
		}
	}
	return regexp.MustCompile(`^(?s:` + b.String() + `)\z`)
}

// setOpRE finds what Python escapes in a class (set operations) plus '['.
var setOpRE = regexp.MustCompile(`([&~|\[])`)

func indexRune(p []rune, r rune, from, to int) int {
	for k := from; k < to; k++ {
		if p[k] == r {
			return k
		}
	}
	return -1
}
