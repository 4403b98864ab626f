package sandbox

import (
	"io"
	"runtime"
	"strings"
	"testing"
)

// endless yields n bytes of 'x' then a newline and "tail\n", without
// allocating: a runaway command's output.
type endless struct{ n, off int }

func (e *endless) Read(p []byte) (int, error) {
	rest := "\ntail\n"
	total := e.n + len(rest)
	if e.off >= total {
		return 0, io.EOF
	}
	i := 0
	for ; i < len(p) && e.off < total; i, e.off = i+1, e.off+1 {
		if e.off < e.n {
			p[i] = 'x'
		} else {
			p[i] = rest[e.off-e.n]
		}
	}
	return i, nil
}

func TestStreamLinesBoundsMemory(t *testing.T) {
	const line = 256 << 20 // a 256 MiB line
	var got []int
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	streamLines(&endless{n: line}, func(l []byte) { got = append(got, len(l)) }, nil, 1<<20)
	runtime.ReadMemStats(&after)
	if len(got) != 2 || got[0] != 1<<20+len(TruncatedMarker) || got[1] != 4 {
		t.Fatalf("line lengths %v; want the first cut at 1 MiB plus the marker, then the next line", got)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("reading one %d MiB line allocated %d MiB; want it bounded by the cap", line>>20, alloc>>20)
	}
}

func TestStreamLines(t *testing.T) {
	cases := []struct {
		name, in string
		max      int
		want     []string
	}{
		{"lines", "a\nbb\n\nccc", 10, []string{"a", "bb", "", "ccc"}},
		{"crlf", "a\r\nb\r\n", 10, []string{"a", "b"}},
		{"exactly max", "abcd\nxy\n", 4, []string{"abcd", "xy"}},
		{"exactly max crlf", "abcd\r\n", 4, []string{"abcd"}},
		{"one over", "abcde\nxy\n", 4, []string{"abcd" + TruncatedMarker, "xy"}},
		{"over at EOF", "abcdefgh", 4, []string{"abcd" + TruncatedMarker}},
		{"empty", "", 4, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			tail := newTail(8)
			streamLines(strings.NewReader(tc.in), func(l []byte) { got = append(got, string(l)) }, tail, tc.max)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("lines %q; want %q", got, tc.want)
			}
			if strings.Join(tail.lines(), "|") != strings.Join(tc.want, "|") {
				t.Errorf("tail %q; want %q", tail.lines(), tc.want)
			}
		})
	}
}
