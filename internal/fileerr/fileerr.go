// Package fileerr formats configuration errors the one way every config
// file of Airut reports them: "file:line: key.path: message", so an operator
// can jump to the line.
package fileerr

import (
	"strconv"
	"strings"
)

// Format renders one error. A zero line or an empty key is left out.
func Format(file string, line int, key, msg string) string {
	var b strings.Builder
	b.WriteString(file)
	if line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(line))
	}
	b.WriteString(": ")
	if key != "" {
		b.WriteString(key)
		b.WriteString(": ")
	}
	b.WriteString(msg)
	return b.String()
}
