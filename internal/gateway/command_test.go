package gateway

import "testing"

func TestCappedBuffer(t *testing.T) {
	tests := []struct {
		limit int
		lines []string
		want  string
		cut   bool
	}{
		{100, []string{"a", "bc"}, "a\nbc\n", false},
		{5, []string{"abc", "defgh"}, "abc\nd", true},
		{4, []string{"abcd"}, "abcd", true}, // the newline did not fit
		{3, []string{"abc", "d"}, "abc", true},
		{10, nil, "", false},
	}
	for _, tt := range tests {
		b := &cappedBuffer{limit: tt.limit}
		for _, l := range tt.lines {
			b.line([]byte(l))
		}
		got, cut := b.result()
		if got != tt.want || cut != tt.cut {
			t.Errorf("limit %d, lines %q: got %q cut=%v; want %q cut=%v", tt.limit, tt.lines, got, cut, tt.want, tt.cut)
		}
	}
}
