package proxy

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// netLog writes the network log (SPEC S4): one line per event, each in one
// Write call under a lock, so concurrent requests never interleave and a
// reader tailing the file only ever sees whole lines.
type netLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *netLog) line(s string) {
	b := make([]byte, 0, len(s)+1)
	b = append(b, sanitize(s)...)
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
}

// sanitize escapes control bytes: every field of a line comes from the
// agent, and a newline in one must not forge a second line.
func sanitize(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// requestLine formats the common part of ALLOWED/BLOCKED/ERROR lines.
func requestLine(verdict, method, url string) string {
	return verdict + " " + method + " " + url
}
